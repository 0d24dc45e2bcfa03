"""Cilium's own drop notifications in a run's capture set, report and diagnosis.

The seed's LB node loses its routes to the pod CIDRs after the lab is up:
Cilium's ``cil_from_netdev`` DNATs the SYN, its FIB lookup finds no route,
and it drops the packet with ``DROP_NO_FIB``. The run keeps the notification
(``datapath-events.json``), the diagnosis names the hop and the reason in
Cilium's words, and the report lists it at that hop and on the connection's
ladder. The same run on a healthy lab says Cilium dropped nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.capture.dpevents import DatapathEvents
from lab.datapath.cilium.source import CiliumSource
from lab.env.base import Lab
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.model.topology import Topology
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.seed import (
    LB_NAME,
    POD2_CIDR,
    POD_CIDR,
    SEED_SCENARIO_PATH,
    SEED_TOPOLOGY_PATH,
    SEED_TRACE_PATH,
)

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]


class _RoutesRemoved:
    """The netns backend, then the LB node's routes to the pods' CIDRs deleted (as a
    node whose routes were never installed): Cilium's FIB lookup has nothing."""

    def __init__(self, backend: NetnsBackend) -> None:
        self.backend = backend
        self.name = backend.name

    def up(self, topology: Topology, *, run_id: str | None = None) -> Lab:
        lab = self.backend.up(topology, run_id=run_id)
        for cidr in (POD_CIDR, POD2_CIDR):
            lab.run(LB_NAME, ["ip", "route", "del", cidr])
        return lab


def _two_requests(tmp_path: Path) -> Path:
    """The seed with two requests (each would fail alike)."""
    data: dict[str, Any] = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    data["topology"] = str(SEED_TOPOLOGY_PATH)
    data["trace"] = str(SEED_TRACE_PATH)
    data["requests"] = {"min": 2, "max": 2, "timeout_s": 2}
    path = tmp_path / "seed-no-route.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_drop_inside_cilium_is_named_in_the_report(cilium_source: CiliumSource,
                                                     tmp_path: Path) -> None:
    require_root()
    backend = _RoutesRemoved(NetnsBackend(datapaths=CiliumDatapaths(cilium_source)))
    res = run_scenario(_two_requests(tmp_path), captures_root=tmp_path / "caps",
                       backend=backend)  # type: ignore[arg-type]
    assert res.result is not None
    assert not res.passed
    events = DatapathEvents.read(res.capture_dir)
    assert events is not None
    assert events.datapath == f"Cilium {cilium_source.version}"
    groups = events.drop_groups()
    assert [(g.node, g.ifname, g.what) for g in groups] == [(LB_NAME, "eth0", "DROP_NO_FIB")]
    assert groups[0].where.startswith("nodeport.h:")
    assert groups[0].count >= 2  # each request's SYN, and their retransmissions
    line = f"dropped at {LB_NAME} eth0: DROP_NO_FIB (Cilium {cilium_source.version}, "
    assert [d for d in res.result.diagnoses if d.startswith(line)], res.result.diagnoses
    # the generic "received the SYN and sent nothing on" gives way to the reason
    assert not [d for d in res.result.diagnoses if "sent nothing on" in d]
    assert res.report is not None
    html = res.report.html.read_text()
    assert f'data-hop="{LB_NAME} eth0" data-reason="DROP_NO_FIB"' in html
    assert 'class="banner error drop"' in html  # on the connection's own ladder
    assert "| DROP_NO_FIB |" in res.report.markdown.read_text()
    results = json.loads((res.capture_dir / "results.json").read_text())
    assert any("DROP_NO_FIB" in d for d in results["diagnoses"])


def test_a_healthy_run_says_cilium_dropped_nothing(cilium_source: CiliumSource,
                                                   tmp_path: Path) -> None:
    require_root()
    backend = NetnsBackend(datapaths=CiliumDatapaths(cilium_source))
    res = run_scenario(_two_requests(tmp_path), captures_root=tmp_path / "caps",
                       backend=backend)
    events = DatapathEvents.read(res.capture_dir)
    assert events is not None
    assert events.drops == []
    # Cilium traced the SYN into the LB node and out again, and into the pod
    assert any(k.startswith(f"{LB_NAME} ") for k in events.traces), events.traces
    assert res.report is not None
    assert "dropped nothing during the run" in res.report.html.read_text()
