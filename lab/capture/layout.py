"""A capture set's layout on disk: its file names, the hop roles, its error.

Kept free of heavy imports: ``dsrlab review`` of a plain pcap needs these
names and nothing else of the capture package.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lab.atomic import OutputError, check_folder, replace_symlink
from lab.errors import LabError
from lab.plumbing import owner, procs

Role = Literal["client", "lb-node", "backend-node", "pod"]
ROLES: tuple[Role, ...] = ("client", "lb-node", "backend-node", "pod")
MANIFEST = "manifest.json"  # what was captured where (lab.capture.manifest)
RESULTS = "results.json"  # the trace checker's verdicts
MERGED = "merged.pcapng"  # every hop in one file, for Wireshark
COMPARISON = "modes.json"  # a modes comparison's figures (lab.runner.compare)
COMPARISON_PLOT = "modes.svg"  # ... and their plot
STEPS = "steps.json"  # what each traffic step of the run did (lab.runner.steps)
DATAPATH_EVENTS = "datapath-events.json"  # the datapath's drops (lab.capture.dpevents)
COMPARED = "compared.json"  # a both run's comparisons with the other datapaths' sets
LATEST = "latest"  # captures/<scenario>/latest -> the newest finished run


class CaptureError(LabError, RuntimeError):
    """A capture could not start or stop, or a capture set cannot be read."""


# -- capture sets on disk: finished or not ------------------------------------------
# captures/<scenario>/<run id>/ is complete once it holds results.json (written after
# the checks); one holding a manifest or pcaps but no results.json was never finished
# (the run was killed) or is still being written: the run holds a lock on its
# .writing file (flock, which dies with the process) from before the first pcap until
# latest has moved. Only sets nobody writes are ever removed, and only when every
# entry is a file the lab writes there.

WRITING = ".writing"  # "<pid> <start time> <stop signal>" of the run writing the set
_RUN_ID = re.compile(r"^[0-9a-f]{6}$")
# every name the lab writes into a capture set, and the staged forms of each
# (.manifest.json.tmp, lab.atomic's .NAME.<8 hex>.tmp, .results.json.staging)
_LAB_NAMES = (r"manifest\.json|steps\.json|results\.json|merged\.pcapng|report\.[a-z]+"
              r"|[^/]+\.pcap|modes\.json|modes\.svg|datapath-events\.json|compared\.json"
              r"|writing")
_LAB_FILE = re.compile(rf"^\.?({_LAB_NAMES})((\.[0-9A-Za-z_-]+)*\.(tmp|staging))?$")
_STAGING_DIR = f".{RESULTS}.staging"  # results.json is written whole in here first


@dataclass(frozen=True)
class CaptureSet:
    """One ``<root>/<scenario>/<run id>/`` directory and whether it was finished."""

    path: Path
    scenario: str
    run_id: str
    complete: bool
    started: bool  # holds a manifest or pcaps


def capture_sets(root: Path) -> list[CaptureSet]:
    """Every capture set under ``root`` (``captures/``), never following symbolic links."""
    found = []
    for scen in _entries(root):
        if scen.is_symlink() or not scen.is_dir():
            continue
        for run in _entries(scen):
            if not _RUN_ID.match(run.name) or run.is_symlink() or not run.is_dir():
                continue
            try:
                names = os.listdir(run)
            except OSError:
                continue
            found.append(CaptureSet(
                path=run, scenario=scen.name, run_id=run.name,
                complete=RESULTS in names,
                started=MANIFEST in names or any(n.endswith(".pcap") for n in names)))
    return found


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except OSError:  # missing, not a directory, not readable: nothing to find there
        return []


def incomplete_capture_sets(root: Path) -> list[CaptureSet]:
    """The capture sets under ``root`` that were started and never finished."""
    return [s for s in capture_sets(root) if s.started and not s.complete]


# -- the run writing a set ------------------------------------------------------------

@contextlib.contextmanager
def writing(run_dir: Path) -> Iterator[Path]:
    """Hold ``run_dir`` as the set this process writes (made if missing): its
    :data:`WRITING` file names the process and stays locked until the block ends
    (or the process dies); then it goes, and so does ``run_dir`` if nothing was
    written in it. :func:`writer_of` sees the lock."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / WRITING
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CaptureError(f"{run_dir}: another run is writing this capture set") from None
        me = owner.Holder.this_process()
        os.ftruncate(fd, 0)
        os.write(fd, f"{me.pid} {me.process.start_time} {me.stop_signal}\n".encode())
        try:
            yield run_dir
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still locked: nobody sees it unlocked and stale
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if empty: a run that never started capturing
    finally:
        os.close(fd)


def writer_of(run_dir: Path) -> owner.Holder | None:
    """The live process writing the set in ``run_dir``; None when nobody is."""
    fd = _lock_writing(run_dir)
    if fd is not None:  # not locked by anyone: nobody writes it
        if fd >= 0:
            os.close(fd)
        return None
    return _read_writer(run_dir / WRITING)


