"""Process state from ``/proc``: is a PID still *that* process, and is it running?

``kill(pid, 0)`` is the wrong question for "has it stopped": a process that
has exited stays a zombie until its parent (or PID 1, for an orphan) reaps
it, and ``kill`` keeps succeeding on a zombie. A zombie is gone: it runs no
code and holds no sockets, so here a PID in state ``Z`` (zombie) or ``X``
(dead) counts as gone.

A PID can also be recycled: :class:`ProcessRef` pairs a PID with the start
time the kernel recorded for it (``/proc/PID/stat`` field 22), so a new
process that happens to get the same number is never taken for the old one.
Signals go through a pidfd when the kernel has them (Linux 5.3+), which
closes the last window between "checked it is the one" and "signalled it".
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

GONE_STATES = frozenset("ZXx")  # zombie, dead (x: dead, on kernels before 4.14)


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the lab uses."""

    pid: int
    comm: str
    state: str  # one letter: R S D Z T t X I ...
    ppid: int
    start_time: int  # clock ticks after boot


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/PID/stat`` parsed, or None when there is no such PID."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # "pid (comm) S ppid ...": comm may hold spaces and parentheses; the last ')' ends it
    close = raw.rfind(")")
    if close < 0:
        return None
    comm = raw[raw.find("(") + 1:close]
    fields = raw[close + 2:].split()
    try:
        return ProcStat(pid=pid, comm=comm, state=fields[0], ppid=int(fields[1]),
                        start_time=int(fields[19]))
    except (IndexError, ValueError):
        return None


def state(pid: int) -> str | None:
    """The one-letter state of ``pid``, None when there is no such PID."""
    st = read_stat(pid)
    return st.state if st else None


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (or dead)."""
    st = read_stat(pid)
    return st is not None and st.state not in GONE_STATES


@dataclass(frozen=True)
class ProcessRef:
    """One process: its PID and the start time that tells it from a later one."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The process now holding ``pid``; None when it is gone already."""
        st = read_stat(pid)
        if st is None or st.state in GONE_STATES:
            return None
        return cls(pid, st.start_time)

    def running(self) -> bool:
        """Still this very process, and neither a zombie nor dead."""
        st = read_stat(self.pid)
        return (st is not None and st.start_time == self.start_time
                and st.state not in GONE_STATES)

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if this is still the process; False when it is gone."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        except OSError:  # no pidfds (old kernel, seccomp): check, then kill
            if not self.running():
                return False
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return False
            return True
        try:
            # the pidfd pins the process: if it is the one we mean now, it is the one signalled
            if not self.running():
                return False
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                return False
            return True
        finally:
            os.close(pidfd)


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is a child of this process (else nothing)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(refs: Iterable[ProcessRef], timeout: float) -> list[ProcessRef]:
    """Wait until every process has exited (zombies count as exited) or the
    timeout passes; returns those still running. Children of this process are
    reaped on the way, so they do not linger as zombies."""
    left = [r for r in refs]
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        for r in left:
            reap(r.pid)
        left = [r for r in left if r.running()]
        remaining = deadline - time.monotonic()
        if not left or remaining <= 0:
            return left
        if not _poll_pidfds(left, min(remaining, 0.05)):
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.02)


def _poll_pidfds(refs: list[ProcessRef], timeout: float) -> bool:
    """Block until one of ``refs`` exits (a pidfd turns readable) or ``timeout``;
    False when pidfds are not available (the caller then sleeps instead)."""
    fds: list[int] = []
    try:
        for r in refs:
            try:
                fds.append(os.pidfd_open(r.pid))
            except ProcessLookupError:
                return True  # gone already
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
        return True
    except OSError:
        return False
    finally:
        for fd in fds:
            os.close(fd)


def stop(pids: Iterable[int], *, grace: float = 2.0, kill_wait: float = 1.0) -> list[int]:
    """SIGTERM every process, wait up to ``grace`` for them to exit, SIGKILL the
    rest and wait up to ``kill_wait`` again. Returns the PIDs that were signalled.
    A zombie counts as stopped; a PID reused by another process is left alone."""
    refs = [r for pid in dict.fromkeys(pids) if (r := ProcessRef.of(pid)) is not None]
    signalled = [r for r in refs if r.signal(signal.SIGTERM)]
    left = wait_gone(signalled, grace)
    killed = [r for r in left if r.signal(signal.SIGKILL)]
    if killed:
        wait_gone(killed, kill_wait)
    return [r.pid for r in signalled]


__all__ = ["GONE_STATES", "ProcStat", "ProcessRef", "read_stat", "reap", "running", "state",
           "stop", "wait_gone"]
