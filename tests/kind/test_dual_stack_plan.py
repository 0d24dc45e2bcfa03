"""The kind plan of a dual-stack topology: kind's dual IP family, Cilium's IPv6 Helm
values per chart line (golden files, ``DSRLAB_REGEN_GOLDEN=1`` rewrites them), the
agent's IPv6 start-up checks, and Geneve dispatch beside IPv6."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lab.env.kind.agent import refusals
from lab.env.kind.config import kind_config
from lab.env.kind.values import SPELLINGS, chart_line, helm_values
from lab.model.topology import Topology, load_topology
from tests.kind.goldenview import golden_view

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("DSRLAB_REGEN_GOLDEN") == "1"
DUAL_PATH = Path(__file__).parents[2] / "topologies" / "seed-dual-stack.yaml"
SEED_PATH = Path(__file__).parents[2] / "topologies" / "seed.yaml"


def _dual(version: str = "1.13.0-rc5", **lb: Any) -> Topology:
    t = load_topology(DUAL_PATH)
    cluster = t.cluster.model_copy(update={"cilium_version": version})
    return t.model_copy(update={"cluster": cluster, "load_balancer":
                                t.load_balancer.model_copy(update=lb)})



@pytest.mark.parametrize("line", sorted(SPELLINGS), ids=lambda v: f"{v[0]}.{v[1]}")
def test_the_dual_stack_plan_of_each_line_matches_its_golden_file(
        line: tuple[int, int]) -> None:
    got = golden_view(_dual(f"{line[0]}.{line[1]}.0"))
    path = GOLDEN / f"seed-dual-stack-{line[0]}.{line[1]}.json"
    if REGEN:
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(path.read_text()), f"{path} (DSRLAB_REGEN_GOLDEN=1 rewrites it)"


def test_kind_makes_a_dual_stack_cluster_with_the_ipv6_pod_range() -> None:
    net = kind_config(_dual())["networking"]
    assert net["ipFamily"] == "dual"
    assert net["podSubnet"] == "10.244.0.0/16,fd00:10:244::/56"
    single = kind_config(load_topology(SEED_PATH))["networking"]
    assert "ipFamily" not in single
    assert "podSubnet" not in single


@pytest.mark.parametrize("version", ["1.13.0-rc5", "1.14.0", "1.15.0", "1.16.0"])
def test_cilium_gets_ipv6_and_its_native_routing_cidr(version: str) -> None:
    t = _dual(version)
    values = helm_values(t, "172.18.0.2")
    assert values["ipv6.enabled"] is True
    assert values["ipv6NativeRoutingCIDR"] == "fd00:10:244::/56"
    assert values["ipam.operator.clusterPoolIPv6PodCIDRList"] == "fd00:10:244::/56"
    assert values["ipam.operator.clusterPoolIPv6MaskSize"] == 64
    # 1.13's agent does not masquerade IPv6 in BPF: the plan turns IPv6 masquerade off
    assert ("enableIPv6Masquerade" in values) == version.startswith("1.13")
    line = chart_line(version)
    assert refusals(line, values) == []
    assert "ipv6.enabled" not in helm_values(load_topology(SEED_PATH), "172.18.0.2")


@pytest.mark.parametrize(("line", "drop", "words"), [
    ((1, 13), "enableIPv6Masquerade", "BPF masquerade is not supported for IPv6."),
    # (1.13 with IPv6 masquerade off, as planned, needs no IPv6 native routing CIDR)
    ((1, 13), "enableIPv6Masquerade ipv6NativeRoutingCIDR",
     "native routing cidr must be configured with option --ipv6-native-routing-cidr in "
     "combination with --enable-ipv6-masquerade --tunnel=disabled --enable-ipv6=true"),
    ((1, 14), "ipv6NativeRoutingCIDR",
     "native routing cidr must be configured with option --ipv6-native-routing-cidr in "
     "combination with --enable-ipv6-masquerade --routing-mode=native --enable-ipv6=true"),
    ((1, 16), "ipv6NativeRoutingCIDR",
     "native routing cidr must be configured with option --ipv6-native-routing-cidr in "
     "combination with --enable-ipv6=true --enable-ipv6-masquerade=true "
     "--enable-ip-masq-agent=false --routing-mode=native"),
])
def test_the_agents_ipv6_checks_in_its_words(line: tuple[int, int], drop: str,
                                             words: str) -> None:
    values = helm_values(_dual(f"{line[0]}.{line[1]}.0"), "172.18.0.2")
    for key in drop.split():
        del values[key]
    assert [r.words for r in refusals(line, values)][-1:] == [words]


@pytest.mark.parametrize("version", ["1.14.0", "1.15.0", "1.16.0"])
def test_geneve_dispatch_beside_ipv6(version: str) -> None:
    t = _dual(version, dispatch="geneve")
    t = t.model_copy(update={"cluster": t.cluster.model_copy(
        update={"tunnel_protocol": "geneve"})})
    values = helm_values(t, "172.18.0.2")
    assert values["loadBalancer.dsrDispatch"] == "geneve"
    assert values["tunnelProtocol"] == "geneve"
    assert values["routingMode"] == "native"
    assert values["ipv6.enabled"] is True
    line = chart_line(version)
    assert refusals(line, values) == []
    tunnel = t.model_copy(update={"cluster": t.cluster.model_copy(
        update={"routing": "tunnel"})})
    values = helm_values(tunnel, "172.18.0.2")
    assert (values["routingMode"], values["tunnelProtocol"]) == ("tunnel", "geneve")
    assert "ipv6NativeRoutingCIDR" not in values  # a tunnel needs none
    assert refusals(line, values) == []


def test_without_an_ipv6_routing_cidr_the_pool_covers_the_nodes_pod_cidrs() -> None:
    t = _dual("1.13.0")
    t = t.model_copy(update={"cluster": t.cluster.model_copy(
        update={"native_routing_cidr6": None})})
    values = helm_values(t, "172.18.0.2")
    # fd00:10:244::/64, :1::/64 and :2::/64: the smallest network holding them is a /62
    assert values["ipam.operator.clusterPoolIPv6PodCIDRList"] == "fd00:10:244::/62"
    assert values["ipam.operator.clusterPoolIPv6MaskSize"] == 64
    assert "ipv6NativeRoutingCIDR" not in values
