"""The seed scenario end to end on the netns backend: real curl, real tcpdump
at every hop, the lab's eBPF datapath, and the write-up's four claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import cleanup
from lab.scenario import run_scenario

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]


def test_seed_scenario_proves_every_claim(captures_root: Path) -> None:
    run = run_scenario("seed", captures_root=captures_root)
    failed = {c.name: c.problems for c in run.claims if not c.passed}
    assert not failed, failed
    assert [c.name for c in run.claims] == [
        "client-session", "lb-node", "backend-node", "pod", "all-backends"]
    # every request was answered, by both DaemonSet pods between them
    assert all(ex.ok for ex in run.exchanges)
    assert {ex.pod for ex in run.exchanges} == {"cni-8zxj9", "cni-m7tjc"}
    # the capture set on disk: a manifest naming every hop, latest -> this run
    manifest = json.loads((run.capture_dir / "manifest.json").read_text())
    assert manifest["scenario"] == "seed"
    assert manifest["run_id"] == run.run_id
    assert manifest["backend"] == "netns"
    assert manifest["service"]["ip"] == "172.18.0.2"
    assert manifest["service"]["port"] == 32000
    assert manifest["client"] == {"ip": "172.18.0.1"}
    roles = sorted((p["host"], p["ifname"], p["role"]) for p in manifest["points"])
    assert roles == [
        ("cilium-dsr-control-plane", "eth0", "lb-node"),
        ("cilium-dsr-worker", "eth0", "backend-node"),
        ("cilium-dsr-worker2", "eth0", "backend-node"),
        ("client", "br-kind", "client"),
        ("cni-8zxj9", "eth0", "pod"),
        ("cni-m7tjc", "eth0", "pod"),
    ]
    for p in manifest["points"]:
        assert (run.capture_dir / p["file"]).stat().st_size > 24  # more than a pcap header
    assert (run.capture_dir.parent / "latest").resolve() == run.capture_dir.resolve()
    # and the lab is gone
    assert run.run_id not in cleanup.find_runs()
