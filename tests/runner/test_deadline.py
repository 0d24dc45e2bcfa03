"""The lab never hangs: a scenario's traffic ends at its deadline, the captures so far
are checked all the same, and the diagnosis says where the flow was when it ended."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lab.runner.scenario import run_scenario
from tests.cli.helpers import dsrlab
from tests.seed import CLIENT_IP, POD_IP, POD_PORT, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


def test_a_transfer_longer_than_the_deadline_is_stopped_and_diagnosed(
        tmp_path: Path, captures_root: Path) -> None:
    scenario = tmp_path / "deadline.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "deadline", "topology": str(SEED_TOPOLOGY_PATH),
        "trace": str(SEED_TRACE_PATH), "client": "client",
        "settings": {"workloads[0].pods": [
            {"name": "cni-8zxj9", "node": "cilium-dsr-worker", "ip": POD_IP}]},
        "target": {"service": "serversvc", "node": "cilium-dsr-control-plane"},
        "deadline_s": 1.5,
        "steps": [  # ten seconds of transfer, then a request that never runs
            {"transfer": {"bytes": 10_000_000, "rate": 1_000_000, "timeout_s": 30}},
            {"requests": {"min": 1, "max": 1}}],
    }))
    run = run_scenario(scenario, captures_root=captures_root)
    assert run.timed_out
    (step,) = run.steps  # the request after it was not sent
    assert step.kind == "transfer"
    assert step.summary.endswith("stopped at the scenario's deadline (1.5 s)")
    # ended by the deadline, not by its bytes: 10 MB at 1 MB/s take 10 s (a bound that
    # holds on a loaded machine and cannot hold for a transfer let run to its end)
    assert run.timings["traffic_s"] < 1.5 + 5.0
    assert run.result is not None  # checked all the same
    # curl, stopped, closes with a FIN, or with a RST when data it never read is left
    (line,) = run.result.diagnoses
    assert re.fullmatch(
        rf"the client {re.escape(CLIENT_IP)}:\d+ (closed|reset) the connection at t=[\d.]+ s after "
        rf"[\d.]+ (kB|MB) of 10\.00 MB while the pod {re.escape(POD_IP)}:{POD_PORT} was still "
        r"sending \(its last segment reached client br-kind at t=[\d.]+ s\): it gave up \(a "
        r"time limit of its own\); nothing on the path stopped the flow", line), line
    out = dsrlab("review", str(run.capture_dir))
    assert f"diagnosis: {run.capture_dir}: {line}\n" in out.stdout
