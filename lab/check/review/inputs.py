"""What to review: files and capture directories, with the roles their manifests give."""

from __future__ import annotations

from collections.abc import Iterable
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


def _manifest_point(path: Path) -> Target:
    manifest = path.parent / MANIFEST
    if manifest.is_file():
        try:
            cd = _capture_dir(path.parent)
        except CaptureError:
            return Target(path)
        for p in cd.points:
            if p.file.resolve() == path.resolve():
                return Target(path, p.role, p.name)
    return Target(path)


def targets(paths: Iterable[str | Path]) -> list[Target]:
    """Expand capture directories (their manifest's pcaps, with roles) and files.

    A file that sits beside a manifest naming it gets its role from there.
    """
    out: list[Target] = []
    for raw_path in paths:
        p = Path(raw_path)
        if p.is_dir():
            try:
                cd = _capture_dir(p)
            except CaptureError as exc:
                raise ReviewError(f"{p}: a directory must be a capture set with a "
                                  f"{MANIFEST} ({exc})") from None
            out += [Target(pt.file, pt.role, pt.name) for pt in cd.points]
        else:
            out.append(_manifest_point(p))
    return out
