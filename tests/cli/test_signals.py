"""Signals stop ``dsrlab`` cleanly: SIGTERM, SIGINT and SIGHUP at several points of a run.

Each case starts the real command as a subprocess (``dsrlab run seed``,
``dsrlab up``, ``dsrlab datapath run --repeat 100000000``), waits for a point
of its life (its signal handlers installed; its first namespace; every
namespace up, while the BPF objects load; the captures running; the long
test run), sends the signal and asserts: exit status 128 + signal, one
``interrupted`` line and no traceback on stderr, and nothing of the run left:
no namespace ``dsrlab-<run id>-*``, none of the processes that ran in them
(pod server, tcpdumps: remembered while the run was up, by PID and start
time), no file named by the run id in its state directory, and the capture
set's ``latest`` not moved.

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
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.plumbing import names, nsutil, owner, procs
from lab.wire.pcapio import PcapWriter
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
    run_ids: set[str] = field(default_factory=set)
    seen: dict[int, procs.ProcessRef] = field(default_factory=dict)

    def look(self) -> list[str]:
        """The run ids it claimed (its owner files) and their namespaces; remembers
        every process in them."""
        for run_id, files in owner.run_files().items():
            if run_id in self.run_ids:
                continue
            for f in files:
                try:
                    pid = f.read_text().split()[0] if f.name.endswith(".owner") else ""
                except (OSError, IndexError):
                    continue
                if pid == str(self.proc.pid):
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
    """In the child before exec: SIGINT, SIGTERM, SIGHUP back to their default action
    (an xdist worker ignores SIGINT, and ignored signals are inherited)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


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

    def _start(*args: str) -> Run:
        captures = tmp_path / f"captures{len(runs)}"
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "COLUMNS": "80"}
        argv = [a.replace("{captures}", str(captures)) for a in args]
        proc = subprocess.Popen([sys.executable, "-m", "lab.cli", *argv], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_signals)  # noqa: PLW1509
        run = Run(proc, captures)
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
                           env={"PATH": os.environ.get("PATH", "")},
                           capture_output=True, check=False, timeout=60)
        procs.stop([r.pid for r in run.seen.values() if r.running()])


def stopped_cleanly(run: Run, sig: int) -> None:
    """Signal it, wait, and check the exit, stderr and that nothing of it is left."""
    run.look()
    run.proc.send_signal(sig)
    try:
        _, err = run.proc.communicate(timeout=WAIT_S)
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
    files = [f.name for i in run.run_ids for f in owner.run_files().get(i, [])]
    assert files == [], f"files left in {owner.OWNER_DIR}: {files}"
    # a run that did not finish never moves captures/<scenario>/latest
    assert not (run.captures / "seed" / "latest").exists()


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
