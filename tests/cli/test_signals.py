"""Signals stop ``dsrlab`` cleanly: SIGTERM, SIGINT, SIGHUP, SIGQUIT... at several points
of a run, and what a SIGKILLed run left is found by its run id.

Each case starts the real command as a subprocess (``dsrlab run seed``,
``dsrlab up``, ``dsrlab datapath run --repeat 100000000``), waits for a point
of its life (its signal handlers installed; its first namespace; every
namespace up, while the BPF objects load; the captures running; the long
test run), sends the signal and asserts: exit status 128 + signal, one
``interrupted`` line and no traceback on stderr, and nothing of the run left:
no namespace ``dsrlab-<run id>-*``, none of the processes that ran in them
(pod server, tcpdumps: remembered while the run was up, by PID and start
time), no file named by the run id in its state directory, and the capture
set's ``latest`` not moved. Each command runs in a session of its own with a
private ``TMPDIR`` and a mark in its environment (:mod:`tests.marks`): no process
it started (Chromium, tcpdump, curl, the pod server) may outlive it, and nothing
may be left in its ``TMPDIR``. A SIGINT "from the terminal" goes to the whole
process group, as Ctrl-C does.

The run id is read from the owner file the run writes (``/run/dsrlab/<run
id>.owner`` names the subprocess's PID), so a lab another process brings up
meanwhile is never taken for this one; the state directory is the real one,
so the run is seen as in use by everyone else's ``dsrlab clean`` (a private
one would make it look dead to them). Whatever a failing case left is
removed by run id afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.model.scenario import all_scenarios
from lab.plumbing import names, nsutil, owner, procs
from lab.wire.pcapio import PcapWriter
from tests.marks import MARK, comm, marked, new_mark
from tests.seed import NODE_PORT, POD_IP, POD_PORT, VIP

REPO = Path(__file__).resolve().parents[2]
SEED_TOPOLOGY = REPO / "topologies" / "seed.yaml"
STEP_S = 0.002
WAIT_S = 20.0

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


@dataclass
class Run:
    """One ``dsrlab`` subprocess and what it was seen to hold while it ran."""

    proc: subprocess.Popen[str]
    captures: Path
    mark: str
    tmp: Path  # its TMPDIR
    env: dict[str, str]
    run_ids: set[str] = field(default_factory=set)
    seen: dict[int, procs.ProcessRef] = field(default_factory=dict)

    def look(self) -> list[str]:
        """The run ids it claimed (its owner files: dsrlab's, or a worker's of ``run --all
        -j N``, which carries its mark) and their namespaces; remembers every process in
        them."""
        ours = {str(self.proc.pid), *map(str, marked(self.mark))}
        for run_id, files in owner.run_files().items():
            if run_id in self.run_ids:
                continue
            for f in files:
                try:
                    pid = f.read_text().split()[0] if f.name.endswith(".owner") else ""
                except (OSError, IndexError):
                    continue
                if pid in ours:
                    self.run_ids.add(run_id)
        spaces = [ns for ns in nsutil.list_netns()
                  if (p := names.parse_netns_name(ns)) is not None and p.run_id in self.run_ids]
        try:
            found = nsutil.pids_in_each(spaces)
        except (OSError, nsutil.NetnsError):
            found = {}
        for pids in found.values():
            for pid in pids:
                if pid not in self.seen and (ref := procs.ProcessRef.of(pid)) is not None:
                    self.seen[pid] = ref
        return spaces

    def until(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"dsrlab exited ({self.proc.returncode}) before {what}: "
                            f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {WAIT_S:g} s")
            time.sleep(STEP_S)


def default_signals() -> None:
    """In the child before exec: SIGINT, SIGTERM, SIGHUP, SIGQUIT back to their default
    action (an xdist worker ignores SIGINT, and ignored signals are inherited)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def own_session() -> None:
    """In the child before exec: a session (and process group) of its own, default
    signals."""
    os.setsid()
    default_signals()


