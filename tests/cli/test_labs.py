"""``dsrlab clean``, ``down`` and ``list`` on a shared machine: other people's labs.

None of these tests runs a bare ``clean`` (or ``--all``) that could remove
anything: a bare clean is asked with ``--dry-run``, ``--all`` only where it
is refused before it looks at anything, and everything made here is removed
by its own run id.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.plumbing import names, nsutil
from tests.cli.helpers import REPO, dsrlab
from tests.seed import SEED_TOPOLOGY_PATH

pytestmark = pytest.mark.netns


def _up() -> str:
    """``dsrlab up`` of the seed, no datapath (quick); returns the run id."""
    out = dsrlab("up", "--datapath", "none", str(SEED_TOPOLOGY_PATH))
    assert out.returncode == 0, out.stderr
    m = re.search(r"dsrlab down ([0-9a-f]{6})", out.stdout)
    assert m, out.stdout
    return m[1]


def _leftover() -> str:
    """What a killed run leaves: a namespace whose owner process is gone."""
    run_id = names.new_run_id()
    code = ("import sys; from lab.plumbing import nsutil; "
            "nsutil.create(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, names.netns_name(run_id, "x")], check=True,
                   cwd=REPO, timeout=30)
    return run_id


def _remove(*run_ids: str) -> None:
    runs = cleanup.find_runs(list(run_ids))
    for res in runs.values():
        cleanup.clean_run(res)


@pytest.fixture
def up_lab() -> Iterator[str]:
    run_id = _up()
    try:
        yield run_id
    finally:
        _remove(run_id)


def test_bare_clean_takes_a_dead_runs_leftovers_but_not_a_lab_left_up(up_lab: str) -> None:
    dead = _leftover()
    try:
        runs = cleanup.find_runs([dead, up_lab])
        assert runs[dead].dead
        assert runs[up_lab].left_up
        assert not runs[up_lab].dead
        out = dsrlab("clean", "--dry-run")
        assert out.returncode == 0, out.stderr
        assert re.search(rf"^run {dead}: 1 namespaces, 0 processes, leftover, "
                         rf"files: {dead}\.owner$", out.stdout, re.M), out.stdout
        assert f"run {up_lab}: up (dsrlab up), left alone (name it, or use --all)" \
            in out.stdout.splitlines()
        assert not re.search(rf"^run {up_lab}: \d+ namespaces", out.stdout, re.M)
        # --dry-run removed nothing
        assert set(cleanup.find_runs([dead, up_lab])) == {dead, up_lab}
        # named, each goes
        out = dsrlab("clean", dead)
        assert out.returncode == 0, out.stderr
        assert f"  removed namespace dsrlab-{dead}-x" in out.stdout.splitlines()
        assert dead not in cleanup.find_runs([dead])
        assert not nsutil.exists(names.netns_name(dead, "x"))
    finally:
        _remove(dead)


def test_clean_all_without_yes_and_no_terminal_refuses_and_removes_nothing(
        up_lab: str) -> None:
    out = subprocess.run([sys.executable, "-m", "lab.cli", "clean", "--all"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=60, check=False, cwd=REPO)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: --all ")
    assert "pass --yes" in out.stderr
    assert out.stdout == ""
    assert cleanup.find_runs([up_lab])[up_lab].left_up


def test_bare_down_with_several_labs_up_lists_them_and_takes_none(up_lab: str) -> None:
    other = _up()
    try:
        out = dsrlab("down")  # stdin: not a terminal, nobody to ask
        assert out.returncode == 1
        assert out.stderr.count("\n") == 1, out.stderr
        assert re.match(r"error: \d+ labs are up \(.*\): name one: dsrlab down RUN_ID$",
                        out.stderr), out.stderr
        for run_id in (up_lab, other):
            assert run_id in out.stderr
            assert re.search(rf"^{run_id} +\d+ +\d+ +up \(dsrlab up\)$", out.stdout, re.M)
        assert set(cleanup.find_runs([up_lab, other])) == {up_lab, other}
        assert all(r.left_up for r in cleanup.find_runs([up_lab, other]).values())
    finally:
        _remove(other)


@pytest.mark.parametrize("args", [
    ["down", "--", "--all"], ["down", "--", "-abcde"], ["clean", "--", "--all"],
    ["clean", "--dry-run", "--", "--yes"], ["down", "ABCDEF"], ["clean", "abc"],
    ["down", "../../x"], ["clean", "abcdef", "1234567"],
])
def test_run_ids_are_validated_and_a_dash_is_never_an_id(args: list[str]) -> None:
    out = dsrlab(*args)
    assert out.returncode == 1, out
    bad = next(a for a in reversed(args) if not re.fullmatch(r"[0-9a-f]{6}", a))
    assert out.stderr == f"error: run id {bad!r} is not 6 lowercase hex digits\n"
    assert out.stdout == ""


def test_the_help_says_how_to_pass_an_id_that_looks_like_a_flag() -> None:
    for cmd in ("down", "clean"):
        out = dsrlab(cmd, "--help")
        assert out.returncode == 0
        assert f"dsrlab {cmd} -- ID" in out.stdout, out.stdout


def _owner_only(state_dir: Path, run_id: str) -> list[Path]:
    """What a run killed before its first namespace leaves: its owner file (a dead
    PID), and a half-written state file's temporary forms."""
    files = [state_dir / f"{run_id}.owner", state_dir / f"{run_id}.tmp",
             state_dir / f".{run_id}.json.tmp"]
    state_dir.mkdir(parents=True, exist_ok=True)
    files[0].write_text("999999999 12345\n")
    files[1].write_text("{")
    files[2].write_text("")
    return files


