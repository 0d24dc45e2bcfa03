"""A picture of a report, taken by real headless Chromium (Debian's package).

``make demo`` uses it so the run shows that its report renders; the tests
drive Chromium through WebDriver for DOM assertions, this only shoots the
first screenful(s) of the page as ``report.png``.

Everything Chromium writes goes into one scratch directory named by the run
id, ``dsrlab-<run id>-chromium-XXXXXXXX`` (:mod:`lab.plumbing.runtags`): its
profile, and its own temporary files (``TMPDIR``, ``HOME`` and the XDG folders
point there). Chromium and its helper processes run in a process group of their
own, tagged with the run id; however the call ends (done, timed out,
interrupted) the group is stopped and waited for before the directory is
removed. What a run killed with SIGKILL leaves (the directory, helpers still
running) carries the run id, and ``dsrlab clean <run id>`` finds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lab.atomic import OutputError, reason, write_bytes
from lab.errors import LabError
from lab.plumbing import names, runtags

CHROMIUM = "chromium"
# no network here but the package registries: keep Chromium from trying any
QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               "--disable-breakpad", "--disable-crash-reporter")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: no data, its CRC


class ScreenshotError(LabError, RuntimeError):
    """Chromium is missing or did not produce the picture."""


def available() -> bool:
    return shutil.which(CHROMIUM) is not None


def screenshot(html: Path, png: Path | None = None, *, run_id: str | None = None,
               width: int = 1400, height: int = 2400, timeout_s: float = 60.0) -> Path:
    """Render ``html`` in headless Chromium and write a PNG (default: beside it).

    ``run_id`` tags Chromium's processes and scratch directory (default: a new id).
    """
    exe = shutil.which(CHROMIUM)
    if exe is None:
        raise ScreenshotError("chromium is not installed (scripts/install.sh installs it)")
    run_id = run_id or names.new_run_id()
    out = (png or html.with_suffix(".png")).resolve()
    try:  # an older picture would not be of this report
        out.unlink(missing_ok=True)
    except OSError as exc:
        raise ScreenshotError(f"{out}: cannot replace: {reason(exc)}") from None
    scratch = runtags.scratch_dir(run_id, "chromium")
    try:
        env = _private_env(scratch)
        shot = scratch / "screenshot.png"  # checked whole, then put in place
        argv = [exe, *QUIET_FLAGS, f"--user-data-dir={scratch / 'profile'}",
                f"--window-size={width},{height}", f"--screenshot={shot}",
                html.resolve().as_uri()]
        try:
            proc = runtags.run(argv, run_id=run_id, env=env, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"chromium did not finish within {timeout_s:.0f}s") from None
        _place(shot, out, proc)
    finally:
        problem = runtags.remove_dir(scratch)
    if problem:
        raise ScreenshotError(f"chromium's scratch directory was not removed: {problem}")
    return out


def _private_env(scratch: Path) -> dict[str, str]:
    """This environment with every place Chromium writes to inside ``scratch``."""
    env = dict(os.environ)
    # short names: Chromium's sockets go in TMPDIR, a socket's path has 107 bytes at most
    for var, sub in (("TMPDIR", "t"), ("HOME", "home"), ("XDG_CONFIG_HOME", "config"),
                     ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        (scratch / sub).mkdir(mode=0o700)
        env[var] = str(scratch / sub)
    return env


def png_complete(data: bytes) -> bool:
    """True when ``data`` is a whole PNG: its signature first, its IEND chunk last."""
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END)


def _place(shot: Path, out: Path, proc: subprocess.CompletedProcess[str]) -> None:
    """Chromium's picture, if whole, written to ``out`` (whole or not at all)."""
    try:
        data = shot.read_bytes()
    except OSError:
        data = b""
    if not data:
        raise ScreenshotError(f"chromium wrote no {out.name} (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-500:]}")
    if not png_complete(data):
        raise ScreenshotError(f"chromium wrote an incomplete {out.name} ({len(data)} bytes, "
                              f"no PNG end chunk; exit {proc.returncode})")
    try:
        write_bytes(out, data)
    except OutputError as exc:
        raise ScreenshotError(str(exc)) from None
