"""The pytest plugin as users meet it: scenario items, their failure output,
markers, where their capture sets go, and the refusal to pass when no
scenario was collected."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.plugin.captures_guard import describe_change, snapshot
from tests.seed import (
    POD2_NODE,
    POD_IPS,
    POD_NODE,
    SEED_SCENARIO_PATH,
    SEED_TOPOLOGY_PATH,
    SEED_TRACE_PATH,
    VIP,
)


def _scenarios(pytester: pytest.Pytester, *, break_trace: bool) -> Path:
    scen = pytester.path / "scenarios"
    scen.mkdir()
    data = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    data["topology"] = str(SEED_TOPOLOGY_PATH)
    (scen / "seed.yaml").write_text(yaml.safe_dump(data))
    trace = yaml.safe_load(SEED_TRACE_PATH.read_text())
    if break_trace:  # expect the SYN+ACK to leave the backend node from the pod's address
        exp = trace["claims"][2]["expect"][1]
        exp["src"], exp["sport"] = "$backend.ip", "$backend.port"
    (scen / "seed.trace.yaml").write_text(yaml.safe_dump(trace, sort_keys=False))
    return scen


def _run_dirs(root: Path) -> list[Path]:
    """The capture sets (run folders with a manifest) under ``root``."""
    return sorted(m.parent for m in root.glob("**/seed/*/manifest.json")
                  if not m.parent.is_symlink())  # not latest/


@pytest.mark.netns
@pytest.mark.bpf
def test_a_scenario_is_an_item_and_a_broken_expectation_shows_its_diff(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    scen = _scenarios(pytester, break_trace=True)
    repo_before = snapshot()
    result = pytester.runpytest_subprocess(str(scen), "-p", "no:cacheprovider",
                                           f"--dsrlab-captures={tmp_path}", "-rA")
    result.assert_outcomes(failed=1)
    # --dsrlab-captures DIR: the run and its latest link are there, nowhere else
    [run_dir] = _run_dirs(tmp_path)
    assert run_dir.parent == tmp_path / "seed"
    assert (tmp_path / "seed" / "latest").resolve() == run_dir.resolve()
    assert _run_dirs(pytester.path) == []
    assert describe_change(repo_before, snapshot()) == []
    out = result.stdout.str()
    pods = "|".join(re.escape(ip) for ip in POD_IPS)
    assert f"captures: {run_dir}" in out
    assert "scenario seed, run " in out
    assert "FAIL  backend-node:" in out
    assert any(f"backend-node/syn-ack-out at {node}/eth0" in out
               for node in (POD_NODE, POD2_NODE))
    assert "no packet matched" in out
    result.stdout.re_match_lines(
        [rf".*✗ \[IP\]\.src\s+expected ({pods})\s+got {re.escape(VIP)}"])
    assert "PASS  lb-node:" in out


@pytest.mark.netns
@pytest.mark.bpf
def test_markers_select_scenarios_and_captures_stay_in_pytests_temp(
        pytester: pytest.Pytester) -> None:
    """Without --dsrlab-captures a scenario run writes under the session's basetemp:
    the repository's captures/ and its latest link are left exactly as they were."""
    scen = _scenarios(pytester, break_trace=False)
    repo_before = snapshot()
    chosen = pytester.runpytest_subprocess(str(scen), "-m", "dsr and netns", "-rA")
    chosen.assert_outcomes(passed=1)
    assert describe_change(repo_before, snapshot()) == []
    # pytester gives the inner session --basetemp=<pytester.path>/runpytest-N
    [run_dir] = _run_dirs(pytester.path)
    basetemp = next(p for p in run_dir.parents if p.name.startswith("runpytest-"))
    assert run_dir.parent == basetemp / "dsrlab-captures" / "seed"
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()
    assert (run_dir / "results.json").is_file()
    none = pytester.runpytest_subprocess(str(scen), "-m", "snat")
    none.assert_outcomes(deselected=1)