def _handler_installed(pid: int, sig: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(int(line.split()[1], 16) for line in status.splitlines()
                  if line.startswith("SigCgt:"))
    return bool(caught >> (sig - 1) & 1)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def _start(*args: str, stdout: int = subprocess.DEVNULL, hold_renderer: bool = False,
               ) -> Run:
        captures = tmp_path / f"captures{len(runs)}"
        # short: Chromium's sockets go in TMPDIR, and a socket's path has 107 bytes at most
        tmp = Path(tempfile.mkdtemp(prefix="dsrlab-test-", dir="/tmp"))
        mark = new_mark()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "COLUMNS": "80", "TMPDIR": str(tmp),
               MARK: mark}
        if hold_renderer:
            env["PATH"] = f"{renderer_held(tmp_path / 'bin')}:{env['PATH']}"
        argv = [a.replace("{captures}", str(captures)) for a in args]
        proc = subprocess.Popen([sys.executable, "-m", "lab.cli", *argv], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=own_session)  # noqa: PLW1509
        run = Run(proc, captures, mark, tmp, env)
        runs.append(run)
        return run

    yield _start
    for run in runs:  # a failing case must not leave its lab to the next one
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
        run.look()
        for run_id in run.run_ids:
            subprocess.run([sys.executable, "-m", "lab.cli", "clean", run_id], cwd=REPO,
                           env=run.env, capture_output=True, check=False, timeout=60)
        procs.stop([r.pid for r in run.seen.values() if r.running()] + marked(run.mark))
        shutil.rmtree(run.tmp, ignore_errors=True)


def stopped_cleanly(run: Run, sig: int, *, group: bool = False, finished: bool = False,
                    scenario: str = "seed") -> str:
    """Signal it (``group``: its whole process group, as a terminal's Ctrl-C does), wait,
    and check the exit, stderr and that nothing of it is left; returns its stdout.
    ``finished``: its capture set was complete before the signal (the screenshot)."""
    run.look()
    if group:
        os.killpg(run.proc.pid, sig)
    else:
        run.proc.send_signal(sig)
    try:
        out, err = run.proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dsrlab did not exit within {WAIT_S:g} s of {signal.Signals(sig).name}")
    assert run.proc.returncode == 128 + sig, (run.proc.returncode, err)
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    assert "interrupted" in err, err
    assert run.run_ids, "the run never claimed a run id"
    left = run.look()
    assert left == [], f"namespaces left: {left}"
    alive = [r.pid for r in run.seen.values() if r.running()]
    assert alive == [], f"processes of the run left: {alive}"
    started = [f"{p} {comm(p)}" for p in marked(run.mark)]
    assert started == [], f"processes it started are still running: {started}"
    assert sorted(p.name for p in run.tmp.iterdir()) == [], "files left in its TMPDIR"
    files = [f.name for i in run.run_ids for f in owner.run_files().get(i, [])]
    assert files == [], f"files left in {owner.OWNER_DIR}: {files}"
    # a run that did not finish never moves captures/<scenario>/latest
    assert (run.captures / scenario / "latest").exists() == finished
    return out or ""


def _first_namespace(run: Run) -> Callable[[], bool]:
    return lambda: bool(run.look())


def _all_namespaces(run: Run, count: int) -> Callable[[], bool]:
    return lambda: len(run.look()) >= count


def _capturing(run: Run) -> Callable[[], bool]:
    def ready() -> bool:
        run.look()
        return any(run.captures.glob("seed/*/*.pcap")) and len(run.seen) >= 4

    return ready


SEED_HOSTS = 6  # client, 3 nodes, 2 pods


@pytest.mark.parametrize(("sig", "point"), [
    (signal.SIGTERM, "start"),
    (signal.SIGINT, "first namespace"),
    (signal.SIGHUP, "every namespace (wiring, BPF load)"),
    (signal.SIGTERM, "captures running"),
    (signal.SIGQUIT, "captures running"),
    (signal.SIGUSR1, "every namespace (wiring, BPF load)"),
])
def test_run_stops_cleanly(start: Callable[..., Run], sig: int, point: str) -> None:
    run = start("run", "seed", "--captures", "{captures}", "--no-screenshot")
    if point == "start":
        run.until("signal handler", lambda: _handler_installed(run.proc.pid, sig))
        run.proc.send_signal(sig)
        _, err = run.proc.communicate(timeout=WAIT_S)
        assert run.proc.returncode == 128 + sig, err
        assert "Traceback" not in err, err
        run.look()
        assert not run.run_ids or run.look() == []
        return
    ready = {"first namespace": _first_namespace(run),
             "every namespace (wiring, BPF load)": _all_namespaces(run, SEED_HOSTS),
             "captures running": _capturing(run)}[point]
    run.until(point, ready)
    stopped_cleanly(run, sig)


