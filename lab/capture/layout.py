"""A capture set's layout on disk: its file names, the hop roles, its error.

Kept free of heavy imports: ``dsrlab review`` of a plain pcap needs these
names and nothing else of the capture package.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lab.atomic import OutputError, check_folder, replace_symlink
from lab.errors import LabError

Role = Literal["client", "lb-node", "backend-node", "pod"]
ROLES: tuple[Role, ...] = ("client", "lb-node", "backend-node", "pod")
MANIFEST = "manifest.json"  # what was captured where (lab.capture.manifest)
RESULTS = "results.json"  # the trace checker's verdicts
MERGED = "merged.pcapng"  # every hop in one file, for Wireshark
COMPARISON = "modes.json"  # a modes comparison's figures (lab.runner.compare)
COMPARISON_PLOT = "modes.svg"  # ... and their plot
STEPS = "steps.json"  # what each traffic step of the run did (lab.runner.steps)
LATEST = "latest"  # captures/<scenario>/latest -> the newest finished run


class CaptureError(LabError, RuntimeError):
    """A capture could not start or stop, or a capture set cannot be read."""


# -- capture sets on disk: finished or not ------------------------------------------
# captures/<scenario>/<run id>/ is complete once it holds results.json (written after
# the checks); one holding a manifest or pcaps but no results.json was never finished
# (the run was killed). Only those are ever removed, and only when every entry is a
# file the lab writes there.

_RUN_ID = re.compile(r"^[0-9a-f]{6}$")
_LAB_FILE = re.compile(r"^\.?(manifest\.json|merged\.pcapng|report\.[a-z]+|[^/]+\.pcap"
                       r"|modes\.json|modes\.svg|steps\.json|results\.json)"
                       r"(\.[0-9a-f]{8})?(\.tmp)?$")  # .NAME.<8 hex>.tmp: lab.atomic's


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


def remove_capture_set(cs: CaptureSet) -> list[str]:
    """Remove an unfinished capture set; returns what was done.

    Refused (:class:`CaptureError`) when it was finished meanwhile or holds
    anything but the lab's own files (pcaps, ``manifest.json``,
    ``merged.pcapng``, ``report.*``, their ``.tmp`` forms) as regular files.
    ``latest`` pointing at it is moved to the newest finished set, or removed.
    """
    entries = list(os.scandir(cs.path))
    names = [e.name for e in entries]
    if RESULTS in names:
        raise CaptureError(f"{cs.path}: finished meanwhile ({RESULTS}), left alone")
    strangers = sorted(e.name for e in entries
                       if not (_LAB_FILE.match(e.name) and e.is_file(follow_symlinks=False)))
    if strangers:
        raise CaptureError(f"{cs.path}: holds files the lab does not write "
                           f"({', '.join(strangers)}), left alone")
    for e in entries:
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