def test_the_captures_option_says_where_captures_go(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    text = " ".join(result.stdout.str().split())
    assert "--dsrlab-captures=DIR" in text
    assert "default: a dsrlab-captures folder under pytest's temporary directory" in text
    assert "never the repo's captures/" in text


def test_collecting_zero_scenarios_is_an_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "scenarios").mkdir()
    result = pytester.runpytest_subprocess(str(pytester.path / "scenarios"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*collected zero scenarios from scenarios/*"])


def test_a_scenario_without_a_valid_trace_is_a_collection_error(
        pytester: pytest.Pytester) -> None:
    scen = pytester.path / "scenarios"
    scen.mkdir()
    data = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    data["topology"] = str(SEED_TOPOLOGY_PATH)
    (scen / "seed.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(SEED_TRACE_PATH, scen / "seed.trace.yaml")
    (scen / "seed.trace.yaml").write_text(
        (scen / "seed.trace.yaml").read_text().replace("flags: SA", "flagz: SA", 1))
    result = pytester.runpytest_subprocess(str(scen))
    result.stdout.fnmatch_lines(["*seed.trace.yaml: claims[[]0[]].expect[[]1[]].flagz: "
                                 "unknown field*"])
    assert result.ret != 0


def test_bpf_items_and_scenarios_are_skipped_with_the_datapaths_reason_on_an_old_kernel(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ubuntu 20.04's own kernel, 5.4: every item that loads the datapath says why
    it did not run; the others run."""
    scen = _scenarios(pytester, break_trace=False)
    pytester.makepyfile(test_some="""
        import pytest

        @pytest.mark.bpf
        def test_loads_the_datapath():
            raise AssertionError("must not run")

        def test_plain():
            pass
    """)
    monkeypatch.setattr("platform.release", lambda: "5.4.0-150-generic")
    result = pytester.runpytest_inprocess(str(scen), "test_some.py", "-rs",
                                          "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
    reason = ("the lab's datapath needs kernel >= 5.10 (bpf_redirect_neigh() came in 5.10); "
              "this kernel is 5.4.0-150-generic")
    text = result.stdout.str()
    assert text.count(reason) == 2, text


def test_the_verifier_report_option_writes_what_the_kernel_said(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    out = pytester.path / "k" / "verifier.json"
    result = pytester.runpytest_subprocess("test_one.py", f"--dsrlab-verifier-report={out}")
    assert result.ret == 0
    report = json.loads(out.read_text())
    if os.geteuid() != 0:
        assert report["outcome"] == "skip"
        assert report["reason"] == "needs root (BPF)"
        return
    assert report["outcome"] == "pass"
    assert report["kernel"] == platform.release()
    assert [p["program"] for p in report["programs"]] == ["dsr_from_netdev", "dsr_to_netdev"]
    assert all(p["verified_insns"] > 0 for p in report["programs"])


@pytest.mark.netns
@pytest.mark.bpf
def test_a_topologys_datapath_is_taken_unless_the_option_says_otherwise(
        pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario whose topology says ``datapath: cilium``: with no Cilium source it is
    skipped with the reason; ``--dsrlab-datapath lab`` runs it on the lab's datapath."""
    monkeypatch.delenv("DSRLAB_CILIUM_SRC", raising=False)
    scen = _scenarios(pytester, break_trace=False)
    (pytester.path / "topologies").mkdir()
    topo = pytester.path / "topologies" / "on-cilium.yaml"
    topo.write_text(yaml.safe_dump({**yaml.safe_load(SEED_TOPOLOGY_PATH.read_text()),
                                    "datapath": "cilium"}))
    data = yaml.safe_load((scen / "seed.yaml").read_text())
    (scen / "seed.yaml").write_text(yaml.safe_dump({**data, "topology": str(topo)}))
    skipped = pytester.runpytest_subprocess(str(scen), "-p", "no:cacheprovider", "-rs",
                                            f"--dsrlab-captures={tmp_path}")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines([f"*{topo}: datapath: cilium needs a Cilium source*"])
    assert _run_dirs(tmp_path) == []
    on_lab = pytester.runpytest_subprocess(str(scen), "-p", "no:cacheprovider",
                                           f"--dsrlab-captures={tmp_path}",
                                           "--dsrlab-datapath", "lab")
    on_lab.assert_outcomes(passed=1)
    [run_dir] = _run_dirs(tmp_path)
    assert json.loads((run_dir / "manifest.json").read_text())["datapath"]["name"] == "lab"