def test_up_stops_cleanly(start: Callable[..., Run]) -> None:
    run = start("up", str(SEED_TOPOLOGY))
    run.until("first namespace", _first_namespace(run))
    stopped_cleanly(run, signal.SIGTERM)


def renderer_held(folder: Path) -> Path:
    """A folder whose ``chromium`` is the real one with ``--renderer-startup-dialog``: its
    renderer waits (for a debugger's SIGUSR1) as soon as it starts, so the screenshot
    is still under way when the signal comes, however fast the machine."""
    folder.mkdir(exist_ok=True)
    wrapper = folder / "chromium"
    real = shutil.which("chromium")
    if real is None:
        pytest.skip("needs Debian's chromium (scripts/install.sh installs it)")
    wrapper.write_text(f'#!/bin/sh\nexec {real} --renderer-startup-dialog "$@"\n')
    wrapper.chmod(0o755)
    return folder


def _chromium(run: Run) -> Callable[[], bool]:
    """Chromium's renderer has started (held there); the run's capture set is complete."""
    def ready() -> bool:
        run.look()
        for pid in marked(run.mark):
            try:
                if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                continue
        return False

    return ready


def _curl(run: Run) -> Callable[[], bool]:
    """A transfer runs: curl in the client's namespace."""
    def ready() -> bool:
        run.look()
        return any(comm(p) == "curl" for p in marked(run.mark))

    return ready


SLOW = "slow-download"


def slow_download(folder: Path) -> Path:
    """A scenario of one download paced to 10 s (the seed topology and its trace): the
    traffic phase lasts long enough to be caught whatever the machine's speed."""
    folder.mkdir(exist_ok=True)
    trace = (REPO / "scenarios" / "seed.trace.yaml").read_text()
    (folder / f"{SLOW}.trace.yaml").write_text(trace.replace("scenario: seed", f"scenario: {SLOW}"))
    path = folder / f"{SLOW}.yaml"
    path.write_text(f"""name: {SLOW}
topology: {SEED_TOPOLOGY}
client: client
target: {{service: serversvc, node: cilium-dsr-control-plane}}
deadline_s: 60
steps:
  - transfer: {{bytes: 2000000, rate: 200000, timeout_s: 30}}
""")
    return path


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False),
                                            (signal.SIGHUP, False)],
                         ids=["SIGINT-ctrl-c", "SIGTERM", "SIGHUP"])
def test_run_stops_cleanly_in_the_screenshot(start: Callable[..., Run], sig: int,
                                             group: bool) -> None:
    """While Chromium renders the report: exit 128 + signal, no traceback (it used to be
    ``OSError: [Errno 39] Directory not empty: 'Default'`` and exit 1), no Chromium
    process and nothing in TMPDIR (its profile, org.chromium.Chromium.*) left."""
    run = start("run", "seed", "--captures", "{captures}", hold_renderer=True)
    run.until("chromium", _chromium(run))
    stopped_cleanly(run, sig, group=group, finished=True)


def test_a_kept_lab_stays_up_when_its_screenshot_is_interrupted(start: Callable[..., Run],
                                                               ) -> None:
    """``run --keep`` hands its lab over before the report's screenshot: a signal then
    stops Chromium (nothing of it left) and leaves the lab up for ``dsrlab down``."""
    run = start("run", "seed", "--captures", "{captures}", "--keep", hold_renderer=True)
    run.until("chromium", _chromium(run))
    run.proc.send_signal(signal.SIGTERM)
    _, err = run.proc.communicate(timeout=WAIT_S)
    assert run.proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    (run_id,) = run.run_ids
    assert len(run.look()) == SEED_HOSTS  # still up
    assert [f.name for f in owner.run_files().get(run_id, [])] == [f"{run_id}.json"]
    assert not [p for p in marked(run.mark) if comm(p) in ("chromium", "chrome_crashpad")]
    assert sorted(p.name for p in run.tmp.iterdir()) == []
    down = subprocess.run([sys.executable, "-m", "lab.cli", "down", run_id], cwd=REPO,
                          env=run.env, capture_output=True, text=True, check=False, timeout=60)
    assert down.returncode == 0, down.stderr
    assert run.look() == []


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, True), (signal.SIGQUIT, False)],
                         ids=["SIGINT-ctrl-c", "SIGQUIT"])
