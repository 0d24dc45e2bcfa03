"""Which process holds a run: ``/run/dsrlab/<run id>.owner`` (PID and start time).

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
import os
import re
from pathlib import Path

from lab import settings
from lab.atomic import OutputError, reason
from lab.plumbing import names

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


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(") ", 1)[1].split()[19]  # field 22: starttime


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
        tmp.write_text(f"{pid} {_start_time(pid)}\n")
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
    try:
        pid_text, start = _path(run_id).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == start else None
