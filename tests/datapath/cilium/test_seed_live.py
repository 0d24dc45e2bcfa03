"""The seed scenario on a netns lab whose nodes run Cilium's own programs, hop by
hop, with the captures of every hop: the write-up's claims on the real datapath."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.capture.manifest import Manifest
from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.seed import LB_NAME, REPO, SEED_SCENARIO_PATH, TOPOLOGY

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]


def test_the_seed_on_ciliums_datapath(cilium_source: CiliumSource, tmp_path: Path) -> None:
    """Every claim of the seed holds on Cilium's datapath, hop by hop. The one place
    the versions differ is said in the trace: 1.13 forwards the DSR SYN with the TTL
    the client sent, 1.14+ (and the lab's datapath) lower it by one."""
    require_root()
    backend = NetnsBackend(datapaths=CiliumDatapaths(cilium_source))
    res = run_scenario(SEED_SCENARIO_PATH, captures_root=tmp_path, backend=backend)
    assert res.result is not None
    manifest = Manifest.model_validate_json((res.capture_dir / "manifest.json").read_text())
    assert manifest.datapath.name == "cilium"
    assert manifest.datapath.version == str(cilium_source.version)
    assert manifest.datapath.source_sha256 == cilium_source.sha256
    assert res.report is not None
    assert f"datapath Cilium {cilium_source.version} (" in res.report.markdown.read_text()
    assert f"Cilium {cilium_source.version} (" in res.report.html.read_text()
    assert res.passed, [c.describe() for cl in res.result.claims for c in cl.failures]
    (lb,) = [cl for cl in res.result.claims if cl.name == "lb-node"]
    syn_outs = [c.message for c in lb.checks if c.label == "lb-node/syn-out"]
    assert syn_outs
    want = ("(on lab, cilium>=1.14:" if cilium_source.version.at_least(1, 14)
            else "(on cilium<1.14:")
    assert all(want in m for m in syn_outs), syn_outs


def test_a_lab_up_on_cilium_shows_its_programs(cilium_source: CiliumSource) -> None:
    """``dsrlab up --datapath cilium`` as a library: tc on the LB node's eth0 shows
    cil_from_netdev, and the lab answers through Cilium's programs."""
    require_root()
    with NetnsBackend(datapaths=CiliumDatapaths(cilium_source)).up(TOPOLOGY) as lab:
        shown = lab.run(LB_NAME, ["tc", "filter", "show", "dev", "eth0", "ingress"]).stdout
        assert "cil_from_netdev" in shown
        lab.wait_serving()
        answer = lab.run("client", ["curl", "-s", "-m", "5", "http://172.18.0.2:32000/"],
                         check=False)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.startswith("PodName: ")
        assert lab.datapath_record()["name"] == "cilium"
    assert not subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                              check=True).stdout.count(f"dsrlab-{lab.run_id}-")


def test_the_pytest_option_runs_a_scenario_on_cilium(cilium_source: CiliumSource,
                                                       tmp_path: Path) -> None:
    """``pytest scenarios/seed.yaml --dsrlab-datapath cilium --dsrlab-cilium-src X``: the
    scenario item runs on Cilium's programs (its capture set says so)."""
    require_root()
    caps = tmp_path / "caps"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         str(SEED_SCENARIO_PATH), "--dsrlab-datapath", "cilium",
         "--dsrlab-cilium-src", str(cilium_source.path), "--dsrlab-captures", str(caps)],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    manifest = Manifest.model_validate_json((caps / "seed" / "latest" / "manifest.json")
                                            .read_text())
    assert manifest.datapath.version == str(cilium_source.version)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 passed" in proc.stdout
