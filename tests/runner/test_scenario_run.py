"""A whole seed run through the library: what lands on disk, and --keep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.model.scenario import ScenarioError, load_scenario
from lab.runner.scenario import run_scenario
from tests.seed import (
    CLIENT_IP,
    LB_NAME,
    NODE_PORT,
    POD2_NAME,
    POD2_NODE,
    POD_NAME,
    POD_NAMES,
    POD_NODE,
    SEED_SCENARIO_PATH,
    SEED_TOPOLOGY_PATH,
    SERVICE,
    VIP,
)

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


def test_a_run_leaves_pcaps_manifest_and_results(tmp_path: Path) -> None:
    run = run_scenario("seed", captures_root=tmp_path)
    assert run.passed, run.result.summary() if run.result else "no result"
    assert all(ex.ok for ex in run.exchanges)
    assert {ex.pod for ex in run.exchanges} == POD_NAMES
    manifest = json.loads((run.capture_dir / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("scenario", "run_id", "backend", "service", "client")} == {
        "scenario": "seed", "run_id": run.run_id, "backend": "netns",
        "service": {"ip": VIP, "port": NODE_PORT, "name": SERVICE.name,
                    "protocol": SERVICE.protocol},
        "client": {"ip": CLIENT_IP}}
    assert sorted((p["name"], p["role"]) for p in manifest["points"]) == sorted([
        (f"{LB_NAME}/eth0", "lb-node"),
        (f"{POD_NODE}/eth0", "backend-node"),
        (f"{POD2_NODE}/eth0", "backend-node"),
        ("client/br-kind", "client"),
        (f"{POD_NAME}/eth0", "pod"),
        (f"{POD2_NAME}/eth0", "pod"),
    ])
    for p in manifest["points"]:
        assert (run.capture_dir / p["file"]).stat().st_size > 24  # more than a pcap header
        assert p["packets"] > 0
    results = json.loads((run.capture_dir / "results.json").read_text())
    assert results["passed"] is True
    assert [c["name"] for c in results["claims"]] == [
        "flows", "client-session", "lb-node", "backend-node", "pod", "all-backends"]
    assert len(results["flows"]) == len(run.exchanges)
    assert (tmp_path / "seed" / "latest").resolve() == run.capture_dir.resolve()
    assert run.run_id not in cleanup.find_runs()


def test_keep_leaves_the_lab_up_for_debugging(tmp_path: Path) -> None:
    run = run_scenario("seed", captures_root=tmp_path, keep=True)
    try:
        assert run.kept
        residue = cleanup.find_runs()[run.run_id]
        assert len(residue.namespaces) == 6
        assert residue.state_file is not None
    finally:
        cleanup.tear_down(run.run_id)
    assert run.run_id not in cleanup.find_runs()


def test_a_scenario_naming_a_missing_node_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED_SCENARIO_PATH.read_text()
                   .replace("../topologies/seed.yaml", str(SEED_TOPOLOGY_PATH))
                   .replace(f"node: {LB_NAME}", "node: no-such-node9"))
    with pytest.raises(ScenarioError, match=r"bad\.yaml: target\.node: no node "
                                            r"'no-such-node9'"):
        load_scenario(bad)