def test_run_stops_cleanly_in_the_traffic(start: Callable[..., Run], tmp_path: Path,
                                          sig: int, group: bool) -> None:
    run = start("run", str(slow_download(tmp_path / "scenarios")), "--captures", "{captures}")
    run.until("a transfer", _curl(run))
    stopped_cleanly(run, sig, group=group, scenario=SLOW)


@pytest.mark.parametrize("point", ["traffic", "screenshot"])
def test_what_a_killed_run_left_is_cleaned_by_its_run_id(start: Callable[..., Run],
                                                         tmp_path: Path, point: str) -> None:
    """SIGKILL (no cleanup at all), then ``dsrlab clean RUN_ID`` with the run's
    environment: its namespaces, the processes it started (Chromium's too: they do not
    live in a namespace), its scratch directories and its unfinished capture set go."""
    if point == "traffic":
        run = start("run", str(slow_download(tmp_path / "scenarios")), "--captures",
                    "{captures}")
        run.until("a transfer", _curl(run))
    else:
        run = start("run", "seed", "--captures", "{captures}", hold_renderer=True)
        run.until("chromium", _chromium(run))
    run.look()
    run.proc.kill()  # this process only: what it started runs on
    run.proc.communicate()
    (run_id,) = run.run_ids
    out = subprocess.run([sys.executable, "-m", "lab.cli", "clean", run_id, "--captures",
                          str(run.captures), "--incomplete"], cwd=REPO, env=run.env,
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert run.look() == []
    assert [f"{p} {comm(p)}" for p in marked(run.mark)] == []
    assert [r.pid for r in run.seen.values() if r.running()] == []
    assert sorted(p.name for p in run.tmp.iterdir()) == []
    assert owner.run_files().get(run_id, []) == []
    if point == "traffic":
        assert not (run.captures / SLOW / run_id).exists()


@pytest.mark.parametrize(("jobs", "sig", "group"), [
    ("1", signal.SIGINT, True),
    ("2", signal.SIGINT, True),  # Ctrl-C: the terminal signals every worker too
    ("2", signal.SIGTERM, False),  # to dsrlab alone: it passes the signal on by PID
])
def test_run_all_interrupted_prints_the_verdicts_so_far(
        start: Callable[..., Run], jobs: str, sig: int, group: bool) -> None:
    """``run --all`` stopped once a first scenario has ended (one at a time: seed, as
    scenarios/ comes first; with workers the longest go first), while others run,
    prints the table of those that finished, in the scenarios' order, then stops
    cleanly: one scenario at a time, or two in worker processes."""
    run = start("run", "--all", "-j", jobs, "--captures", "{captures}",
                stdout=subprocess.PIPE)
    def one_ended() -> bool:
        # with workers: also its outcome handed back (dsrlab's temporary folder holds it)
        if jobs == "1":
            return bool(run.look()) and (run.captures / "seed" / "latest").exists()
        return bool(run.look()) and any(run.tmp.glob("dsrlab-run-all-*/[0-9]*.json"))

    run.until("the first scenario's verdict", one_ended)
    first = "seed" if jobs == "1" else next(
        d.parent.name for d in run.captures.glob("*/latest"))  # an ended one's set
    out = stopped_cleanly(run, sig, group=group, finished=True, scenario=first)
    title = next((line for line in out.splitlines() if line.startswith("interrupted after")),
                 None)
    assert title is not None, out
    done = int(title.split()[2])  # "interrupted after N of M scenarios, ..."
    lines = out.splitlines()
    ended = [line for line in lines if line.startswith("[")]  # "[1/41] seed: pass, ..."
    table = lines[lines.index(title) + 2:]  # after the title and the header
    rows = [line.split()[0] for line in table]
    assert done >= 1, out
    # a line as each ended; one whose outcome was written as the signal came is in
    # the table without its line
    assert len(ended) <= done, out
    if jobs == "1":
        assert len(ended) == done, out
    assert len(rows) == done, out
    order = [p.stem for p in all_scenarios()]
    assert rows == sorted(rows, key=order.index), out  # the table in the scenarios' order
    if jobs == "1":
        assert rows[0] == "seed", out
    assert all(line.split()[4] in ("pass", "skipped") for line in table), out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_datapath_run_stops_cleanly(start: Callable[..., Run], tmp_path: Path,
                                    sig: int) -> None:
    """The BPF load runs on the main thread here (libbpf calls back into Python), then
    one test run of 100,000,000 repeats: interrupted in the first, or the second."""
    pcap = tmp_path / "in.pcap"
    frame = bytes(Ether(src="02:42:ac:12:00:01", dst="02:42:ac:12:00:02")
                  / IP(src="172.18.0.1", dst=VIP) / TCP(sport=40000, dport=NODE_PORT,
                                                        flags="S"))
    with PcapWriter(pcap) as w:
        w.write(frame, 1_700_000_000_000_000_000)
    run = start("datapath", "run", "--program", "lb", "--service", f"{VIP}:{NODE_PORT}",
                "--backend", f"{POD_IP}:{POD_PORT}", "--input", str(pcap),
                "--output", str(tmp_path / "out.pcap"), "--repeat", "100000000")
    run.until("scratch namespace", _first_namespace(run))
    if sig == signal.SIGINT:
        time.sleep(0.3)  # in the long test run by now
    stopped_cleanly(run, sig)


# -- the library alone: an interrupt at any point of a bring-up or a BPF load ------------

_UP_SCRIPT = """
import json, os, signal, sys, threading, time
from lab.env.netns import NetnsBackend
from lab.model.topology import load_topology
from lab.plumbing import names, procs

topo = load_topology(sys.argv[1])
trials = []
for i in range(int(sys.argv[2])):
    run_id = names.new_run_id()
    delay = 0.004 * i
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    outcome = "finished"
    try:
        timer.start()
        with NetnsBackend().up(topo, run_id=run_id):
            time.sleep(1)  # the interrupt lands here at the latest
    except KeyboardInterrupt:
        outcome = "interrupted"
    timer.join()
    kids = set()
    for task in os.listdir("/proc/self/task"):
        try:  # a worker thread may end between the listing and the read
            with open(f"/proc/self/task/{task}/children") as f:
                kids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    alive = [p for p in kids if procs.running(p)]
    trials.append({"run_id": run_id, "delay": delay, "outcome": outcome, "children": alive})
print(json.dumps(trials))
"""


def test_bring_up_interrupted_anywhere_leaves_nothing() -> None:
    """SIGINT at 0, 4, 8, ... ms into ``NetnsBackend.up`` (the library, default handler):
    every trial is interrupted, and no namespace, owner file or pod server is left."""
    out = subprocess.run([sys.executable, "-c", _UP_SCRIPT, str(SEED_TOPOLOGY), "30"], cwd=REPO,
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                         capture_output=True, text=True, timeout=120, check=False,
                         preexec_fn=default_signals)
    assert out.returncode == 0, out.stderr
    assert "Exception ignored" not in out.stderr, out.stderr
    trials = json.loads(out.stdout)
    run_ids = {t["run_id"] for t in trials}
    left = [ns for ns in nsutil.list_netns()
            if (p := names.parse_netns_name(ns)) is not None and p.run_id in run_ids]
    files = [f.name for i in run_ids for f in owner.run_files().get(i, [])]
    for run_id in {ns.split("-")[1] for ns in left} | {f.split(".")[0] for f in files}:
        subprocess.run([sys.executable, "-m", "lab.cli", "clean", run_id], cwd=REPO,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, capture_output=True,
                       check=False)
    assert [t for t in trials if t["outcome"] != "interrupted"] == []
    assert [t for t in trials if t["children"]] == []
    assert left == []
    assert files == []


_LOAD_SCRIPT = """
import os, signal, sys, threading, time
from lab.datapath import DatapathObject, build_object

path = build_object()
lost = 0
for trial in range(int(sys.argv[1])):
    threading.Timer(0.005 + 0.01 * trial, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 1.0:
            DatapathObject.load(path).close()
        lost += 1
    except KeyboardInterrupt:
        pass
print(lost)
"""


def test_interrupt_during_bpf_load_is_never_lost() -> None:
    """libbpf calls back into Python during a load; an interrupt that lands there used to
    be swallowed ("Exception ignored on calling ctypes callback function") and the
    load loop went on. Every one of 10 interrupts must stop it."""
    out = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, "10"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False,
                         preexec_fn=default_signals)
    assert out.returncode == 0, out.stderr
    assert "Exception ignored" not in out.stderr, out.stderr
    assert out.stdout.strip() == "0", f"interrupts lost: {out.stdout}"
