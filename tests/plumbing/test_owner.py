"""Run ownership: ``<state dir>/<run id>.owner``, and every file named by a run id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab.plumbing import names, owner
from tests.cli.helpers import REPO


def test_a_claim_names_this_process_until_released() -> None:
    run_id = names.new_run_id()
    try:
        owner.claim(run_id)
        assert owner.alive_owner(run_id) == os.getpid()
        owner.claim(run_id)  # the first claim wins, a second changes nothing
        assert owner.run_files()[run_id] == [owner.OWNER_DIR / f"{run_id}.owner"]
        owner.release(run_id)
        assert owner.alive_owner(run_id) is None
        assert run_id not in owner.run_files()  # no temporary file left either
    finally:
        owner.forget(run_id)


def test_a_dead_owner_does_not_hold_the_run() -> None:
    run_id = names.new_run_id()
    code = "import sys; from lab.plumbing import owner; owner.claim(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, run_id], check=True, cwd=REPO, timeout=30)
    try:
        assert (owner.OWNER_DIR / f"{run_id}.owner").is_file()
        assert owner.alive_owner(run_id) is None
    finally:
        owner.forget(run_id)


def test_every_file_named_by_a_run_id_is_found_and_nothing_else(tmp_path: Path) -> None:
    a, b = names.new_run_id(), names.new_run_id()
    lab_files = {a: [f"{a}.owner", f"{a}.json", f"{a}.tmp", f".{a}.json.tmp"],
                 b: [f"{b}", f".{b}.owner.123.tmp"]}
    for files in lab_files.values():
        for name in files:
            (tmp_path / name).write_text("x")
    for other in ("notes.txt", "ABCDEF.json", "abcdefg.json", "xabcdef.owner"):
        (tmp_path / other).write_text("x")
    (tmp_path / f"{names.new_run_id()}.d").mkdir()  # a directory is not the lab's
    code = ("from lab.plumbing import owner; "
            "print(owner.OWNER_DIR); "
            "[print(k, *sorted(p.name for p in v)) for k, v in sorted(owner.run_files().items())]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO, timeout=30,
                         env={**os.environ, "DSRLAB_STATE_DIR": str(tmp_path)})
    lines = out.stdout.splitlines()
    assert lines[0] == str(tmp_path)
    assert lines[1:] == [f"{k} {' '.join(sorted(v))}" for k, v in sorted(lab_files.items())]
