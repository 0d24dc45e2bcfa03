"""Which process holds a run: ``/run/dsrlab/<run id>.owner`` (PID and start time).

That file is one state directory's view; a run's namespaces also carry the
same record in the kernel (:mod:`lab.plumbing.nsmark`), which every state
directory sees: :mod:`lab.env.cleanup` asks both.

A run's first namespace claims it for the creating process. ``dsrlab clean``
without run ids takes only what a dead run left: a run whose owner is gone
(killed) and that was not left up on purpose (a detached lab releases its
claim and has a state file; it goes only when named, or with ``--all``).
The start time makes a recycled PID not count as the owner.

The directory is ``/run/dsrlab``, or ``$DSRLAB_STATE_DIR`` when that is set
(tests point it at a folder of their own, so that what they clean cannot be
another user's lab). Every file the lab writes there is named by its run id:
``<run id>.owner``, ``<run id>.json`` (a detached lab's state) and their
temporary forms; :func:`run_files` finds them all.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from lab import settings
from lab.atomic import OutputError, reason
from lab.plumbing import interrupts, names, procs

OWNER_DIR = settings.state_dir_path()  # checked where it is used (lab.settings)

# <run id>.owner, <run id>.json, <run id>.tmp, .<run id>.json.tmp, ...
_RUN_FILE = re.compile(rf"^\.?(?P<run_id>[0-9a-f]{{{names.RUN_ID_LEN}}})(\..*)?$")


def _path(run_id: str) -> Path:
    return OWNER_DIR / f"{names.check_run_id(run_id)}.owner"


def run_files() -> dict[str, list[Path]]:
    """Every file under :data:`OWNER_DIR` named by a run id, by run id (not following
    symbolic links; directories are not the lab's and are left out)."""
    found: dict[str, list[Path]] = {}
    settings.check_dir(OWNER_DIR, settings.STATE_DIR, create=False)
    try:
        entries = list(os.scandir(OWNER_DIR))
    except OSError:
        return found
    for e in entries:
        m = _RUN_FILE.match(e.name)
        if m is not None and not e.is_dir(follow_symlinks=False):
            found.setdefault(m["run_id"], []).append(OWNER_DIR / e.name)
    return {k: sorted(v) for k, v in found.items()}


@dataclass(frozen=True)
class Holder:
    """A live process that holds a run, and the signal that stops it cleanly."""

    process: procs.ProcessRef
    stop_signal: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def this_process(cls) -> Holder:
        return cls(_this_process(os.getpid()), interrupts.stop_signal())

    @classmethod
    def alive(cls, pid: int, start_time: int, stop_signal: int) -> Holder | None:
        """The holder if that very process still runs (not a recycled PID, no zombie)."""
        ref = procs.ProcessRef(pid, start_time)
        return cls(ref, stop_signal) if ref.running() else None


@functools.cache
def _this_process(pid: int) -> procs.ProcessRef:
    """This process (by PID: a forked child asks for its own), read once."""
    ref = procs.ProcessRef.of(pid)
    assert ref is not None  # this process runs
    return ref


def _start_time(pid: int) -> str | None:
    st = procs.read_stat(pid)
    return None if st is None else str(st.start_time)


def claim(run_id: str) -> None:
    """Record this process as the run's owner (first claim wins)."""
    settings.check_dir(OWNER_DIR, settings.STATE_DIR, create=True)
    pid = os.getpid()
    path = _path(run_id)
    # written whole, then linked into place: nobody ever reads a half-written claim
    # (which would look like a dead owner to ``dsrlab clean``)
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    try:
        OWNER_DIR.mkdir(parents=True, exist_ok=True)
        tmp.write_text(f"{pid} {_start_time(pid)} {interrupts.stop_signal()}\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as exc:
        raise OutputError(path, f"cannot write: {reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def release(run_id: str) -> None:
    """Drop the claim if this process holds it."""
    if alive_owner(run_id) == os.getpid():
        _path(run_id).unlink(missing_ok=True)


def forget(run_id: str) -> None:
    """Remove the claim whoever made it (the run is gone)."""
    _path(run_id).unlink(missing_ok=True)


def alive_owner(run_id: str) -> int | None:
    """The PID of the run's owner while that very process still runs."""
    holder = holder_of(run_id)
    return holder.pid if holder is not None else None


def holder_of(run_id: str) -> Holder | None:
    """The run's owner by its file here, while that very process still runs."""
    try:
        fields = _path(run_id).read_text().split()
        pid, start = int(fields[0]), int(fields[1])
        sig = int(fields[2]) if len(fields) > 2 else int(signal.SIGINT)
    except (OSError, ValueError, IndexError):
        return None
    return Holder.alive(pid, start, sig)
