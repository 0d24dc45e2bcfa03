"""Never act on something alive: ``clean``, ``down`` and ``list`` take liveness from the
kernel (the namespaces' record of their run), whichever state directory they use.

Each test makes its own runs in a state directory of its own and looks at them
from another one, as another user (or a test pointed at a private folder)
would. Nothing here runs a bare ``clean`` that removes anything: bare ones are
asked with ``--dry-run``, and what is removed is named by the test's own run id.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.capture.layout import RESULTS, WRITING, writer_of
from lab.env import cleanup
from lab.plumbing import names, nsmark, nsutil, procs
from tests.cli.helpers import DSRLAB, ENV, REPO, dsrlab
from tests.seed import SEED_TOPOLOGY_PATH

pytestmark = pytest.mark.netns

# a lab run as a test harness would drive one: a namespace with a process in it, held
# by this script until its stdin closes
_HOLDER = """
import subprocess, sys, time
from lab.plumbing import names, nsutil
ns = names.netns_name(sys.argv[1], "x")
nsutil.create(ns)
proc = subprocess.Popen(nsutil.exec_argv(ns, ["sleep", "600"]))
deadline = time.monotonic() + 10
while proc.pid not in nsutil.pids_in(ns) and time.monotonic() < deadline:
    time.sleep(0.005)  # nsenter enters the namespace just after it starts
print("up", flush=True)
sys.stdin.read()
proc.kill(); proc.wait()
nsutil.remove(ns)
"""


def _in(state_dir: Path) -> dict[str, str]:
    return {"DSRLAB_STATE_DIR": str(state_dir)}


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Two state directories: the run's (``a``), and the one clean looks from (``b``)."""
    a, b = tmp_path / "state-a", tmp_path / "state-b"
    a.mkdir()
    b.mkdir()
    return a, b


@pytest.fixture
def holder(dirs: tuple[Path, Path]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    run_id = names.new_run_id()
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, run_id], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, **_in(dirs[0])})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "up\n"
        yield run_id, proc
    finally:
        if proc.poll() is None:
            proc.communicate("", timeout=30)
        for res in cleanup.find_runs([run_id]).values():
            if res.holder is None:
                cleanup.clean_run(res)
        assert not cleanup.find_runs([run_id])


def test_a_live_run_of_another_state_directory_is_never_leftover(
        dirs: tuple[Path, Path], holder: tuple[str, subprocess.Popen[str]]) -> None:
    run_id, proc = holder
    ns = names.netns_name(run_id, "x")
    (sleeper,) = nsutil.pids_in(ns)
    other = _in(dirs[1])
    listed = dsrlab("list", env=other)
    assert re.search(rf"^{run_id} +1 +1 +in use by pid {proc.pid}$", listed.stdout, re.M), \
        listed.stdout
    dry = dsrlab("clean", "--dry-run", env=other)
    assert dry.returncode == 0, dry.stderr
    assert (f"run {run_id}: in use by pid {proc.pid} (a run in progress), left alone"
            in dry.stdout.splitlines()), dry.stdout
    assert not re.search(rf"^run {run_id}: .*leftover", dry.stdout, re.M)
    named = dsrlab("clean", run_id, env=other)
    assert named.returncode == 1
    assert named.stderr == (f"error: run {run_id} is in progress (pid {proc.pid}): nothing "
                            f"removed; dsrlab clean --force {run_id} stops it first\n")
    down = dsrlab("down", run_id, env=other)
    assert down.returncode == 1
    assert down.stderr.count("\n") == 1, down.stderr
    assert f"in use by pid {proc.pid}" in down.stderr
    # nothing of it was touched
    assert nsutil.exists(ns)
    assert procs.running(sleeper)
    assert proc.poll() is None
    # killed, it is what a dead run left, from any state directory
    proc.kill()
    proc.wait(10)
    dead = dsrlab("clean", "--dry-run", run_id, env=other)
    assert (f"run {run_id}: 1 namespaces, 1 processes, leftover, files: none"
            in dead.stdout.splitlines()), dead.stdout
    out = dsrlab("clean", run_id, env=other)
    assert out.returncode == 0, out.stderr
    assert f"  stopped pid {sleeper}" in out.stdout.splitlines()
    assert not nsutil.exists(ns)


