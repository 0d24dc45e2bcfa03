"""Which process holds a run: ``/run/dsrlab/<run id>.owner`` (PID and start time).

A run's first namespace claims it for the creating process; ``dsrlab clean``
without run ids leaves runs alone whose owner still lives (another session's
test run, say) and takes those whose owner is gone (a killed run) or that
were handed over to ``dsrlab down`` (a detached lab releases its claim).
The start time makes a recycled PID not count as the owner.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

OWNER_DIR = Path("/run/dsrlab")


def _path(run_id: str) -> Path:
    return OWNER_DIR / f"{run_id}.owner"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(") ", 1)[1].split()[19]  # field 22: starttime


def claim(run_id: str) -> None:
    """Record this process as the run's owner (first claim wins)."""
    OWNER_DIR.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    with contextlib.suppress(FileExistsError), _path(run_id).open("x") as f:
        f.write(f"{pid} {_start_time(pid)}\n")


def release(run_id: str) -> None:
    """Drop the claim if this process holds it."""
    if alive_owner(run_id) == os.getpid():
        _path(run_id).unlink(missing_ok=True)


def forget(run_id: str) -> None:
    """Remove the claim whoever made it (the run is gone)."""
    _path(run_id).unlink(missing_ok=True)


def alive_owner(run_id: str) -> int | None:
    """The PID of the run's owner while that very process still runs."""
    try:
        pid_text, start = _path(run_id).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == start else None
