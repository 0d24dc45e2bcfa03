"""Real file systems for tests of what happens when writing fails: a tiny tmpfs that
fills up, a read-only bind mount. Each is mounted under the test's own temporary
folder and unmounted when the test ends (root only: the tests skip otherwise)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def require_mounts() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a small tmpfs / a read-only bind mount)")


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "200k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (made here)."""
    require_mounts()
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "dsrlab-test",
                    str(path)], check=True)
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (made here) as a read-only bind mount of an empty folder beside it."""
    require_mounts()
    src = path.with_name(path.name + "-src")
    src.mkdir(parents=True)
    path.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        _umount(path)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the file system at ``disk`` with a ballast file, then give back ``leave``
    bytes of it; returns the ballast."""
    ballast = disk / "ballast"
    chunk = b"\0" * 65536
    with ballast.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    if leave:
        os.truncate(ballast, max(0, ballast.stat().st_size - leave))
    return ballast


def leftovers(folder: Path) -> list[str]:
    """Temporary files (``*.tmp``, ``*.staging``) anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".staging")) or ".tmp" in p.name)