def test_a_lab_left_up_from_another_state_directory_is_left_alone(
        dirs: tuple[Path, Path]) -> None:
    up = dsrlab("up", "--datapath", "none", str(SEED_TOPOLOGY_PATH), env=_in(dirs[0]))
    assert up.returncode == 0, up.stderr
    m = re.search(r"dsrlab down ([0-9a-f]{6})", up.stdout)
    assert m, up.stdout
    run_id = m[1]
    try:
        listed = dsrlab("list", env=_in(dirs[1]))
        assert re.search(rf"^{run_id} +6 +1 +up \(dsrlab up\)$", listed.stdout, re.M), \
            listed.stdout
        dry = dsrlab("clean", "--dry-run", env=_in(dirs[1]))
        assert (f"run {run_id}: up (dsrlab up), left alone (name it, or use --all)"
                in dry.stdout.splitlines()), dry.stdout
        bare = dsrlab("down", env=_in(dirs[1]))  # takes only a lab its own directory knows
        assert bare.returncode == 1
        assert bare.stderr.startswith("error: no lab is up"), bare.stderr
        assert cleanup.find_runs([run_id])[run_id].left_up
    finally:
        down = dsrlab("down", run_id, env=_in(dirs[0]))
    assert down.returncode == 0, down.stderr
    assert run_id not in cleanup.find_runs([run_id])
    assert list(dirs[0].iterdir()) == []


def test_a_lab_kept_by_run_keep_is_listed_as_such(tmp_path: Path) -> None:
    out = dsrlab("run", "seed", "--keep", "--no-screenshot", "--captures", str(tmp_path),
                 timeout=180)
    m = re.search(r"run ([0-9a-f]{6}) on netns", out.stdout)
    assert m, (out.stdout, out.stderr)
    run_id = m[1]
    try:
        listed = dsrlab("list")
        assert re.search(rf"^{run_id} +\d+ +\d+ +up \(dsrlab run --keep\)$", listed.stdout,
                         re.M), listed.stdout
    finally:
        down = dsrlab("down", run_id)
    assert down.returncode == 0, down.stderr
    assert not cleanup.find_runs([run_id])


# a paced download that lasts 30 s: long enough to find the run alive, and stopped early
_SLOW = """\
name: live-slow
description: a paced download that lasts 30 s
topology: {topology}
client: client
target:
  service: serversvc
  node: cilium-dsr-control-plane
deadline_s: 60
steps:
  - transfer:
      bytes: 300000
      rate: 10000
      timeout_s: 45
trace: {trace}
"""


