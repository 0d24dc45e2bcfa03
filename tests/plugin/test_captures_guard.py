"""The session guard on the repository's captures/ sees every kind of change."""

from __future__ import annotations

import os
from pathlib import Path

from tests.plugin.captures_guard import describe_change, snapshot


def _runs(root: Path) -> Path:
    for run in ("aaaaaa", "bbbbbb"):
        (root / "seed" / run).mkdir(parents=True)
        (root / "seed" / run / "manifest.json").write_text("{}")
    (root / "seed" / "latest").symlink_to("aaaaaa")
    return root


def test_no_change_is_no_change(tmp_path: Path) -> None:
    root = _runs(tmp_path / "captures")
    assert describe_change(snapshot(root), snapshot(root), root) == []


def test_a_missing_folder_must_stay_missing(tmp_path: Path) -> None:
    root = tmp_path / "captures"
    before = snapshot(root)
    assert before is None
    assert describe_change(before, snapshot(root), root) == []
    root.mkdir()
    assert describe_change(before, snapshot(root), root) == [f"{root} was created"]


def test_a_new_run_is_seen(tmp_path: Path) -> None:
    root = _runs(tmp_path / "captures")
    before = snapshot(root)
    (root / "seed" / "cccccc").mkdir()
    (root / "seed" / "cccccc" / "manifest.json").write_text("{}")
    changes = describe_change(before, snapshot(root), root)
    assert f"added {root / 'seed' / 'cccccc'}" in changes
    assert f"added {root / 'seed' / 'cccccc' / 'manifest.json'}" in changes


def test_latest_moved_is_seen(tmp_path: Path) -> None:
    root = _runs(tmp_path / "captures")
    before = snapshot(root)
    tmp = root / "seed" / ".latest-new"
    tmp.symlink_to("bbbbbb")
    os.replace(tmp, root / "seed" / "latest")
    changes = describe_change(before, snapshot(root), root)
    assert any(c.startswith(f"changed {root / 'seed' / 'latest'}:") and "bbbbbb" in c
               for c in changes), changes


def test_a_run_made_and_removed_again_is_seen(tmp_path: Path) -> None:
    root = _runs(tmp_path / "captures")
    before = snapshot(root)
    seed = root / "seed"
    mtime = seed.stat().st_mtime_ns
    (seed / "dddddd").mkdir()
    (seed / "dddddd").rmdir()
    # the folder's mtime moves (set here too: the kernel's clock tick may not have)
    os.utime(seed, ns=(mtime, mtime + 1_000_000))
    changes = describe_change(before, snapshot(root), root)
    assert len(changes) == 1
    assert changes[0].startswith(f"changed {seed}: ('dir', 0, '{mtime}') -> ")


def test_a_rewritten_file_is_seen(tmp_path: Path) -> None:
    root = _runs(tmp_path / "captures")
    before = snapshot(root)
    (root / "seed" / "aaaaaa" / "manifest.json").write_text('{"run_id": "x"}')
    changes = describe_change(before, snapshot(root), root)
    assert [c.split(":")[0] for c in changes] == [
        f"changed {root / 'seed' / 'aaaaaa' / 'manifest.json'}"]
