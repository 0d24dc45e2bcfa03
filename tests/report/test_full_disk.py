"""The merged pcapng, the report and its picture on a disk that fills up.

The seed's capture set is copied onto a tiny tmpfs, which is then filled
but for a few KiB: the merged pcapng (~30 KiB), ``report.html`` (~100 KiB)
and ``report.png`` do not fit. Each writer fails with one error naming its
file, and leaves neither a cut file nor a temporary one; a PNG Chromium did
not finish is never called rendered.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.atomic import OutputError
from lab.capture.layout import MERGED
from lab.report import HTML, MARKDOWN, build_report, merge_pcapng
from lab.report import screenshot as shot
from tests.mounts import fill, leftovers, small_disk

ROOM = 8 * 1024  # what the filled disk has left


@pytest.fixture
def full_set(seed_capture: Path, tmp_path: Path) -> Iterator[Path]:
    """The seed's pcaps, manifest and results on a disk with ``ROOM`` bytes left."""
    with small_disk(tmp_path / "disk", "512k") as disk:
        run = disk / seed_capture.name
        run.mkdir()
        for f in seed_capture.iterdir():
            if f.suffix == ".pcap" or f.name in ("manifest.json", "results.json"):
                shutil.copy(f, run / f.name)
        fill(disk, leave=ROOM)
        yield run


def test_merged_pcapng_on_a_full_disk(full_set: Path) -> None:
    with pytest.raises(OutputError) as info:
        merge_pcapng(full_set)
    assert str(info.value) == f"{full_set / MERGED}: cannot write: no space left on device"
    assert not (full_set / MERGED).exists()
    assert leftovers(full_set.parent) == []


def test_report_on_a_full_disk(full_set: Path) -> None:
    with pytest.raises(OutputError) as info:
        build_report(full_set)
    assert str(info.value) == f"{full_set / HTML}: cannot write: no space left on device"
    assert not (full_set / HTML).exists()
    assert not (full_set / MARKDOWN).exists()
    assert leftovers(full_set.parent) == []


def test_a_picture_that_does_not_fit_is_not_rendered(full_set: Path, seed_capture: Path,
                                                      ) -> None:
    if not shot.available():
        pytest.skip("needs Debian's chromium (scripts/install.sh installs it)")
    png = full_set / "report.png"
    with pytest.raises(shot.ScreenshotError,
                       match=r"report\.png: cannot write: no space left on device$"):
        shot.screenshot(seed_capture / HTML, png, width=800, height=1200)
    assert not png.exists()
    assert leftovers(full_set.parent) == []


def test_a_png_without_its_end_chunk_is_incomplete() -> None:
    whole = shot.PNG_SIGNATURE + b"\0" * 40 + shot.PNG_END
    assert shot.png_complete(whole)
    assert not shot.png_complete(whole[:-1])
    assert not shot.png_complete(whole[:30])
    assert not shot.png_complete(b"")
    assert not shot.png_complete(b"GIF89a" + shot.PNG_END)