def _wait_writing(root: Path, timeout: float = 90.0) -> Path:
    """The capture set a run is writing under ``root``, once it writes it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in root.glob("live-slow/*"):
            if (d / WRITING).exists() and writer_of(d) is not None:
                return d
        time.sleep(0.1)
    raise AssertionError(f"no run started writing under {root}")


def test_clean_of_a_live_run_refuses_and_force_stops_it_cleanly_first(
        tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(_SLOW.format(topology=SEED_TOPOLOGY_PATH,
                                     trace=REPO / "scenarios" / "seed.trace.yaml"))
    captures = tmp_path / "captures"
    run = subprocess.Popen([*DSRLAB, "run", str(scenario), "--no-screenshot", "--captures",
                            str(captures)], cwd=REPO, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env={**ENV, **_in(dirs[0])})
    try:
        capture_set = _wait_writing(captures)
        run_id = capture_set.name
        other = _in(dirs[1])
        refused = dsrlab("clean", run_id, "--captures", str(captures), "--incomplete",
                         env=other)
        assert refused.returncode == 1
        assert refused.stderr == (f"error: run {run_id} is in progress (pid {run.pid}): "
                                  f"nothing removed; dsrlab clean --force {run_id} stops "
                                  "it first\n")
        assert refused.stdout == ""
        assert run.poll() is None
        assert cleanup.find_runs([run_id])[run_id].namespaces
        assert capture_set.is_dir()
        forced = dsrlab("clean", "--force", run_id, "--captures", str(captures),
                        "--incomplete", env=other, timeout=200)
        assert forced.returncode == 0, forced.stderr
        lines = forced.stdout.splitlines()
        assert lines[0] == (f"run {run_id}: in use by pid {run.pid}, asking it to stop "
                            "(SIGUSR2)")
        assert re.fullmatch(rf"  pid {run.pid} stopped after \d+\.\d s", lines[1]), lines
        assert f"  removed capture set {capture_set} " in forced.stdout
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            run.communicate(timeout=120)
    # the run undid its own lab and said why it stopped: no verdict, no failures
    assert run.returncode == 128 + signal.SIGUSR2
    assert err == "stopped by dsrlab clean (SIGUSR2): cleaned up\n"
    assert "FAIL" not in out
    assert not cleanup.find_runs([run_id])
    assert not capture_set.exists()
    assert not list(captures.rglob(RESULTS))


def test_the_remove_hint_keeps_the_run_ids_given(tmp_path: Path) -> None:
    run_id = names.new_run_id()
    half = tmp_path / "seed" / run_id
    half.mkdir(parents=True)
    for name in ("manifest.json", "steps.json", "c--eth0.pcap"):
        (half / name).write_text("x")
    out = dsrlab("clean", run_id, "--captures", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (f"remove them with: dsrlab clean --captures {tmp_path} --incomplete {run_id}"
            in out.stdout.splitlines()), out.stdout
    out = dsrlab("clean", run_id, "--captures", str(tmp_path), "--incomplete")
    assert out.returncode == 0, out.stderr
    assert f"  removed capture set {half} (3 files)" in out.stdout.splitlines(), out.stdout
    assert not half.exists()


def test_force_needs_run_ids_or_all() -> None:
    out = dsrlab("clean", "--force")
    assert out.returncode == 1
    assert out.stderr == ("error: --force goes with run ids or --all: a bare clean takes only "
                          "what dead runs left\n")


@pytest.mark.parametrize(("pid_of", "sig"), [("init", 12), ("sleeper", 9), ("sleeper", 33)])
def test_force_never_signals_what_a_record_cannot_mean(dirs: tuple[Path, Path], pid_of: str,
                                                        sig: int) -> None:
    """A record is only as good as its writer: PID 1, or a SIGKILL, is no run's stop."""
    run_id = names.new_run_id()
    ns = names.netns_name(run_id, "x")
    subprocess.run([sys.executable, "-c", "import sys; from lab.plumbing import nsutil; "
                    "nsutil.create(sys.argv[1])", ns], check=True, cwd=REPO, timeout=30,
                   env={**os.environ, **_in(dirs[0])})  # its owner file: in the test's
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        target = procs.ProcessRef.of(1 if pid_of == "init" else sleeper.pid)
        assert target is not None
        nsutil.write_mark(ns, nsmark.Mark(run_id, "run", target.pid, target.start_time, sig))
        other = _in(dirs[1])
        assert dsrlab("clean", run_id, env=other).returncode == 1
        out = dsrlab("clean", "--force", run_id, env=other)
        assert out.returncode == 1
        assert out.stderr.startswith("error: the record ")
        assert out.stderr.endswith(": left alone\n")
        assert out.stdout == ""
        assert sleeper.poll() is None
        assert nsutil.exists(ns)
    finally:
        sleeper.kill()
        sleeper.wait()
        nsutil.remove(ns)
