"""The guests' cache: the Cilium objects of a group's ``cilium_scenarios`` are built on
the host and copied where the guest looks for them, so it compiles none under TCG."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.datapath.cilium.node import build_topology
from lab.datapath.cilium.source import ENV_VAR, discover
from lab.matrix.kernels import Group
from lab.matrix.run import CILIUM_SRC_VAR, seed_cache
from lab.model.scenario import load_scenario

SCENARIO = "scenarios/geneve/seed-geneve.yaml"


def test_the_guest_finds_every_cilium_object_of_its_scenarios_built(tmp_path: Path) -> None:
    where = os.environ.get(ENV_VAR)
    if not where:
        pytest.skip(f"no Cilium source: set {ENV_VAR}")
    assert CILIUM_SRC_VAR == ENV_VAR
    seed_cache(tmp_path, [Group(name="g", paths=["tests"], cilium_scenarios=[SCENARIO])])
    guest_cache = tmp_path / "cache" / "bpf"  # DSRLAB_CACHE_DIR/bpf in the guest
    topology = load_scenario(SCENARIO)[1]
    geneve_sources = [s for s in discover(where) if s.version.at_least(1, 14)]
    if not geneve_sources:
        pytest.skip(f"{where}: no Cilium 1.14 or later (Geneve dispatch)")
    for source in geneve_sources:
        built = build_topology(source, topology, guest_cache)
        assert {b.program for b in built} == {"bpf_host", "bpf_lxc", "bpf_overlay"}
        assert [b.path.name for b in built if not b.cached] == []
        assert all(b.path.is_relative_to(tmp_path / "cache" / "cilium") for b in built)


def test_no_cilium_scenarios_copy_no_cilium_cache(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CILIUM_SRC_VAR, "/nonexistent")
    seed_cache(tmp_path, [Group(name="g", paths=["tests"])])
    assert (tmp_path / "cache" / "bpf").is_dir()
    assert not (tmp_path / "cache" / "cilium").exists()
