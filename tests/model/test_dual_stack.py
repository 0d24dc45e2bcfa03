"""Dual-stack topologies: IPv6 addresses beside the IPv4 ones, checked like them."""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

import pytest
import yaml

from lab.model.topology import Topology, TopologyError, load_topology, parse_topology
from tests.seed import SEED_TOPOLOGY_PATH

DUAL = SEED_TOPOLOGY_PATH.parent / "seed-dual-stack.yaml"


def dual_data() -> dict[str, Any]:
    data = yaml.safe_load(DUAL.read_text())
    assert isinstance(data, dict)
    return data


def test_the_dual_stack_seed_is_kinds_ipv6_network_beside_the_seed() -> None:
    t = load_topology(DUAL)
    seed = load_topology(SEED_TOPOLOGY_PATH)
    assert t.dual_stack
    assert not seed.dual_stack
    assert str(t.network.subnet6) == "fc00:f853:ccd:e793::/64"
    assert t.client.ip6 == IPv6Address("fc00:f853:ccd:e793::1")
    assert {n.name: (str(n.ip), str(n.ip6)) for n in t.nodes} == {
        n.name: (str(n.ip), f"fc00:f853:ccd:e793::{str(n.ip).rsplit('.', 1)[1]}")
        for n in seed.nodes}
    assert all(n.pod_cidr6 is not None and n.pod_cidr6.subnet_of(
        t.cluster.native_routing_cidr6) for n in t.nodes)  # type: ignore[arg-type]
    assert [str(n.router_ip6) for n in t.nodes] == [
        "fd00:10:244:1::1", "fd00:10:244:2::1", "fd00:10:244::1"]
    assert t.service("serversvc").ip_families == ["IPv4", "IPv6"]
    assert seed.service("serversvc").ip_families == ["IPv4"]


def _problem(data: dict[str, Any]) -> str:
    with pytest.raises(TopologyError) as err:
        parse_topology(data, "dual.yaml")
    return str(err.value)


@pytest.mark.parametrize(("change", "path", "words"), [
    (lambda d: d["nodes"][1].pop("ip6"), "nodes[1].ip6", "field required in a dual-stack"),
    (lambda d: d["nodes"][2].pop("pod_cidr6"), "nodes[2].pod_cidr6", "field required"),
    (lambda d: d["client"].update(ip6="fc00:1::1"), "client.ip6",
     "fc00:1::1 is not in network.subnet6 fc00:f853:ccd:e793::/64"),
    (lambda d: d["nodes"][0].update(ip6="fc00:f853:ccd:e793::1"), "nodes[0].ip6",
     "address fc00:f853:ccd:e793::1 is used twice"),
    (lambda d: d["nodes"][0].update(ip6="fc00:f853:ccd:e793::"), "nodes[0].ip6",
     "subnet-router anycast"),
    (lambda d: d["nodes"][0].update(pod_cidr6="fd00:10:244:2::/64"), "nodes[1].pod_cidr6",
     "overlaps nodes[0].pod_cidr6"),
    (lambda d: d["nodes"][0].update(pod_cidr6="fd00:99::/64"), "nodes[0].pod_cidr6",
     "outside cluster.native_routing_cidr6 fd00:10:244::/56"),
    (lambda d: d["workloads"][0]["pods"][0].update(ip6="fd00:10:244:1::7"),
     "workloads[0].pods[0].ip6", "is not in cilium-dsr-worker's pod_cidr6"),
    (lambda d: d["workloads"][0]["pods"][0].update(ip6="fd00:10:244:2::1"),
     "workloads[0].pods[0].ip6", "reserved"),
    (lambda d: d["workloads"][0]["pods"][1].update(ip6="ff02::1"),
     "workloads[0].pods[1].ip6", "multicast"),
    (lambda d: d["workloads"][0]["pods"][1].pop("ip6"), "workloads[0].pods[1].ip6",
     "field required"),
    (lambda d: d["services"][0].update(ip_families=["IPv6", "IPv6"]),
     "services[0].ip_families", "a family is named twice"),
    (lambda d: d["services"][0].update(ip_families=["IPv5"]), "services[0].ip_families",
     ""),
])
def test_a_wrong_ipv6_field_is_named(change: Any, path: str, words: str) -> None:
    data = dual_data()
    change(data)
    message = _problem(data)
    assert message.startswith("dual.yaml: ")
    assert path in message, message
    assert words in message, message


def test_ipv6_in_a_single_stack_lab_is_refused_by_name() -> None:
    data = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
    data["nodes"][0]["ip6"] = "fc00::2"
    data["services"][0]["ip_families"] = ["IPv4", "IPv6"]
    message = _problem(data)
    assert "nodes[0].ip6: an IPv6 address needs network.subnet6" in message
    assert "services[0].ip_families: IPv6 needs a dual-stack lab" in message


def test_a_single_stack_seed_still_loads() -> None:
    t: Topology = load_topology(SEED_TOPOLOGY_PATH)
    assert t.client.ip6 is None
    assert all(n.ip6 is None for n in t.nodes)


@pytest.mark.parametrize("field", ["drop_ipv6_ext_headers", "strip_ip_options"])
def test_a_fabric_rule_for_an_unknown_node_is_refused_naming_the_field(field: str) -> None:
    data = dual_data()
    data["fabric"] = {field: ["cilium-dsr-control-plane", "no-such-node"]}
    msg = _problem(data)
    assert f"fabric.{field}[1]" in msg, msg
    assert "no node named 'no-such-node'" in msg, msg


def test_the_ext_header_rule_names_its_nodes() -> None:
    data = dual_data()
    data["fabric"] = {"drop_ipv6_ext_headers": ["cilium-dsr-control-plane"]}
    t = parse_topology(data, "dual.yaml")
    assert t.fabric.drop_ipv6_ext_headers == ["cilium-dsr-control-plane"]
    assert t.fabric.strip_ip_options == []
