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

from lab.errors import LabError

CHROMIUM = "chromium"
# no network here but the package registries: keep Chromium from trying any
QUIET_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars")


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
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="dsrlab-chromium-") as profile:
        argv = [exe, *QUIET_FLAGS, f"--user-data-dir={profile}",
                f"--window-size={width},{height}", f"--screenshot={out}",
                html.resolve().as_uri()]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"chromium did not finish within {timeout_s:.0f}s") from None
    if not out.exists() or out.stat().st_size == 0:
        raise ScreenshotError(f"chromium wrote no {out.name} (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-500:]}")
    return out
