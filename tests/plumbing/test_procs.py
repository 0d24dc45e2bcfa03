"""Process state from /proc: a zombie is gone, a recycled PID is another process,
and stopping a process does not wait for its parent to reap it (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from lab.env import cleanup
from lab.plumbing import procs


def _wait_state(pid: int, want: str, timeout: float = 5.0) -> str | None:
    deadline = time.monotonic() + timeout
    while (got := procs.state(pid)) != want and time.monotonic() < deadline:
        time.sleep(0.005)
    return got


def test_a_zombie_counts_as_gone_until_reaped_and_then_does_not_exist() -> None:
    child = subprocess.Popen(["true"])  # exits at once; not reaped until wait()
    try:
        assert _wait_state(child.pid, "Z") == "Z"
        os.kill(child.pid, 0)  # why kill(pid, 0) is the wrong question: it still succeeds
        assert not procs.running(child.pid)
        assert procs.ProcessRef.of(child.pid) is None
        assert procs.wait_gone([procs.ProcessRef(child.pid, 0)], 0.1) == []
    finally:
        child.wait()
    assert procs.state(child.pid) is None
    assert procs.read_stat(child.pid) is None


def test_a_recycled_pid_is_not_the_same_process() -> None:
    me = procs.ProcessRef.of(os.getpid())
    assert me is not None
    assert me.running()
    assert procs.read_stat(os.getpid()).comm  # type: ignore[union-attr]
    impostor = procs.ProcessRef(os.getpid(), me.start_time + 1)
    assert not impostor.running()
    assert impostor.signal(signal.SIGTERM) is False  # nothing sent: we are still here


def test_stop_pids_returns_as_soon_as_the_child_exits() -> None:
    child = subprocess.Popen(["sleep", "30"])  # dies on SIGTERM, stays a zombie until reaped
    t0 = time.monotonic()
    stopped = cleanup.stop_pids([child.pid])
    took = time.monotonic() - t0
    assert stopped == [child.pid]
    # well short of the 2 s grace period it would wait for a child still there (the
    # margin is for a loaded machine, not for the grace period)
    assert took < 1.5, f"stop_pids took {took:.2f} s"
    assert not procs.running(child.pid)
    child.wait(1)


def test_stop_kills_what_ignores_sigterm_after_the_grace_period() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        t0 = time.monotonic()
        assert procs.stop([child.pid], grace=0.2) == [child.pid]
        assert 0.2 <= time.monotonic() - t0 < 2.0
        assert not procs.running(child.pid)
    finally:
        child.kill()
        child.wait(5)
    assert child.returncode in (-signal.SIGKILL, 0)  # 0: reaped by stop before wait
