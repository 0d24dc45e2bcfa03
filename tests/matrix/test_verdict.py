"""Verdicts from a real pytest run's JUnit XML, the summary files, and the guest's command."""

from __future__ import annotations

import json
from pathlib import Path

from lab.matrix.kernels import Group, host_kernel, load_list
from lab.matrix.run import GUEST_MODULES, guest_script, run_groups
from lab.matrix.verdict import Summary, read_junit, read_verdict, write_summary

TESTS = '''
import pytest

def test_ok():
    pass

def test_bad():
    assert 1 == 2, "one is not two"

def test_later():
    pytest.skip("needs kernel >= 9.9")
'''


def test_a_group_run_gives_counts_reasons_and_files(tmp_path: Path) -> None:
    src = tmp_path / "src" / "test_mix.py"
    src.parent.mkdir()
    src.write_text(TESTS)
    root = tmp_path / "run"
    # one pytest process (~2 s: the dsrlab plugin loads scapy)
    verdict = run_groups(host_kernel(), [Group(name="mix", paths=[str(src)])], root)
    (mix,) = verdict.groups
    assert (mix.outcome, mix.passed, mix.failed, mix.skipped) == ("fail", 1, 1, 1)
    assert any("test_bad" in r and "one is not two" in r for r in mix.reasons)
    assert any("skipped: needs kernel >= 9.9" in r for r in mix.reasons)
    assert mix.junit == "host/mix.junit.xml"
    assert verdict.outcome == "fail"
    assert (root / "host" / "mix.log").exists()
    assert read_verdict(root / "host" / "verdict.json") == verdict

    summary = Summary(run_id="r1", full=False, kernels=[verdict])
    write_summary(summary, root)
    data = json.loads((root / "summary.json").read_text())
    assert data["ok"] is False
    assert data["kernels"][0]["groups"][0]["failed"] == 1
    md = (root / "summary.md").read_text()
    assert "| host (" in md
    assert "| mix | fail | 1/1/1 |" in md
    assert "[host/mix.junit.xml](host/mix.junit.xml)" in md


def test_no_junit_is_a_failure(tmp_path: Path) -> None:
    g = read_junit(tmp_path / "absent.xml", "datapath", 1.0, tmp_path)
    assert g.outcome == "fail"
    assert "no JUnit XML" in g.reasons[0]


def test_the_guest_loads_modules_mounts_bpffs_and_writes_under_the_run(tmp_path: Path) -> None:
    matrix = load_list()
    kernel = host_kernel().model_copy(update={"name": "6.1"})
    script = guest_script(kernel, matrix.selected_groups(full=False), tmp_path)
    assert f"modprobe -a {' '.join(GUEST_MODULES)}" in script
    assert "mount -t bpf bpf /sys/fs/bpf" in script
    assert f"DSRLAB_CACHE_DIR={tmp_path / 'cache'}" in script
    assert "--groups datapath,scenarios" in script
