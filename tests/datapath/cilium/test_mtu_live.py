"""The MTU scenarios on Cilium's own datapath: with its DSR ICMP errors compiled in
(pmtuDiscovery.enabled) the client learns the path MTU and DSR goes on; without, the
too-big datagram vanishes at the node addressed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from tests.datapath.cilium.live import failures, run_on_cilium
from tests.seed import REPO

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
MTU = REPO / "scenarios" / "mtu"


@pytest.mark.parametrize("name", ["tcp-frag-needed", "udp-frag-needed",
                                  "udp-fragmented-question", "udp-too-big-silent",
                                  "udp-fragments-untracked"])
def test_the_mtu_scenario_passes_on_cilium(name: str, cilium_source: CiliumSource,
                                           tmp_path: Path) -> None:
    res = run_on_cilium(MTU / f"{name}.yaml", cilium_source, tmp_path)
    assert res.passed, failures(res)
