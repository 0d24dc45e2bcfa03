"""A whole seed run through the library: what lands on disk, and --keep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.model.scenario import ScenarioError, load_scenario
from lab.runner.scenario import run_scenario

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


def test_a_run_leaves_pcaps_manifest_and_results(tmp_path: Path) -> None:
    run = run_scenario("seed", captures_root=tmp_path)
    assert run.passed, run.result.summary() if run.result else "no result"
    assert all(ex.ok for ex in run.exchanges)
    assert {ex.pod for ex in run.exchanges} == {"cni-8zxj9", "cni-m7tjc"}
    manifest = json.loads((run.capture_dir / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("scenario", "run_id", "backend", "service", "client")} == {
        "scenario": "seed", "run_id": run.run_id, "backend": "netns",
        "service": {"ip": "172.18.0.2", "port": 32000, "name": "serversvc",
                    "protocol": "TCP"},
        "client": {"ip": "172.18.0.1"}}
    assert sorted((p["name"], p["role"]) for p in manifest["points"]) == [
        ("cilium-dsr-control-plane/eth0", "lb-node"),
        ("cilium-dsr-worker/eth0", "backend-node"),
        ("cilium-dsr-worker2/eth0", "backend-node"),
        ("client/br-kind", "client"),
        ("cni-8zxj9/eth0", "pod"),
        ("cni-m7tjc/eth0", "pod"),
    ]
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
    repo = Path(__file__).resolve().parents[2]
    bad.write_text((repo / "scenarios" / "seed.yaml").read_text()
                   .replace("../topologies/seed.yaml", str(repo / "topologies" / "seed.yaml"))
                   .replace("node: cilium-dsr-control-plane", "node: cilium-dsr-worker9"))
    with pytest.raises(ScenarioError, match=r"bad\.yaml: target\.node: no node "
                                            r"'cilium-dsr-worker9'"):
        load_scenario(bad)
