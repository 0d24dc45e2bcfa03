"""The MTU scenarios on Cilium's own datapath: with its DSR ICMP errors compiled in
(pmtuDiscovery.enabled) the client learns the path MTU and DSR goes on; without, the
too-big datagram vanishes at the node addressed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.seed import REPO

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
MTU = REPO / "scenarios" / "mtu"


@pytest.mark.parametrize("name", ["tcp-frag-needed", "udp-frag-needed",
                                  "udp-fragmented-question", "udp-too-big-silent",
                                  "udp-fragments-untracked"])
def test_the_mtu_scenario_passes_on_cilium(name: str, cilium_source: CiliumSource,
                                           tmp_path: Path) -> None:
    require_root()
    res = run_scenario(MTU / f"{name}.yaml", captures_root=tmp_path,
                       backend=NetnsBackend(datapaths=CiliumDatapaths(cilium_source)))
    assert res.result is not None
    assert res.passed, [c.describe() for cl in res.result.claims for c in cl.failures]