def _lock_writing(run_dir: Path) -> int | None:
    """Lock the set's :data:`WRITING` file for this process; the descriptor holding the
    lock (-1 when there is no such file), or None when a live run holds it."""
    try:
        fd = os.open(run_dir / WRITING, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return -1
    except OSError as exc:
        raise CaptureError(f"{run_dir / WRITING}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_writer(path: Path) -> owner.Holder:
    """Who holds the lock on ``path`` (it writes its name there as soon as it locks)."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            pid, start, sig = (int(f) for f in path.read_text().split())
            return owner.Holder(procs.ProcessRef(pid, start), sig)
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return owner.Holder(procs.ProcessRef(0, 0), 0)  # held, by we cannot say whom
            time.sleep(0.01)


def remove_capture_set(cs: CaptureSet) -> list[str]:
    """Remove an unfinished capture set; returns what was done.

    Refused (:class:`CaptureError`) when a live run is writing it, when it was
    finished meanwhile, or when it holds anything but the lab's own files
    (pcaps, ``manifest.json``, ``steps.json``, ``merged.pcapng``, ``report.*``,
    ``modes.*``, their staged forms) as regular files. ``latest`` pointing at
    it is moved to the newest finished set, or removed.
    """
    lock = _lock_writing(cs.path)
    if lock is None:
        held = _read_writer(cs.path / WRITING)
        raise CaptureError(f"{cs.path}: being written by pid {held.pid} "
                           f"(run {cs.run_id} is in progress), left alone")
    try:  # held while the files go: no run can take the set meanwhile
        return _remove_unlocked(cs)
    finally:
        if lock >= 0:
            os.close(lock)


def _remove_unlocked(cs: CaptureSet) -> list[str]:
    entries = list(os.scandir(cs.path))
    names = [e.name for e in entries]
    if RESULTS in names:
        raise CaptureError(f"{cs.path}: finished meanwhile ({RESULTS}), left alone")
    staged = {e.name: _staged_files(Path(e.path)) for e in entries
              if e.name == _STAGING_DIR and e.is_dir(follow_symlinks=False)}
    strangers = sorted(e.name for e in entries
                       if not (_LAB_FILE.match(e.name) and e.is_file(follow_symlinks=False))
                       and staged.get(e.name) is None)
    if strangers:
        raise CaptureError(f"{cs.path}: holds files the lab does not write "
                           f"({', '.join(strangers)}), left alone")
    for e in entries:
        if e.name in staged:
            for f in staged[e.name] or []:
                os.unlink(f)
            os.rmdir(e.path)
        else:
            os.unlink(os.path.join(cs.path, e.name))
    os.rmdir(cs.path)
    done = [f"removed capture set {cs.path} ({len(entries)} files)"]
    link = cs.path.parent / LATEST
    if link.is_symlink() and os.readlink(link) in (cs.run_id, str(cs.path)):
        newest = max((s for s in capture_sets(cs.path.parent.parent)
                      if s.scenario == cs.scenario and s.complete),
                     key=lambda s: (s.path / RESULTS).stat().st_mtime, default=None)
        if newest is None:
            link.unlink()
            done.append(f"removed {link} (no finished capture set left)")
        else:
            mark_latest(newest.path)
            done.append(f"{link} now points at {newest.run_id}")
    return done


def _staged_files(directory: Path) -> list[str] | None:
    """The files of a staging directory the lab left (results.json written whole in
    it); None when it holds anything else."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    if not all(_LAB_FILE.match(e.name) and e.is_file(follow_symlinks=False) for e in entries):
        return None
    return [e.path for e in entries]


def check_captures(root: Path, scenario: str | None = None) -> None:
    """Refuse (:class:`~lab.atomic.OutputError`, one line) a captures folder a run could
    not write its capture set to, before the run starts anything.

    ``root`` (and ``root/<scenario>`` when given) must be a writable folder or
    one that can be made (:func:`lab.atomic.check_folder`); ``latest`` there
    must be a symbolic link or absent (the run replaces it).
    """
    check_folder(root, "captures folder")
    if scenario is None:
        return
    folder = root / scenario
    check_folder(folder, "captures folder")
    link = folder / LATEST
    try:
        st = os.lstat(link)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(link, str(exc.strerror).lower()) from None
    if not stat.S_ISLNK(st.st_mode):
        raise OutputError(link, "is not a symbolic link: the run points it at its capture "
                          "set; move it away")


def mark_latest(run_dir: Path) -> Path:
    """Point ``<run_dir>/../latest`` at ``run_dir`` (atomically); returns the link."""
    # the temporary link of this run id's name an older dsrlab made (and, killed, left)
    (run_dir.parent / f".{LATEST}-{run_dir.name}").unlink(missing_ok=True)
    return replace_symlink(run_dir.parent / LATEST, run_dir.name)
