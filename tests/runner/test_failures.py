"""The ways DSR breaks, reproduced on purpose (scenarios/failures/): each run's trace
proves the failure (or the fix), its diagnosis names the cause in one sentence, and
``dsrlab review`` on the capture directory says the same."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.model.scenario import SCENARIO_DIR, all_scenarios
from lab.runner.scenario import run_scenario
from tests.cli.helpers import dsrlab
from tests.seed import CLIENT_IP, LB_NAME, NODE_PORT, VIP

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

FAILURES = SCENARIO_DIR / "failures"
SVC = re.escape(f"{VIP}:{NODE_PORT}")
NODE = r"(cilium-dsr-worker2?)"
POD = r"(10\.0\.\d+\.\d+):80"
# scenario -> the diagnosis its capture set must give (None: it works, no diagnosis)
EXPECTED: dict[str, str | None] = {
    "fabric-strips-option":
        rf"backend node {NODE} replied from {POD} instead of {SVC}: the DSR option did not "
        rf"reach it \(stripped between {LB_NAME} and \1\)",
    # the same with a client that has routes to the pods: it resets the stray SYN+ACK
    "fabric-strips-option-client-resets":
        rf"backend node {NODE} replied from {POD} instead of {SVC}: the DSR option did not "
        rf"reach it \(stripped between {LB_NAME} and \1\)",
    "source-dest-check":
        rf"the DNATed SYN left {LB_NAME} for {POD} with the client's source "
        rf"{re.escape(CLIENT_IP)} and never reached {NODE}: the fabric between them dropped "
        rf"it \(a source/destination check, as AWS's, drops frames whose source is not the "
        rf"sending node's\)",
    "source-dest-check-snat": None,
    "syn-with-ip-options": None,  # the DSR option goes first, the SYN's own after it
    "syn-options-too-long":
        rf"{LB_NAME} dropped the SYN to {SVC}: its own IP options \(40 bytes\) leave no room "
        rf"for the 8-byte DSR option \(20 \+ 40 \+ 8 > 60; Cilium's rule since 1\.14\)",
}

# scenario -> the lines the datapath's drop counters add to the diagnosis
COUNTED: dict[str, list[str]] = {
    "syn-options-too-long": [f"dropped at {LB_NAME} eth0: drop_opt_too_long (the lab's "
                             "dsr.c counted 1 packet)"],
}


def test_every_failure_scenario_has_an_expected_diagnosis() -> None:
    """Here or, for the faults under traffic, in tests/runner/test_faults.py."""
    from tests.runner.test_faults import EXPECTED as FAULTS  # noqa: PLC0415

    assert {p.stem for p in all_scenarios() if p.parent == FAILURES} == \
        set(EXPECTED) | set(FAULTS)
    assert not set(EXPECTED) & set(FAULTS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_failure_is_proven_and_diagnosed(name: str, captures_root: Path) -> None:
    run = run_scenario(FAILURES / f"{name}.yaml", captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    assert run.result is not None
    want = EXPECTED[name]
    if want is None:
        assert run.result.diagnoses == ()
        assert all(e.ok for e in run.exchanges)  # (crafted packets: no exchanges)
        return
    assert not any(e.ok for e in run.exchanges)
    line, *counted = run.result.diagnoses
    assert re.fullmatch(want, line), line
    # and, in the datapath's own words, what its counters say it dropped there
    assert counted == COUNTED.get(name, []), counted
    out = dsrlab("review", str(run.capture_dir))
    assert out.returncode == 1
    assert f"diagnosis: {run.capture_dir}: {line}\n" in out.stdout  # whole, on one line
