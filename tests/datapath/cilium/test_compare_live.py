"""A modes comparison of a scenario run on Cilium's datapath measures Cilium's datapath
too: every mode's lab is brought up by the scenario's own backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.seed import REPO, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]


def test_each_mode_is_measured_on_ciliums_datapath(cilium_source: CiliumSource,
                                                   tmp_path: Path) -> None:
    require_root()
    data: dict[str, Any] = yaml.safe_load(
        (REPO / "scenarios" / "modes" / "compare-modes.yaml").read_text())
    data.update(topology=str(SEED_TOPOLOGY_PATH), trace=str(SEED_TRACE_PATH))
    data["compare_modes"].update(transfer_bytes=1 << 20, requests=10)
    path = tmp_path / "compare-small.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    res = run_scenario(path, captures_root=tmp_path / "caps",
                       backend=NetnsBackend(datapaths=CiliumDatapaths(cilium_source)))
    modes = json.loads((res.capture_dir / "modes.json").read_text())["modes"]
    assert [m["mode"] for m in modes] == ["snat", "dsr", "hybrid"]
    assert {m["datapath"] for m in modes} == {f"cilium {cilium_source.version}"}
    by_mode = {m["mode"]: m for m in modes}
    # Cilium's DSR: the reply bypasses the LB node, SNAT's goes through it
    assert by_mode["dsr"]["reply_bytes"] == 0
    assert by_mode["snat"]["reply_bytes"] > 1 << 20
