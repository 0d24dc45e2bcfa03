"""What to review: files and capture directories, with the roles their manifests give."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.capture.layout import MANIFEST, CaptureError, Role
from lab.check.review.model import ReviewError

if TYPE_CHECKING:
    from lab.capture.capdir import CaptureDir


@dataclass(frozen=True)
class Target:
    """A file to review and what a manifest says about it."""

    path: Path
    role: Role | None = None
    point: str | None = None


def _capture_dir(directory: Path) -> CaptureDir:
    # the manifest model loads pydantic: only files inside capture sets pay for it
    from lab.capture.capdir import CaptureDir  # noqa: PLC0415

    return CaptureDir.load(directory)


def _is(path: Path, test: Callable[[int], bool]) -> bool:
    """``test`` on ``path``'s mode; False when it cannot be stat'ed (the reader says why)."""
    try:
        return test(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def is_capture_set(path: Path) -> bool:
    """A directory holding a manifest (False for anything that cannot be looked at)."""
    return _is(path, stat.S_ISDIR) and _is(path / MANIFEST, stat.S_ISREG)


def _manifest_point(path: Path) -> Target:
    manifest = path.parent / MANIFEST
    if _is(manifest, stat.S_ISREG):
        try:
            cd = _capture_dir(path.parent)
        except CaptureError:
            return Target(path)
        real = os.path.realpath(path)
        for p in cd.points:
            if os.path.realpath(p.file) == real:
                return Target(path, p.role, p.name)
    return Target(path)


def targets(paths: Iterable[str | Path]) -> list[Target]:
    """Expand capture directories (their manifest's pcaps, with roles) and files.

    A file that sits beside a manifest naming it gets its role from there.
    Nothing is opened here: a path that is missing, unreadable or not a
    regular file becomes a target whose review says so
    (:mod:`lab.wire.paths`).
    """
    out: list[Target] = []
    for raw_path in paths:
        p = Path(raw_path)
        if _is(p, stat.S_ISDIR):
            if not is_capture_set(p):
                raise ReviewError(f"{p}: a directory must be a capture set with a {MANIFEST}")
            try:
                cd = _capture_dir(p)
            except CaptureError as exc:  # its lines name the manifest and each field
                raise ReviewError(str(exc)) from None
            out += [Target(pt.file, pt.role, pt.name) for pt in cd.points]
        else:
            out.append(_manifest_point(p))
    return out
