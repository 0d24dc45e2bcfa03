"""Verdicts from a real pytest run's JUnit XML and verifier report, the summary files,
and the guest's command."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from pathlib import Path

import pytest

from lab.datapath.verifier import VerifierReport
from lab.matrix.kernels import Group, host_kernel, load_list
from lab.matrix.run import (
    CILIUM_SRC_VAR,
    GUEST_MODULES,
    GUEST_OPTIONAL_MODULES,
    GUEST_UP,
    MODULE_MISSING,
    PLUGINS_OFF,
    PYTEST_DONE,
    guest_script,
    pytest_command,
    run_groups,
)
from lab.matrix.verdict import (
    VERIFIER_GROUP,
    Summary,
    group_of,
    read_junit,
    read_verdict,
    verifier_group,
    write_summary,
)

MIXED = '''
import pytest

def test_ok():
    pass

def test_bad():
    assert 1 == 2, "one is not two"

def test_later():
    pytest.skip("needs kernel >= 9.9")
'''


def test_one_run_is_split_into_groups_with_counts_reasons_and_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CILIUM_SRC_VAR, raising=False)  # Cilium's row: a skip, no build
    src = tmp_path / "src"
    (src / "unit").mkdir(parents=True)
    (src / "unit" / "test_mix.py").write_text(MIXED)
    (src / "test_fine.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    root = tmp_path / "run"
    groups = [Group(name="mix", paths=["unit/test_mix.py"]),
              Group(name="fine", paths=["test_fine.py"])]
    # one pytest process (~2 s: the dsrlab plugin loads scapy)
    verdict = run_groups(host_kernel(), groups, root, cwd=src)
    rows = {g.group: g for g in verdict.groups}
    assert list(rows) == [VERIFIER_GROUP, "cilium-verifier", "mix", "fine"]
    assert rows["cilium-verifier"].outcome == "skip"
    mix, fine = rows["mix"], rows["fine"]
    assert (mix.outcome, mix.passed, mix.failed, mix.skipped) == ("fail", 1, 1, 1)
    assert any("test_bad" in r and "one is not two" in r for r in mix.reasons)
    assert any("skipped: needs kernel >= 9.9" in r for r in mix.reasons)
    assert (fine.outcome, fine.passed, fine.failed, fine.skipped) == ("pass", 2, 0, 0)
    assert mix.junit == fine.junit == "host/junit.xml"
    assert verdict.log == "host/pytest.log"
    assert verdict.outcome == "fail"
    assert read_verdict(root / "host" / "verdict.json") == verdict
    if os.geteuid() == 0:  # the verifier's row: this kernel's counts
        assert verdict.verifier is not None
        assert rows[VERIFIER_GROUP].outcome == "pass"
        assert {p.program for p in verdict.verifier.programs} == {"dsr_from_netdev",
                                                                  "dsr_to_netdev"}

    summary = Summary(run_id="r1", full=False, kernels=[verdict])
    write_summary(summary, root)
    data = json.loads((root / "summary.json").read_text())
    assert data["ok"] is False
    assert data["kernels"][0]["groups"][2]["failed"] == 1
    md = (root / "summary.md").read_text()
    assert "| host (" in md
    assert "| mix | fail | 1/1/1 |" in md
    assert "[host/junit.xml](host/junit.xml)" in md


def test_group_of_maps_junit_classnames_to_the_groups_paths() -> None:
    groups = [Group(name="datapath", paths=["tests/datapath/test_loading.py"]),
              Group(name="scenarios", paths=["scenarios"]),
              Group(name="one", paths=["tests/x/test_y.py::test_z"])]
    assert group_of("tests.datapath.test_loading", groups) == "datapath"
    assert group_of("tests.datapath.test_loading.TestClass", groups) == "datapath"
    assert group_of("scenarios.seed.yaml", groups) == "scenarios"
    assert group_of("tests.x.test_y", groups) == "one"
    assert group_of("tests.datapath.test_loading_more", groups) is None
    assert group_of("scenariosx.a", groups) is None


def test_no_junit_fails_every_group(tmp_path: Path) -> None:
    groups = [Group(name="datapath", paths=["a.py"]), Group(name="scenarios", paths=["b"])]
    rows = read_junit(tmp_path / "absent.xml", groups, tmp_path)
    assert [(g.group, g.outcome) for g in rows] == [("datapath", "fail"), ("scenarios", "fail")]
    assert all("no JUnit XML" in g.reasons[0] for g in rows)


def test_a_verifier_rejection_is_a_failed_row_with_the_count_and_log_tail() -> None:
    report = VerifierReport(kernel="6.1.0-57-amd64", outcome="fail",
                            reason="loading dsr.o failed: EACCES: Permission denied",
                            failed_program="dsr_to_netdev", processed_insns=6,
                            log_tail=["R3 offset is outside of the packet",
                                      "processed 6 insns (limit 1000000)"])
    row = verifier_group(report)
    assert (row.group, row.outcome, row.failed) == (VERIFIER_GROUP, "fail", 1)
    assert row.reasons[:2] == ["loading dsr.o failed: EACCES: Permission denied",
                               "dsr_to_netdev: rejected after 6 insns processed"]
    assert row.reasons[-1] == "processed 6 insns (limit 1000000)"
    skipped = verifier_group(VerifierReport(kernel="5.4.0", outcome="skip",
                                            reason="the lab's datapath needs kernel >= 5.10"))
    assert (skipped.outcome, skipped.reasons) == ("skip",
                                                  ["the lab's datapath needs kernel >= 5.10"])


def test_the_guest_loads_modules_mounts_bpffs_and_runs_one_lean_pytest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CILIUM_SRC_VAR, raising=False)
    matrix = load_list()
    kernel = host_kernel().model_copy(update={"name": "6.1"})
    groups = matrix.selected_groups(full=False)
    script = guest_script(kernel, groups, tmp_path)
    assert f"modprobe -a {' '.join(GUEST_MODULES)}" in script
    assert "mount -t bpf bpf /sys/fs/bpf" in script
    assert f"DSRLAB_CACHE_DIR={tmp_path / '6.1' / 'cache'}" in script  # the kernel's own
    assert CILIUM_SRC_VAR not in script  # the test process has none (monkeypatched below)
    kdir = tmp_path / "6.1"
    cmd = pytest_command(groups, kdir)
    assert f"{shlex.join(cmd)} > {kdir / 'pytest.log'} 2>&1" in script
    assert script.startswith(f"echo '{GUEST_UP}' $(uname -r); ")  # boot ends at the first
    assert script.endswith(f"echo '{PYTEST_DONE}' $rc")
    for plugin in PLUGINS_OFF:
        assert cmd[cmd.index(f"no:{plugin}") - 1] == "-p"
    assert cmd[cmd.index("lab.pytest_phases") - 1] == "-p"
    assert f"--dsrlab-phases={kdir / 'phases.guest'}" in cmd
    assert [p for g in groups for p in g.paths] == [a for a in cmd if not a.startswith("-")
                                                    and a not in cmd[:3]
                                                    and not a.startswith("no:")
                                                    and a != "lab.pytest_phases"]
    assert f"--dsrlab-verifier-report={kdir / 'verifier.json'}" in cmd


def test_summary_page_and_markdown_show_every_cell_and_the_verifier_counts(
        tmp_path: Path) -> None:
    """A summary of a passing host, a kernel whose verifier rejected the datapath and one
    that did not boot; the HTML escapes what the tools said."""
    from lab.datapath.verifier import ProgramLoad  # noqa: PLC0415
    from lab.matrix.verdict import GroupVerdict, KernelVerdict  # noqa: PLC0415

    host = host_kernel()
    ok = KernelVerdict(kernel=host, mode="direct", seconds=8.0, verifier=VerifierReport(
        kernel=host.release, outcome="pass", programs=[
            ProgramLoad(program="dsr_from_netdev", verified_insns=2848, xlated_insns=1145),
            ProgramLoad(program="dsr_to_netdev", verified_insns=328, xlated_insns=256)]),
        groups=[GroupVerdict(group="scenarios", outcome="pass", passed=1, seconds=2.5,
                             reports=["host/captures/seed/a1/report.html"])])
    bad_report = VerifierReport(kernel="6.1.0-57-amd64", outcome="fail",
                                reason="loading <dsr.o> failed", failed_program="dsr_to_netdev",
                                processed_insns=6)
    k61 = host.model_copy(update={"name": "6.1", "release": "6.1.0-57-amd64"})
    bad = KernelVerdict(kernel=k61, mode="vm", accel="tcg", boot_seconds=14.0, seconds=99.0,
                        verifier=bad_report, groups=[verifier_group(bad_report)])
    k612 = host.model_copy(update={"name": "6.12", "release": "6.12.117+deb12-amd64"})
    dead = KernelVerdict(kernel=k612, mode="vm", seconds=3.0, groups=[],
                         error="the VM did not boot to the command")
    summary = Summary(run_id="r2", full=False, kernels=[ok, bad, dead])
    write_summary(summary, tmp_path)
    page = (tmp_path / "summary.html").read_text()
    assert 'data-ok="false"' in page
    assert '<a href="host/captures/seed/a1/report.html">' in page
    assert "loading &lt;dsr.o&gt; failed (dsr_to_netdev after 6 insns processed)" in page
    assert "<dsr.o>" not in page
    assert "the VM did not boot to the command" in page
    assert "<td>dsr_from_netdev</td><td class=\"num\">2848</td><td class=\"num\">-</td>" in page
    md = (tmp_path / "summary.md").read_text()
    assert "| dsr_from_netdev | 2848 | - |" in md
    assert ("| 6.1 (6.1.0-57-amd64) | verifier | fail | 0/1/0 | 0.0 | loading <dsr.o> failed "
            "(dsr_to_netdev after 6 insns processed) |") in md
    assert ("| host (" + host.release + ") | verifier |") not in md  # no row without a report


def test_kvm_that_hung_once_is_not_tried_again_on_this_host_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.matrix import run  # noqa: PLC0415

    monkeypatch.setenv("DSRLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("DSRLAB_MATRIX_ACCEL", raising=False)
    monkeypatch.setattr(run.os, "access", lambda _p, _m: True)  # as if /dev/kvm opened
    said: list[str] = []
    assert run.kvm_usable(said.append)
    run._remember_kvm_hangs()
    memo = tmp_path / run.KVM_MEMO
    assert memo.read_text().startswith(platform.release() + "\n")
    assert not run.kvm_usable(said.append)
    assert said == [f"KVM did not boot a kernel on this host before ({memo}): TCG "
                    "(DSRLAB_MATRIX_ACCEL=kvm tries it again)"]
    monkeypatch.setenv("DSRLAB_MATRIX_ACCEL", "kvm")
    assert run.kvm_usable()
    monkeypatch.delenv("DSRLAB_MATRIX_ACCEL")
    memo.write_text("5.15.0-other\n")  # another host kernel: try again
    assert run.kvm_usable()
    monkeypatch.setattr(run.os, "access", lambda _p, _m: False)
    assert not run.kvm_usable()


def test_the_guest_loads_geneve_if_it_has_it_and_gets_the_cilium_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Geneve (Cilium's tunnel device) is loaded on its own: a kernel without it says
    so in the VM log and boots on; the guest has none of the host's environment, so
    the Cilium source is exported in the script."""
    assert "geneve" in GUEST_OPTIONAL_MODULES
    monkeypatch.setenv(CILIUM_SRC_VAR, "/src/cilium tarballs")
    kernel = host_kernel().model_copy(update={"name": "6.1"})
    script = guest_script(kernel, load_list().selected_groups(full=True), tmp_path)
    steps = script.split("; ")
    assert f"modprobe -q geneve || echo '{MODULE_MISSING} geneve'" in steps
    assert steps.index(f"modprobe -a {' '.join(GUEST_MODULES)}") < steps.index(
        f"modprobe -q geneve || echo '{MODULE_MISSING} geneve'")
    assert f"export {CILIUM_SRC_VAR}='/src/cilium tarballs'" in steps
    # a shell runs the optional modprobe past a missing module and says so
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "modprobe").write_text("#!/bin/sh\nexit 1\n")
    (fake / "modprobe").chmod(0o755)
    step = f"modprobe -q geneve || echo '{MODULE_MISSING} geneve'; echo next"
    out = subprocess.run(["sh", "-c", step], capture_output=True, text=True, check=True,
                         env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}).stdout
    assert out.split("\n")[:2] == [f"{MODULE_MISSING} geneve", "next"]
