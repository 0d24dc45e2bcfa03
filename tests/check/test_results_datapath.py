"""``results.json`` records which datapath made its capture set (the manifest's
``datapath`` part), and a file written before it did still loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.capture.capdir import CaptureDir
from lab.capture.manifest import Manifest
from lab.check.trace import check_trace, load_trace
from lab.check.trace.results import TraceResult, load_results, parse_results
from tests.seed import SEED_TRACE_PATH

CILIUM = {"name": "cilium", "version": "v1.16.0", "commit": "8f3c" * 10,
          "source_sha256": "ab" * 32}


def test_the_datapath_is_written_and_read_back(tmp_path: Path) -> None:
    TraceResult("seed", "c0ffee", "seed.trace.yaml", (), (), datapath=CILIUM).write(tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["datapath"] == CILIUM
    loaded = load_results(tmp_path)
    assert loaded is not None
    assert loaded.datapath == CILIUM


def test_an_older_results_json_without_it_loads() -> None:
    old = {"scenario": "seed", "run_id": "c0ffee", "passed": True, "packet_numbers": "frame",
           "claims": [{"name": "client", "passed": True, "checks": []}]}
    res = parse_results(old)
    assert res.datapath == {}
    assert res.passed
    assert parse_results({**old, "datapath": ["not", "a", "mapping"]}).datapath == {}


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.scenario
def test_a_runs_results_name_the_manifests_datapath(seed_capture: Path) -> None:
    """The seed, run on the lab's datapath: results.json says so, as its manifest."""
    manifest = Manifest.read(seed_capture)
    loaded = load_results(seed_capture)
    assert loaded is not None
    assert loaded.datapath == manifest.datapath.model_dump()
    assert loaded.datapath["name"] == "lab"
    # and the checker gives the same record for the set, from its manifest alone
    fresh = check_trace(load_trace(SEED_TRACE_PATH), CaptureDir.load(seed_capture))
    assert fresh.datapath == loaded.datapath
