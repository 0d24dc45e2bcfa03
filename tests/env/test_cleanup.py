"""Cleanup by run tag: what a run killed at any point left is found and removed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab.env import cleanup
from lab.plumbing import names, nsutil, owner
from tests.cli.helpers import REPO


def test_a_run_with_files_only_is_found_and_every_file_removed() -> None:
    """Killed before its first namespace: only files under the state directory."""
    run_id = names.new_run_id()
    files = [cleanup.STATE_DIR / n for n in
             (f"{run_id}.owner", f"{run_id}.tmp", f".{run_id}.json.tmp")]
    cleanup.STATE_DIR.mkdir(parents=True, exist_ok=True)
    for f in files:
        f.write_text("1 2\n")
    try:
        res = cleanup.find_runs()[run_id]
        assert sorted(res.files) == sorted(files)
        assert (res.namespaces, res.pids, res.state_file, res.owner_pid) == ([], [], None, None)
        assert res.dead
        assert not res.empty
        done = cleanup.clean_run(res)
        assert done == [f"removed {f}" for f in sorted(files)]
        assert not any(f.exists() for f in files)
        assert run_id not in cleanup.find_runs()
        with pytest.raises(LookupError):
            cleanup.tear_down(run_id)
    finally:
        for f in files:
            f.unlink(missing_ok=True)


@pytest.mark.netns
def test_live_owned_left_up_and_dead_runs_are_told_apart() -> None:
    live, kept, dead = (names.new_run_id() for _ in range(3))
    code = "import sys; from lab.plumbing import nsutil; nsutil.create(sys.argv[1])"
    nsutil.create(names.netns_name(live, "x"))  # held by this process
    subprocess.run([sys.executable, "-c", code, names.netns_name(dead, "x")], check=True,
                   cwd=REPO, timeout=30)  # its owner exited
    nsutil.create(names.netns_name(kept, "x"))
    owner.release(kept)
    cleanup.state_path(kept).write_text("{}")  # as detach() leaves a lab
    try:
        runs = cleanup.find_runs([live, kept, dead])
        assert (runs[live].dead, runs[live].left_up, runs[live].owner_pid is not None) \
            == (False, False, True)
        assert (runs[kept].dead, runs[kept].left_up) == (False, True)
        assert runs[kept].state_file == cleanup.state_path(kept)
        assert (runs[dead].dead, runs[dead].left_up) == (True, False)
        assert runs[dead].files == [cleanup.STATE_DIR / f"{dead}.owner"]
    finally:
        for res in cleanup.find_runs([live, kept, dead]).values():
            cleanup.clean_run(res)
    assert not cleanup.find_runs([live, kept, dead])