@pytest.mark.parametrize("command", ["down", "clean"])
def test_a_run_killed_before_its_first_namespace_is_listed_and_removed(command: str) -> None:
    run_id = names.new_run_id()
    files = _owner_only(cleanup.STATE_DIR, run_id)
    try:
        listed = dsrlab("list")
        assert re.search(rf"^{run_id} +0 +0 +leftover$", listed.stdout, re.M), listed.stdout
        dry = dsrlab("clean", "--dry-run", run_id)
        assert dry.returncode == 0, dry.stderr
        assert (f"run {run_id}: 0 namespaces, 0 processes, leftover, files: "
                f"{', '.join(sorted(f.name for f in files))}") in dry.stdout.splitlines()
        assert all(f.exists() for f in files)
        out = dsrlab(command, run_id)
        assert out.returncode == 0, out.stderr
        for f in files:
            assert f"  removed {f}" in out.stdout.splitlines(), out.stdout
            assert not f.exists()
        assert run_id not in cleanup.find_runs([run_id])
        assert dsrlab(command, run_id).returncode == 1  # and now there is nothing
    finally:
        for f in files:
            f.unlink(missing_ok=True)


def test_the_state_directory_is_configurable(tmp_path: Path) -> None:
    run_id = names.new_run_id()
    (tmp_path / f"{run_id}.json").write_text(json.dumps({"run_id": run_id}))
    (tmp_path / "notes.txt").write_text("not the lab's")
    listed = dsrlab("list", env={"DSRLAB_STATE_DIR": str(tmp_path)})
    assert re.search(rf"^{run_id} +0 +0 +up \(dsrlab up\)$", listed.stdout, re.M), listed
    out = dsrlab("down", run_id, env={"DSRLAB_STATE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert f"  removed {tmp_path / f'{run_id}.json'}" in out.stdout.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert run_id not in dsrlab("list").stdout  # the real directory never held it


def test_unfinished_capture_sets_are_listed_and_removed_on_request(tmp_path: Path) -> None:
    """A run killed mid-capture leaves a manifest and pcaps but no results.json."""
    finished, half = names.new_run_id(), names.new_run_id()
    for run_id, files in ((finished, ["manifest.json", "results.json", "c--eth0.pcap"]),
                          (half, ["manifest.json", "c--eth0.pcap"])):
        d = tmp_path / "seed" / run_id
        d.mkdir(parents=True)
        for name in files:
            (d / name).write_text("x")
    (tmp_path / "seed" / "latest").symlink_to(half)
    listed = dsrlab("clean", "--dry-run", "--captures", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert f"unfinished capture set {tmp_path / 'seed' / half} (no results.json)" in lines
    assert finished not in listed.stdout
    assert (tmp_path / "seed" / half).is_dir()
    out = dsrlab("clean", half, "--captures", str(tmp_path), "--incomplete")
    assert out.returncode == 0, out.stderr
    assert f"  removed capture set {tmp_path / 'seed' / half} (2 files)" in out.stdout
    assert not (tmp_path / "seed" / half).exists()
    assert (tmp_path / "seed" / finished / "results.json").is_file()
    assert os.readlink(tmp_path / "seed" / "latest") == finished
