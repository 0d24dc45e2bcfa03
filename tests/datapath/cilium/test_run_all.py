"""``dsrlab run --all --datapath cilium``: every scenario on Cilium's own programs
(one source, its builds shared); one Cilium's datapath cannot run, or whose
``backends:`` leave out netns, is skipped with the reason; the summary says which
datapath ran them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.capture.manifest import Manifest
from lab.check.trace.results import load_results
from lab.datapath.cilium.source import CiliumSource
from lab.pytest_plugin import require_root
from tests.cli.helpers import DSRLAB, ENV, REPO
from tests.seed import SEED_SCENARIO_PATH, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]


def scenario_folder(tmp_path: Path) -> Path:
    """``a-seed`` (the seed), ``b-network`` (the seed with the option in network byte
    order: the lab's own variant) and ``c-kind`` (the seed on kind only)."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    seed = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    seed.update(topology=str(SEED_TOPOLOGY_PATH), trace=str(SEED_TRACE_PATH))
    (folder / "a-seed.yaml").write_text(yaml.safe_dump({**seed, "name": "a-seed"}))
    (folder / "b-network.yaml").write_text(yaml.safe_dump(
        {**seed, "name": "b-network",
         "settings": {"load_balancer.option_byte_order": "network"}}))
    (folder / "c-kind.yaml").write_text(yaml.safe_dump(
        {**seed, "name": "c-kind", "backends": ["kind"]}))
    return folder


def test_run_all_on_cilium_skips_what_it_cannot_run(cilium_source: CiliumSource,
                                                     tmp_path: Path) -> None:
    require_root()
    folder = scenario_folder(tmp_path)
    captures = tmp_path / "captures"
    out = subprocess.run(
        # one at a time: pytest-xdist runs other labs beside this test already
        [*DSRLAB, "run", "--all", "-j", "1", "--scenarios", str(folder), "--captures",
         str(captures),
         "--datapath", "cilium", "--cilium-src", str(cilium_source.path), "--no-screenshot"],
        capture_output=True, text=True, timeout=900, check=False, cwd=REPO, env=ENV)
    lines = out.stdout.splitlines()
    on = f"Cilium {cilium_source.version}"
    if cilium_source.commit:
        on += f" ({cilium_source.commit[:12]})"
    # a line as each ends ("[k/3]": the k-th to end; with -j, not the folder's order)
    ended = {m[2]: m[3] for line in lines[:3]
             if (m := re.fullmatch(r"\[([123])/3\] (\S+): (.*), \d+\.\d s", line))}
    assert sorted(ended) == ["a-seed", "b-network", "c-kind"], out.stdout + out.stderr
    # every claim holds on both versions (the seed's trace says where they differ)
    assert ended["a-seed"] == "pass, claims 6/6", out.stdout + out.stderr
    assert ended["b-network"] == (
        f"skipped, Cilium {cilium_source.version}: option_byte_order=network is the lab's "
        "own variant; Cilium writes the option in host order")
    assert ended["c-kind"] == (f"skipped, {folder}/c-kind.yaml: backends: scenario c-kind "
                               "runs on kind, not on netns")
    assert lines[3] == f"3 scenarios on {on}, 1 passed, 2 skipped"
    assert lines[-1] == f"PASS: 1 of 3 scenarios passed on {on}, 2 skipped"
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"b-network\s+-\s+-\s+-\s+skipped\s+-\s+-\s+Cilium .*", lines[6])
    # the seed's capture set: made by that Cilium, and its results.json says so
    set_dir = (captures / "a-seed" / "latest").resolve()
    manifest = Manifest.read(set_dir)
    assert (manifest.datapath.name, manifest.datapath.source_sha256) == (
        "cilium", cilium_source.sha256)
    results = load_results(set_dir)
    assert results is not None
    assert results.datapath == manifest.datapath.model_dump()
    assert sorted(p.name for p in captures.iterdir()) == ["a-seed"]  # none for the skips
