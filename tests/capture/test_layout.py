"""Capture sets on disk: finished ones hold results.json; unfinished ones are found and,
when they hold only the lab's files and no live run is writing them, removed
(``latest`` never left pointing at one)."""

from __future__ import annotations

import os
import subprocess
import sys
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
    writer_of,
    writing,
)
from tests.cli.helpers import REPO


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


@pytest.mark.parametrize("written", [
    "steps.json", ".steps.json.tmp", ".writing", "report.png", "report.md",
    ".report.html.4321.tmp", "modes.json", "modes.svg", ".merged.pcapng.tmp",
    "compare-snat-cilium-dsr-control-plane.pcap", "compared.json", ".compared.json.1a2b3c4d.tmp",
])
def test_every_file_the_lab_writes_in_a_set_is_its_own(tmp_path: Path, written: str) -> None:
    """A set killed at any point holds only files the lab writes: it can go."""
    half = _set(tmp_path, "seed", "bbbbbb", MANIFEST, "a--eth0.pcap", written)
    remove_capture_set(incomplete_capture_sets(tmp_path)[0])
    assert not half.exists()


def test_a_staged_results_file_left_by_a_kill_goes_with_its_set(tmp_path: Path) -> None:
    half = _set(tmp_path, "seed", "bbbbbb", MANIFEST, "a--eth0.pcap")
    staging = half / f".{RESULTS}.staging"
    staging.mkdir()
    (staging / RESULTS).write_text("{")
    assert remove_capture_set(incomplete_capture_sets(tmp_path)[0]) == [
        f"removed capture set {half} (3 files)"]
    assert not half.exists()


def test_a_staging_folder_holding_something_else_is_left_alone(tmp_path: Path) -> None:
    half = _set(tmp_path, "seed", "bbbbbb", MANIFEST)
    staging = half / f".{RESULTS}.staging"
    (staging / "deeper").mkdir(parents=True)
    with pytest.raises(CaptureError, match=r"does not write \(\.results\.json\.staging\)"):
        remove_capture_set(incomplete_capture_sets(tmp_path)[0])
    assert (staging / "deeper").is_dir()


_HOLD = """
import sys, time
from pathlib import Path
from lab.capture.layout import MANIFEST, writing
with writing(Path(sys.argv[1])) as d:
    (d / MANIFEST).write_text("{}")
    (d / "a--eth0.pcap").write_bytes(b"")
    print("writing", flush=True)
    sys.stdin.read()  # until the test closes it (or kills this process)
"""


def _writer(run_dir: Path) -> subprocess.Popen[str]:
    """Another process writing the set in ``run_dir``, as a live run does."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "writing\n"
    return proc


def test_a_set_a_live_run_is_writing_is_never_removed(tmp_path: Path) -> None:
    run_dir = tmp_path / "seed" / "bbbbbb"
    proc = _writer(run_dir)
    try:
        (cs,) = incomplete_capture_sets(tmp_path)
        held = writer_of(run_dir)
        assert held is not None
        assert held.pid == proc.pid
        assert held.process.running()
        with pytest.raises(CaptureError, match=rf"being written by pid {proc.pid} "
                                               r"\(run bbbbbb is in progress\), left alone"):
            remove_capture_set(cs)
        assert sorted(p.name for p in run_dir.iterdir()) == [".writing", "a--eth0.pcap",
                                                              MANIFEST]
    finally:
        proc.kill()  # as SIGKILL would: the lock goes with the process, the files stay
        proc.wait(10)
    assert writer_of(run_dir) is None
    remove_capture_set(incomplete_capture_sets(tmp_path)[0])
    assert not run_dir.exists()


def test_a_finished_writer_leaves_no_lock_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "seed" / "bbbbbb"
    proc = _writer(run_dir)
    proc.communicate("", timeout=10)
    assert proc.returncode == 0
    assert sorted(p.name for p in run_dir.iterdir()) == ["a--eth0.pcap", MANIFEST]
    with writing(run_dir), pytest.raises(CaptureError, match="another run is writing"), \
            writing(run_dir):
        pass
    empty = tmp_path / "seed" / "cccccc"
    with writing(empty):
        assert [p.name for p in empty.iterdir()] == [".writing"]
    assert not empty.exists()  # a run stopped before its first capture leaves no folder


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
