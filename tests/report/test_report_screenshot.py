"""The report rendered by real headless Chromium to a PNG (what `make demo` does)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lab.report import screenshot as shot


def test_chromium_renders_a_page_to_png(tmp_path: Path) -> None:
    if not shot.available():
        pytest.skip("needs Debian's chromium (scripts/install.sh installs it)")
    html = tmp_path / "report.html"
    html.write_text("<!doctype html><title>t</title><h1 id=x>dsrlab</h1>")
    png = shot.screenshot(html, width=640, height=480)
    assert png == tmp_path / "report.png"
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (640, 480)


def test_a_missing_chromium_is_a_clear_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shot, "CHROMIUM", "no-such-chromium-binary")
    with pytest.raises(shot.ScreenshotError, match="chromium is not installed"):
        shot.screenshot(tmp_path / "report.html")
