"""``dsrlab run --all``: every scenario, one after another or ``-j N`` at once.

One scenario's outcome (:func:`one_scenario`) is the same either way: a verdict
row, or a skip or an error with its reason. With ``-j N`` (N > 1) each scenario
runs in a process of its own (:mod:`lab.cli.scenario_worker`: its own lab, run
id and capture set, the same clean stop on a signal as ``dsrlab run``), at most
N at once; a line is printed as each ends and the table keeps the scenarios'
order. A signal stops them all: Ctrl-C reaches every worker of the terminal's
process group, and any other signal to this process is passed on to each live
worker by PID; each takes down its own lab, and the table of what finished is
printed before the exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lab.cli.datapath_choice import NodeDatapath
from lab.cli.output import console, fail, one_line_errors, status, table
from lab.cli.verdicts import all_verdict
from lab.errors import LabError
from lab.plumbing import interrupts

if TYPE_CHECKING:
    from lab.env.base import Backend
    from lab.env.netns.cilium import CiliumDatapaths
    from lab.env.netns.datapath import NodeDatapaths
    from lab.runner.scenario import ScenarioRun

WORKER_STOP_S = 120.0  # how long a stopped worker may take to undo its lab


@dataclass(frozen=True)
class Choice:
    """What every scenario of one ``run --all`` shares: where its capture set goes and
    the datapath asked for (None: each topology's own)."""

    captures: Path
    datapath: NodeDatapath | None = None
    cilium_src: Path | None = None


class NotOnDatapath(LabError):
    """A scenario ``run --all`` skips: the chosen datapath (or backend) cannot run it."""


@dataclass
class ScenarioOutcome:
    """One scenario of ``run --all``: its table row, what became of it, where it ran."""

    row: list[str]  # scenario, mode, port, node, verdict, claims, requests, captures
    verdict: str  # pass, FAIL, skipped, error
    on: str = ""  # the datapath it ran on (ManifestDatapath.describe()); "" if it did not
    seconds: float = 0.0

    @classmethod
    def not_run(cls, name: str, verdict: str, why: str) -> ScenarioOutcome:
        return cls([name, "-", "-", "-", verdict, "-", "-", why], verdict)


@dataclass
class Tally:
    """The outcomes so far, in the scenarios' order (None: not ended yet)."""

    outcomes: list[ScenarioOutcome | None]
    ended: int = 0
    ran_on: set[str] = field(default_factory=set)

    def add(self, index: int, out: ScenarioOutcome) -> None:
        self.outcomes[index] = out
        self.ended += 1
        if out.on:
            self.ran_on.add(out.on)
        _scenario_line(self.ended, len(self.outcomes), out)

    def rows(self) -> list[list[str]]:
        return [o.row for o in self.outcomes if o is not None]

    def count(self, *verdicts: str) -> int:
        return sum(o is not None and o.verdict in verdicts for o in self.outcomes)


def one_scenario(path: Path, choice: Choice, shared: NodeDatapaths | None,
                 say: Callable[[str], None]) -> ScenarioOutcome:
    """Run one scenario of ``run --all``; its outcome, never an exception of the lab's."""
    from lab.env.faults import FaultUnavailable
    from lab.runner.scenario import run_scenario

    started = time.monotonic()
    try:
        backend, on = _scenario_backend(path, choice, shared)
        res = run_scenario(path, captures_root=choice.captures, progress=say, backend=backend)
    except (FaultUnavailable, NotOnDatapath) as exc:  # not run: the reason
        out = ScenarioOutcome.not_run(path.stem, "skipped", str(exc))
    except LabError as exc:
        out = ScenarioOutcome.not_run(path.stem, "error", str(exc))
    else:
        out = ScenarioOutcome(_verdict_row(res), "pass" if res.passed else "FAIL", on)
    out.seconds = time.monotonic() - started
    return out


def run_all(captures: Path, folder: Path | None = None,
            datapath: NodeDatapath | None = None, cilium_src: Path | None = None,
            jobs: int = 1) -> None:
    """Every scenario (of ``folder``), ``jobs`` at a time, a line as each ends; a table
    of verdicts, then the overall verdict as the last line; exit 1 if one failed.
    Each runs on ``datapath`` (else its topology's); one the datapath cannot run (or
    whose ``backends:`` leave out netns) is skipped with the reason."""
    from lab.capture.layout import check_captures
    from lab.model.scenario import all_scenarios

    with one_line_errors():
        check_captures(captures)  # before any lab: where every capture set goes
    if folder is not None and not folder.is_dir():
        fail(f"--scenarios {folder}: not a folder", code=2)
    paths = all_scenarios() if folder is None else all_scenarios(folder)
    if not paths:
        fail(f"no scenario (*.yaml) in {folder}", code=2)
    shared = _shared_datapaths(datapath, cilium_src)  # one Cilium source for them all
    choice = Choice(captures, datapath, cilium_src)
    tally = Tally([None] * len(paths))
    try:
        if jobs > 1 and len(paths) > 1:
            if shared is not None:  # the workers take the Cilium source chosen here
                choice = Choice(captures, datapath, shared.source.path)
            _in_workers(paths, choice, min(jobs, len(paths)), tally)
        else:
            _one_by_one(paths, choice, shared, tally)
    except KeyboardInterrupt:  # a signal: the verdicts of the scenarios that finished
        _verdict_table(tally, f"interrupted after {tally.ended} of {len(paths)} scenarios"
                       + _ran_on(tally.ran_on, datapath))
        raise
    on = _ran_on(tally.ran_on, datapath)
    _verdict_table(tally, f"{len(paths)} scenarios{on}")
    failed = tally.count("FAIL", "error")
    console.print(all_verdict(len(paths), failed, tally.count("skipped"), on))
    if failed:
        raise typer.Exit(1)


def _one_by_one(paths: list[Path], choice: Choice, shared: NodeDatapaths | None,
                tally: Tally) -> None:
    with status("starting") as progress:
        for i, path in enumerate(paths):
            def say(msg: str, name: str = path.stem, n: int = i + 1) -> None:
                progress(f"[{n}/{len(paths)}] {name}: {msg}")

            tally.add(i, one_scenario(path, choice, shared, say))


@dataclass
class _Worker:
    """A worker process: it imports the lab once and runs the scenarios it is given,
    one line ``INDEX PATH`` on its stdin each, answering ``INDEX`` on its stdout once
    the outcome is in ``<tmp>/<INDEX>.json``."""

    proc: subprocess.Popen[bytes]
    log: Path
    index: int | None = None  # the scenario it runs now
    started: float = 0.0
    answer: bytes = b""

    def give(self, index: int, path: Path) -> None:
        assert self.proc.stdin is not None
        self.index, self.started = index, time.monotonic()
        self.proc.stdin.write(f"{index} {path}\n".encode())
        self.proc.stdin.flush()

    def finished(self) -> int | None:
        """The scenario it has just finished, if it answered; reads without waiting."""
        assert self.proc.stdout is not None
        with contextlib.suppress(BlockingIOError):
            self.answer += os.read(self.proc.stdout.fileno(), 4096)
        if b"\n" not in self.answer:
            return None
        line, _, self.answer = self.answer.partition(b"\n")
        self.index = None
        return int(line)


def expected_seconds(path: Path) -> float:
    """A rough length of the scenario at ``path``, to start the long ones first: a
    modes comparison runs three more labs, a transfer sends megabytes, a fault waits
    for its effect. A scenario that does not load sorts as short (its error is its
    worker's to say)."""
    from lab.model.scenario import FaultStep, TransferStep, load_scenario

    try:
        sc, _ = load_scenario(path)
    except LabError:
        return 0.0
    steps = sc.traffic_steps()
    return (0.5 + 3.0 * (sc.compare_modes is not None)
            + sum(1.0 for s in steps if isinstance(s, TransferStep | FaultStep))
            + 0.5 * bool(sc.settings))


def _in_workers(paths: list[Path], choice: Choice, jobs: int, tally: Tally) -> None:
    """The scenarios in ``jobs`` worker processes, each given the next when it is free,
    the longest first (:func:`expected_seconds`: the last to end are short ones); the
    table keeps the scenarios' order."""
    waiting = list(enumerate(paths))
    workers: list[_Worker] = []
    with tempfile.TemporaryDirectory(prefix="dsrlab-run-all-") as tmp, \
            status("starting") as progress:
        results = Path(tmp)
        try:
            workers += [_start(choice, results / f"worker{n}.log") for n in range(jobs)]
            # while the workers start: the order to give the scenarios in
            waiting.sort(key=lambda item: -expected_seconds(item[1]))
            while waiting or any(w.index is not None for w in workers):
                for n, idle in enumerate(workers):
                    if idle.index is None and waiting:
                        if idle.proc.poll() is not None:  # died idle: another in its place
                            workers[n] = _start(choice, idle.log.with_suffix(".again.log"))
                        workers[n].give(*waiting.pop(0))
                progress(f"{tally.ended}/{len(paths)} done; running " + ", ".join(
                    paths[w.index].stem for w in workers if w.index is not None))
                _wait_for_answers(workers, 0.25)
                for w in workers:
                    index, started = w.index, w.started
                    if index is None:
                        continue
                    if w.finished() is not None or w.proc.poll() is not None:
                        out = _collect(results / f"{index}.json", w, paths[index])
                        out.seconds = time.monotonic() - started
                        tally.add(index, out)
                        if w.proc.poll() is not None:  # it died: another in its place
                            workers[workers.index(w)] = _start(choice, w.log.with_suffix(
                                f".{index}.log"))
            for w in workers:
                _close(w)
        except KeyboardInterrupt:
            with interrupts.deferred():
                _stop(workers)
                for w in workers:  # what finished before the signal still counts
                    if w.index is not None and (results / f"{w.index}.json").exists():
                        tally.add(w.index, _collect(results / f"{w.index}.json", w,
                                                    paths[w.index]))
            raise


def _wait_for_answers(workers: list[_Worker], most: float) -> None:
    """Until a busy worker says something (an answer, or its end), at most ``most``
    seconds: the next scenario goes out as soon as one ends."""
    fds = [w.proc.stdout.fileno() for w in workers
           if w.index is not None and w.proc.stdout is not None]
    if fds:
        select.select(fds, [], [], most)
    else:
        time.sleep(0.01)


def _start(choice: Choice, log: Path) -> _Worker:
    argv = [sys.executable, "-m", "lab.cli.scenario_worker", str(choice.captures),
            str(log.parent)]
    if choice.datapath is not None:
        argv += ["--datapath", choice.datapath.value]
    if choice.cilium_src is not None:
        argv += ["--cilium-src", str(choice.cilium_src)]
    with log.open("wb") as err, interrupts.deferred():  # started and recorded, or neither
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        return _Worker(proc, log)


def _collect(result: Path, w: _Worker, path: Path) -> ScenarioOutcome:
    """What the worker wrote for ``path``, or an error with its log's last line."""
    try:
        return ScenarioOutcome(**json.loads(result.read_text()))
    except (OSError, ValueError, TypeError):
        lines = w.log.read_text(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"the worker exited with {w.proc.returncode}"
        return ScenarioOutcome.not_run(path.stem, "error", why)


def _close(w: _Worker) -> None:
    """No more scenarios: its stdin closed, it exits."""
    assert w.proc.stdin is not None
    with contextlib.suppress(OSError):
        w.proc.stdin.close()
    w.proc.wait()


def _stop(live: list[_Worker]) -> None:
    """Each live worker stopped (SIGTERM by PID, unless the terminal's signal reached it
    already) and waited for while it takes down its lab."""
    for w in live:
        with contextlib.suppress(OSError):
            if w.proc.stdin is not None:
                w.proc.stdin.close()
    for w in live:
        if w.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + WORKER_STOP_S
    for w in live:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()  # its leftovers carry its run tag: dsrlab clean finds them
            w.proc.wait()


def worker(choice: Choice, results: Path) -> None:
    """A worker process's loop: each line ``INDEX PATH`` on stdin is a scenario to run,
    its outcome written to ``results/INDEX.json``, then ``INDEX`` answered on stdout;
    it ends when stdin does."""
    shared = _shared_datapaths(choice.datapath, choice.cilium_src)
    # the answers get their own copy of stdout; anything else printing there (the
    # lab's tools included) goes to stderr, the worker's log
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    for line in sys.stdin:
        index, _, path = line.rstrip("\n").partition(" ")
        out = one_scenario(Path(path), choice, shared, lambda _msg: None)
        with interrupts.deferred():  # a run that ended is told, signal or not
            (results / f"{int(index)}.json").write_text(json.dumps(asdict(out)))
            answers.write(f"{int(index)}\n")
            answers.flush()


def _shared_datapaths(datapath: NodeDatapath | None,
                      cilium_src: Path | None) -> CiliumDatapaths | None:
    """With ``--datapath cilium``: the one Cilium recipe every scenario runs on (its
    source chosen once, before any lab: one error line if there is none)."""
    if datapath is not NodeDatapath.cilium:
        return None
    from lab.datapath.cilium.source import choose
    from lab.env.netns.cilium import CiliumDatapaths

    with one_line_errors():
        return CiliumDatapaths(choose(cilium_src))


def _scenario_backend(path: Path, choice: Choice,
                      shared: NodeDatapaths | None) -> tuple[Backend, str]:
    """The netns backend a scenario of ``run --all`` runs on, and what its datapath is
    called (``Cilium v1.16.0 (...)``); :class:`NotOnDatapath` if it cannot run there."""
    from lab.capture.manifest import ManifestDatapath
    from lab.env.netns import NetnsBackend
    from lab.env.netns.choice import node_datapaths, refusal
    from lab.model.scenario import load_scenario

    sc, topo = load_scenario(path)
    refused = sc.backend_refusal("netns")
    if refused:
        raise NotOnDatapath(refused)
    asked = None if choice.datapath is None else choice.datapath.value
    recipe = shared if shared is not None else node_datapaths(asked, topo, choice.cilium_src)
    refused = refusal(recipe, topo)
    if refused:
        raise NotOnDatapath(refused)
    on = ManifestDatapath(**recipe.describe()).describe() if recipe else "no datapath"
    return NetnsBackend(datapath=recipe is not None, datapaths=recipe), on


def _ran_on(ran_on: set[str], datapath: NodeDatapath | None) -> str:
    """`` on Cilium v1.16.0 (...)``: which datapath ran the scenarios; nothing when
    they all ran on the lab's own by default (as before there was a choice)."""
    from lab.capture.manifest import ManifestDatapath

    if not ran_on or (datapath is None and ran_on == {ManifestDatapath(name="lab").describe()}):
        return ""
    return " on " + " and ".join(sorted(ran_on))


def _verdict_table(tally: Tally, what: str) -> None:
    rows = tally.rows()
    failed, skipped = tally.count("FAIL", "error"), tally.count("skipped")
    passed = len(rows) - failed - skipped
    table(("scenario", "mode", "port", "node", "verdict", "claims", "requests", "captures"),
          rows, title=f"{what}, {passed} passed" + (f", {failed} failed" if failed else "")
          + (f", {skipped} skipped" if skipped else ""),
          leave_out=("captures", "node", "port", "mode", "requests"))


def _scenario_line(n: int, total: int, out: ScenarioOutcome) -> None:
    """One line as each scenario of ``run --all`` ends (a pipe or a log sees progress):
    ``[3/41] seed: pass, claims 6/6, 2.1 s``; an error or a skip with its reason."""
    from rich.text import Text
    name, verdict, claims, why = out.row[0], out.row[4], out.row[5], out.row[7]
    detail = f"claims {claims}" if verdict in ("pass", "FAIL") else why
    style = {"pass": "green", "FAIL": "red", "error": "red"}.get(verdict, "yellow")
    console.print(Text.assemble(f"[{n}/{total}] {name}: ", (verdict, style),
                                f", {detail}, {out.seconds:.1f} s"))


def _verdict_row(res: ScenarioRun) -> list[str]:
    sc, topo = res.scenario, res.topology
    port = topo.service(sc.target.service).port(sc.target.port)
    claims = res.result.claims if res.result else []
    ok = [e for e in res.exchanges if e.ok]
    return [sc.name, topo.load_balancer.mode, f"{port.node_port}/{port.protocol}",
            sc.target.node, "pass" if res.passed else "FAIL",
            f"{sum(c.passed for c in claims)}/{len(claims)}",
            f"{len(ok)}/{len(res.exchanges)} answered", str(res.capture_dir)]
