"""A dual-stack topology live on Cilium's own datapath (IPv6 compiled in, maps with
the IPv6 frontends): its IPv4 service answers as the IPv4-only seed's does."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.model.topology import load_topology
from lab.pytest_plugin import require_root

pytestmark = [pytest.mark.netns, pytest.mark.bpf]
DUAL = load_topology(Path(__file__).parents[3] / "topologies" / "seed-dual-stack.yaml")


def test_a_dual_stack_lab_serves_ipv4_through_ciliums_ipv6_enabled_programs(
        cilium_source: CiliumSource) -> None:
    require_root()
    with NetnsBackend(datapaths=CiliumDatapaths(cilium_source)).up(DUAL) as lab:
        lb = lab.run("cilium-dsr-control-plane",
                     ["tc", "filter", "show", "dev", "eth0", "ingress"]).stdout
        assert "cil_from_netdev" in lb
        lab.wait_serving()
        for _ in range(4):  # random backend choice: several connections, each answered
            answer = lab.run("client", ["curl", "-s", "-m", "5", "http://172.18.0.2:32000/"],
                             check=False)
            assert answer.returncode == 0, answer.stderr
            assert answer.stdout.startswith("PodName: ")
