"""Capture sets on disk: finished ones hold results.json; unfinished ones are found and,
when they hold only the lab's files, removed (``latest`` never left pointing at one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.capture.layout import (
    LATEST,
    MANIFEST,
    RESULTS,
    CaptureError,
    capture_sets,
    incomplete_capture_sets,
    remove_capture_set,
)


def _set(root: Path, scenario: str, run_id: str, *files: str) -> Path:
    d = root / scenario / run_id
    d.mkdir(parents=True)
    for name in files:
        (d / name).write_text("x")
    return d


def test_complete_unfinished_and_other_directories_are_told_apart(tmp_path: Path) -> None:
    done = _set(tmp_path, "seed", "aaaaaa", MANIFEST, "client--br-kind.pcap", RESULTS)
    half = _set(tmp_path, "seed", "bbbbbb", MANIFEST, "client--br-kind.pcap")
    pcaps = _set(tmp_path, "other", "cccccc", "n1--eth0.pcap")
    _set(tmp_path, "seed", "dddddd")  # nothing started in it
    _set(tmp_path, "seed", "notarun", MANIFEST)  # not named by a run id
    (tmp_path / "seed" / "eeeeee").symlink_to(half)  # a link is never followed
    found = {s.path: s for s in capture_sets(tmp_path)}
    assert found[done].complete
    assert not found[half].complete
    assert found[half].started
    assert [s.path for s in incomplete_capture_sets(tmp_path)] == [pcaps, half]
    assert incomplete_capture_sets(tmp_path / "nope") == []


def test_removing_an_unfinished_set_moves_latest_to_the_newest_finished(tmp_path: Path) -> None:
    old = _set(tmp_path, "seed", "aaaaaa", MANIFEST, RESULTS)
    half = _set(tmp_path, "seed", "bbbbbb", MANIFEST, "a--eth0.pcap", ".manifest.json.tmp",
                "merged.pcapng", "report.html")
    (tmp_path / "seed" / LATEST).symlink_to(half.name)
    (cs,) = incomplete_capture_sets(tmp_path)
    done = remove_capture_set(cs)
    assert not half.exists()
    assert done == [f"removed capture set {half} (5 files)",
                    f"{tmp_path / 'seed' / LATEST} now points at aaaaaa"]
    assert os.readlink(tmp_path / "seed" / LATEST) == old.name


def test_latest_is_removed_when_no_finished_set_is_left(tmp_path: Path) -> None:
    half = _set(tmp_path, "seed", "bbbbbb", MANIFEST)
    (tmp_path / "seed" / LATEST).symlink_to(half.name)
    remove_capture_set(incomplete_capture_sets(tmp_path)[0])
    assert not (tmp_path / "seed" / LATEST).is_symlink()
    assert list((tmp_path / "seed").iterdir()) == []


@pytest.mark.parametrize("stranger", ["notes.txt", "link.pcap", "sub"])
def test_a_set_holding_anything_else_is_left_alone(tmp_path: Path, stranger: str) -> None:
    half = _set(tmp_path, "seed", "bbbbbb", MANIFEST)
    outside = tmp_path / "precious.pcap"
    outside.write_text("keep me")
    if stranger == "link.pcap":
        (half / stranger).symlink_to(outside)
    elif stranger == "sub":
        (half / stranger).mkdir()
    else:
        (half / stranger).write_text("mine")
    with pytest.raises(CaptureError, match=rf"holds files the lab does not write \({stranger}\)"):
        remove_capture_set(incomplete_capture_sets(tmp_path)[0])
    assert (half / MANIFEST).exists()
    assert (half / stranger).exists()
    assert outside.read_text() == "keep me"


def test_a_set_killed_while_writing_is_removable(tmp_path: Path) -> None:
    """What a run killed inside lab.atomic's writes leaves: its temporary files
    (``.NAME.<8 hex>.tmp``) and steps.json, written before results.json."""
    half = _set(tmp_path, "seed", "cccccc", MANIFEST, "a--eth0.pcap", "steps.json",
                ".results.json.0f1e2d3c.tmp", ".merged.pcapng.a1b2c3d4.tmp",
                ".report.html.00ff00ff.tmp")
    (cs,) = incomplete_capture_sets(tmp_path)
    assert remove_capture_set(cs) == [f"removed capture set {half} (6 files)"]
    assert not half.exists()


def test_a_stranger_that_looks_like_a_temporary_file_is_kept(tmp_path: Path) -> None:
    half = _set(tmp_path, "seed", "dddddd", MANIFEST, ".notes.txt.0f1e2d3c.tmp")
    (cs,) = incomplete_capture_sets(tmp_path)
    with pytest.raises(CaptureError, match=r"\.notes\.txt\.0f1e2d3c\.tmp"):
        remove_capture_set(cs)
    assert half.exists()
