"""The capture side of a run that needs no lab: point names, and ``latest`` moved atomically."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lab.capture.layout import LATEST, mark_latest
from lab.capture.live import CapturePoint
from tests.seed import POD2_NODE


def test_a_capture_point_names_its_hop_and_file() -> None:
    p = CapturePoint(POD2_NODE, "eth0", "backend-node")
    assert p.name == f"{POD2_NODE}/eth0"
    assert p.filename == f"{POD2_NODE}--eth0.pcap"


def test_mark_latest_points_the_link_at_the_run(tmp_path: Path) -> None:
    first, second = tmp_path / "seed" / "aaaaaa", tmp_path / "seed" / "bbbbbb"
    first.mkdir(parents=True)
    second.mkdir()
    link = mark_latest(first)
    assert link == tmp_path / "seed" / LATEST
    assert link.is_symlink()
    assert os.readlink(link) == "aaaaaa"  # relative: the folder can move
    assert link.resolve() == first.resolve()
    assert mark_latest(second) == link
    assert os.readlink(link) == "bbbbbb"
    assert sorted(p.name for p in (tmp_path / "seed").iterdir()) == ["aaaaaa", "bbbbbb", LATEST]


def test_a_stale_temporary_link_is_replaced(tmp_path: Path) -> None:
    run = tmp_path / "cccccc"
    run.mkdir()
    (tmp_path / f".{LATEST}-cccccc").symlink_to("elsewhere")  # left by a killed run
    mark_latest(run)
    assert os.readlink(tmp_path / LATEST) == "cccccc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cccccc", LATEST]


def test_mark_latest_moves_the_link_atomically(tmp_path: Path) -> None:
    """A reader never finds ``latest`` missing or dangling while runs replace it."""
    runs = [tmp_path / f"{i:06x}" for i in range(2)]
    for r in runs:
        r.mkdir()
        (r / "manifest.json").write_text(r.name)
    mark_latest(runs[0])
    link = tmp_path / LATEST
    seen: set[str] = set()
    misses: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add((link / "manifest.json").read_text())
            except OSError as exc:
                misses.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1000):
            mark_latest(runs[i % 2])
    finally:
        stop.set()
        reader.join()
    assert misses == []
    assert seen == {r.name for r in runs}  # the reader did see the link move
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
