"""A topology that says ``datapath: cilium`` runs Cilium's own programs on the netns
backend with no option given (the runner's default backend), and what the
datapath cannot run is refused with the reason before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.capture.manifest import Manifest
from lab.check.trace.results import load_results
from lab.datapath.cilium.source import ENV_VAR, CiliumSource
from lab.env.netns.choice import node_datapaths, refusal
from lab.env.netns.cilium import CiliumDatapaths
from lab.model.topology import load_topology
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.seed import SEED_SCENARIO_PATH, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH


def seed_on_cilium(folder: Path, **topology: object) -> Path:
    """The seed scenario on a copy of its topology with ``datapath: cilium`` (and
    ``topology``'s keys), in ``folder``."""
    topo = folder / "on-cilium.yaml"
    topo.write_text(yaml.safe_dump({**yaml.safe_load(SEED_TOPOLOGY_PATH.read_text()),
                                    "datapath": "cilium", **topology}))
    scenario = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    scenario.update(name="seed-on-cilium", topology=str(topo), trace=str(SEED_TRACE_PATH))
    path = folder / "seed-on-cilium.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_the_topologys_cilium_takes_the_source_and_its_refusals(
        cilium_source: CiliumSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(cilium_source.path))
    seed_on_cilium(tmp_path, load_balancer={"option_byte_order": "network"})
    topo = load_topology(tmp_path / "on-cilium.yaml")
    recipe = node_datapaths(None, topo)
    assert isinstance(recipe, CiliumDatapaths)
    assert recipe.source.sha256 == cilium_source.sha256
    assert refusal(recipe, topo) == (
        f"Cilium {cilium_source.version}: option_byte_order=network is the lab's own "
        "variant; Cilium writes the option in host order")
    assert refusal(recipe, load_topology(SEED_TOPOLOGY_PATH)) is None


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.scenario
def test_the_seed_on_a_topology_that_says_cilium(
        cilium_source: CiliumSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No backend given: the runner's netns backend reads ``datapath: cilium`` and builds
    from ``$DSRLAB_CILIUM_SRC``; the manifest and results.json name that Cilium."""
    require_root()
    monkeypatch.setenv(ENV_VAR, str(cilium_source.path))
    res = run_scenario(seed_on_cilium(tmp_path), captures_root=tmp_path / "captures")
    manifest = Manifest.read(res.capture_dir)
    assert (manifest.datapath.name, manifest.datapath.version,
            manifest.datapath.source_sha256) == ("cilium", str(cilium_source.version),
                                                 cilium_source.sha256)
    results = load_results(res.capture_dir)
    assert results is not None
    assert results.datapath == manifest.datapath.model_dump()
    assert res.passed
