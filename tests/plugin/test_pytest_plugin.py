"""The pytest plugin as users meet it: scenario items, their failure output,
markers and the refusal to pass when no scenario was collected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _scenarios(pytester: pytest.Pytester, *, break_trace: bool) -> Path:
    scen = pytester.path / "scenarios"
    scen.mkdir()
    data = yaml.safe_load((REPO / "scenarios" / "seed.yaml").read_text())
    data["topology"] = str(REPO / "topologies" / "seed.yaml")
    (scen / "seed.yaml").write_text(yaml.safe_dump(data))
    trace = yaml.safe_load((REPO / "scenarios" / "seed.trace.yaml").read_text())
    if break_trace:  # expect the SYN+ACK to leave the backend node from the pod's address
        exp = trace["claims"][2]["expect"][1]
        exp["src"], exp["sport"] = "$backend.ip", "$backend.port"
    (scen / "seed.trace.yaml").write_text(yaml.safe_dump(trace, sort_keys=False))
    return scen


@pytest.mark.netns
@pytest.mark.bpf
def test_a_scenario_is_an_item_and_a_broken_expectation_shows_its_diff(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    scen = _scenarios(pytester, break_trace=True)
    result = pytester.runpytest_subprocess(str(scen), "-p", "no:cacheprovider",
                                           f"--dsrlab-captures={tmp_path}", "-rA")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "scenario seed, run " in out
    assert "FAIL  backend-node:" in out
    assert "backend-node/syn-ack-out at cilium-dsr-worker" in out
    assert "no packet matched" in out
    result.stdout.re_match_lines(
        [r".*✗ \[IP\]\.src\s+expected 10\.\d+\.\d+\.\d+\s+got 172\.18\.0\.2"])
    assert "PASS  lb-node:" in out


@pytest.mark.netns
@pytest.mark.bpf
def test_markers_select_scenarios(pytester: pytest.Pytester, tmp_path: Path) -> None:
    scen = _scenarios(pytester, break_trace=False)
    chosen = pytester.runpytest_subprocess(str(scen), "-m", "dsr and netns",
                                           f"--dsrlab-captures={tmp_path}")
    chosen.assert_outcomes(passed=1)
    none = pytester.runpytest_subprocess(str(scen), "-m", "snat")
    none.assert_outcomes(deselected=1)


def test_collecting_zero_scenarios_is_an_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "scenarios").mkdir()
    result = pytester.runpytest_subprocess(str(pytester.path / "scenarios"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*collected zero scenarios from scenarios/*"])


def test_a_scenario_without_a_valid_trace_is_a_collection_error(
        pytester: pytest.Pytester) -> None:
    scen = pytester.path / "scenarios"
    scen.mkdir()
    data = yaml.safe_load((REPO / "scenarios" / "seed.yaml").read_text())
    data["topology"] = str(REPO / "topologies" / "seed.yaml")
    (scen / "seed.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(REPO / "scenarios" / "seed.trace.yaml", scen / "seed.trace.yaml")
    (scen / "seed.trace.yaml").write_text(
        (scen / "seed.trace.yaml").read_text().replace("flags: SA", "flagz: SA", 1))
    result = pytester.runpytest_subprocess(str(scen))
    result.stdout.fnmatch_lines(["*seed.trace.yaml: claims[[]0[]].expect[[]1[]].flagz: "
                                 "unknown field*"])
    assert result.ret != 0
