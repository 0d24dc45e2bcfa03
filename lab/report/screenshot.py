"""A picture of a report, taken by real headless Chromium (Debian's package).

``make demo`` uses it so the run shows that its report renders; the tests
drive Chromium through WebDriver for DOM assertions, this only shoots the
first screenful(s) of the page as ``report.png``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from lab.atomic import OutputError, reason, write_bytes
from lab.errors import LabError

CHROMIUM = "chromium"
# no network here but the package registries: keep Chromium from trying any
QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: no data, its CRC


class ScreenshotError(LabError, RuntimeError):
    """Chromium is missing or did not produce the picture."""


def available() -> bool:
    return shutil.which(CHROMIUM) is not None


def screenshot(html: Path, png: Path | None = None, *, width: int = 1400,
               height: int = 2400, timeout_s: float = 60.0) -> Path:
    """Render ``html`` in headless Chromium and write a PNG (default: beside it)."""
    exe = shutil.which(CHROMIUM)
    if exe is None:
        raise ScreenshotError("chromium is not installed (scripts/install.sh installs it)")
    out = (png or html.with_suffix(".png")).resolve()
    try:  # an older picture would not be of this report
        out.unlink(missing_ok=True)
    except OSError as exc:
        raise ScreenshotError(f"{out}: cannot replace: {reason(exc)}") from None
    with tempfile.TemporaryDirectory(prefix="dsrlab-chromium-") as profile:
        shot = Path(profile) / "screenshot.png"  # checked whole, then put in place
        argv = [exe, *QUIET_FLAGS, f"--user-data-dir={profile}",
                f"--window-size={width},{height}", f"--screenshot={shot}",
                html.resolve().as_uri()]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"chromium did not finish within {timeout_s:.0f}s") from None
        _place(shot, out, proc)
    return out


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
