"""The guests' cache: the Cilium objects of a group's ``cilium_scenarios`` are built on
the host and copied where the guest looks for them, so it compiles none under TCG."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.datapath.cilium.build import tree_folder
from lab.datapath.cilium.node import build_topology
from lab.datapath.cilium.probes import predict
from lab.datapath.cilium.source import ENV_VAR, discover
from lab.matrix.kernels import Group
from lab.matrix.run import CILIUM_SRC_VAR, CILIUM_VERIFIER_SCENARIO, seed_cache
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


def test_a_missing_cilium_source_copies_no_cilium_cache(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CILIUM_SRC_VAR, "/nonexistent")
    seed_cache(tmp_path, [Group(name="g", paths=["tests"])])
    assert (tmp_path / "cache" / "bpf").is_dir()
    assert not (tmp_path / "cache" / "cilium").exists()


def test_the_seeds_objects_are_built_for_the_guest_kernels_features(tmp_path: Path) -> None:
    """For the cilium-verifier rows the seed's objects are in the guest's cache, built
    for the guest kernel's predicted features: 5.10's (no bpf_set_retval) are other
    objects than 6.1's, which are the host's (every probe passes on both)."""
    where = os.environ.get(ENV_VAR)
    if not where:
        pytest.skip(f"no Cilium source: set {ENV_VAR}")
    old, new = "5.10.0-35-amd64", "6.1.0-57-amd64"
    seed_cache(tmp_path / "a", [Group(name="g", paths=["tests"])], release=old)
    seed_cache(tmp_path / "b", [Group(name="g", paths=["tests"])], release=new)
    topology = load_scenario(CILIUM_VERIFIER_SCENARIO)[1]
    for source in discover(where):
        built_old = build_topology(source, topology, tmp_path / "a" / "cache" / "bpf",
                                   release=old)
        built_new = build_topology(source, topology, tmp_path / "b" / "cache" / "bpf",
                                   release=new)
        assert [b.path.name for b in built_old + built_new if not b.cached] == []
        assert {b.program for b in built_old} == {"bpf_host", "bpf_lxc"}
        trees = {b.path.parents[1].name for b in built_old}
        assert trees == {f"{tree_folder(source, predict(old))}"}
        assert trees != {source.sha256[:20]}
        assert {b.path.parents[1].name for b in built_new} == {source.sha256[:20]}
        features_h = built_old[0].path.parents[1] / "bpf/include/bpf/features.h"
        assert "HAVE_SET_RETVAL" not in features_h.read_text()
