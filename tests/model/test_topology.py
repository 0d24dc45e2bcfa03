"""Topology loading: the seed as data, and errors that name the file and the field."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.model.topology import Topology, TopologyError, load_topology, parse_topology
from tests.seed import POD_CIDR, POD_NAME, POD_NODE, SEED_TOPOLOGY_PATH, VIP

SEED = SEED_TOPOLOGY_PATH


def seed_data() -> dict[str, Any]:
    data = yaml.safe_load(SEED.read_text())
    assert isinstance(data, dict)
    return data


def test_seed_is_the_write_ups_cluster(seed_topology: Topology) -> None:
    """The seed topology is the write-up's kind cluster: its addresses, pinned here on
    purpose (everywhere else tests name them through tests/seed.py)."""
    t = seed_topology
    assert t.client.ip == IPv4Address("172.18.0.1")
    assert {n.name: (str(n.ip), str(n.pod_cidr)) for n in t.nodes} == {
        "cilium-dsr-control-plane": ("172.18.0.2", "10.0.1.0/24"),
        "cilium-dsr-worker": ("172.18.0.4", "10.0.2.0/24"),
        "cilium-dsr-worker2": ("172.18.0.3", "10.0.0.0/24"),
    }
    assert {(p.name, p.node, str(p.ip)) for p in t.backends("serversvc")} == {
        ("cni-8zxj9", "cilium-dsr-worker", "10.0.2.123"),
        ("cni-m7tjc", "cilium-dsr-worker2", "10.0.0.216"),
    }
    svc = t.service("serversvc")
    assert (svc.node_port, svc.target_port, svc.protocol) == (32000, 80, "TCP")
    assert t.load_balancer.mode == "dsr"
    assert t.load_balancer.algorithm == "random"
    assert t.cluster.kube_proxy == "none"
    assert t.cluster.routing == "native"
    assert t.cluster.native_routing_cidr == IPv4Network("10.0.0.0/8")
    assert t.node("cilium-dsr-worker").router_ip == IPv4Address("10.0.2.1")


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = seed_data()
    target: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("nodes.1.ip", "172.19.0.4", "nodes[1].ip: 172.19.0.4 is not in network.subnet"),
        ("nodes.1.ip", "banana", "nodes[1].ip: Input is not a valid IPv4 address"),
        ("nodes.0.colour", "red",
         "nodes[0].colour: unknown key (known keys: name, role, ip, pod_cidr, ip6, pod_cidr6)"),
        ("nodes.2.pod_cidr", POD_CIDR, f"nodes[2].pod_cidr: {POD_CIDR} overlaps nodes[1]"),
        ("nodes.0.role", "master", "nodes[0].role: Input should be 'control-plane' or 'worker'"),
        ("client.ip", VIP, f"nodes[0].ip: address {VIP} is used twice"),
        ("workloads.0.pods.0.node", "nope", "workloads[0].pods[0].node: no node named 'nope'"),
        ("workloads.0.pods.0.ip", "10.0.1.5", "workloads[0].pods[0].ip: 10.0.1.5 is not in "
         f"{POD_NODE}'s pod_cidr {POD_CIDR}"),
        ("workloads.0.pods.1.name", POD_NAME, "workloads[0].pods[1].name: host name "
         f"'{POD_NAME}' is used twice"),
        ("services.0.node_port", 80, "services[0].node_port: Input should be greater than or "
         "equal to 30000"),
        ("services.0.selector", "web", "services[0].selector: no workload named 'web'"),
        ("services.0.target_port", 8080, "services[0].target_port: 8080 but workload 'cni' "
         "listens on 80"),
        ("load_balancer.mode", "fast", "load_balancer.mode: Input should be 'snat', 'dsr' or"),
        ("cluster.routing", "tunnel", 'load_balancer.mode: Node Port "dsr" mode cannot be used '
         "with tunneling"),
        ("network", _DELETE, "network: Field required"),
        ("nodes.0.name", "Control_Plane", "nodes[0].name: String should match pattern"),
        ("datapath", "Cilium", "datapath: Input should be 'lab' or 'cilium' (got 'Cilium')"),
        ("datapath", ["cilium"], "datapath: Input should be 'lab' or 'cilium'"),
    ],
)
def test_a_wrong_field_is_named_with_the_file(path: str, value: Any, expected: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(_mutate(path, value), "topologies/broken.yaml")
    message = str(info.value)
    assert message.startswith("topologies/broken.yaml: ")
    assert expected in message


def test_a_file_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: [\n  - a: 1\n")
    with pytest.raises(TopologyError, match=r"bad\.yaml: line \d+, column \d+: not valid YAML"):
        load_topology(bad)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"nope\.yaml: cannot read"):
        load_topology(tmp_path / "nope.yaml")


def test_a_list_at_top_level_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(TopologyError, match=r"list\.yaml: \(top level\): expected a mapping"):
        load_topology(bad)


def test_the_loaded_topology_remembers_its_file() -> None:
    assert load_topology(SEED).source == SEED


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("nodes.1.ip", "172.18.255.255",
         "nodes[1].ip: 172.18.255.255 is the network or broadcast address of 172.18.0.0/16"),
        ("nodes.1.ip", "172.18.0.0",
         "nodes[1].ip: 172.18.0.0 is the network or broadcast address of 172.18.0.0/16"),
        ("client.ip", "172.18.255.255",
         "client.ip: 172.18.255.255 is the network or broadcast address of 172.18.0.0/16"),
        ("network.subnet", "224.0.0.0/16",
         "network.subnet: 224.0.0.0/16 is a multicast network, not usable for hosts"),
        ("network.subnet", "127.18.0.0/16",
         "network.subnet: 127.18.0.0/16 is a loopback network, not usable for hosts"),
        ("network.subnet", "0.0.0.0/0",
         "network.subnet: 0.0.0.0/0 starts in 0.0.0.0/8, not usable for hosts"),
        ("network.subnet", "172.18.0.0/31",
         "network.subnet: 172.18.0.0/31 has no room for a client and nodes"),
        ("workloads.0.pods.0.ip", "224.0.2.5",
         "workloads[0].pods[0].ip: 224.0.2.5 is a multicast address, not usable for a host"),
        ("workloads.0.pods.0.ip", "127.0.0.1",
         "workloads[0].pods[0].ip: 127.0.0.1 is a loopback address, not usable for a host"),
        ("workloads.0.pods.0.ip", "0.0.0.0",
         "workloads[0].pods[0].ip: 0.0.0.0 is the unspecified address, not usable for a host"),
        ("workloads.0.pods.0.ip", "255.255.255.255",
         "workloads[0].pods[0].ip: 255.255.255.255 is a reserved address"),
        ("workloads.0.pods.0.ip", f"{POD_CIDR.rsplit('.', 1)[0]}.255",
         "workloads[0].pods[0].ip: 10.0.2.255 is reserved in 10.0.2.0/24"),
    ],
)
def test_an_address_no_host_can_have_is_refused(path: str, value: Any, expected: str) -> None:
    """Bring-up died on these with NetlinkError (22, 'Invalid argument')."""
    with pytest.raises(TopologyError) as info:
        parse_topology(_mutate(path, value), "t.yaml")
    lines = str(info.value).splitlines()
    assert any(line.startswith(f"t.yaml: {expected}") for line in lines), lines


def test_a_node_or_client_address_in_a_bad_range_is_refused() -> None:
    data = _mutate("network.subnet", "169.254.0.0/16")
    data["client"]["ip"] = "169.254.0.1"
    for i, node in enumerate(data["nodes"]):
        node["ip"] = f"169.254.0.{i + 2}"
    with pytest.raises(TopologyError) as info:
        parse_topology(data, "t.yaml")
    lines = str(info.value).splitlines()
    assert "t.yaml: network.subnet: 169.254.0.0/16 is a link-local network, not usable for " \
        "hosts" in lines
    assert "t.yaml: client.ip: 169.254.0.1 is a link-local address, not usable for a host" \
        in lines
    assert "t.yaml: nodes[0].ip: 169.254.0.2 is a link-local address, not usable for a host" \
        in lines


def test_a_pod_cidr_whose_router_address_is_unusable_is_refused() -> None:
    data = _mutate("cluster.native_routing_cidr", "0.0.0.0/0")
    data["nodes"][0]["pod_cidr"] = "127.1.0.0/24"
    with pytest.raises(TopologyError) as info:
        parse_topology(data, "t.yaml")
    assert "t.yaml: nodes[0].pod_cidr: 127.1.0.0/24 is a loopback network, not usable for " \
        "hosts" in str(info.value).splitlines()


def test_a_udp_service_is_accepted() -> None:
    """The pods echo UDP and the datapath balances it (tests/cli: end to end)."""
    topo = parse_topology(_mutate("services.0.protocol", "UDP"), "t.yaml")
    assert topo.services[0].protocol == "UDP"


# --- service settings: ports, externalTrafficPolicy, the load-balancer mode ------------

TWO_PORTS = [{"name": "http", "node_port": 32000, "target_port": 80},
             {"name": "echo", "protocol": "UDP", "node_port": 32000, "target_port": 80}]


def _ports_form(ports: list[dict[str, Any]]) -> dict[str, Any]:
    data = seed_data()
    svc = data["services"][0]
    for key in ("protocol", "node_port", "target_port"):
        svc.pop(key)
    svc["ports"] = ports
    return data


def test_a_service_may_have_several_ports_tcp_and_udp() -> None:
    t = parse_topology(_ports_form(TWO_PORTS), "t.yaml")
    svc = t.services[0]
    assert [(p.name, p.protocol, p.node_port) for p in svc.all_ports] == [
        ("http", "TCP", 32000), ("echo", "UDP", 32000)]
    assert svc.port("echo").protocol == "UDP"
    assert svc.port(None).name == "http"
    with pytest.raises(KeyError, match="has no port 'dns' \\(ports: http, echo\\)"):
        svc.port("dns")


def test_the_inline_port_is_the_services_one_port() -> None:
    svc = load_topology(SEED).services[0]
    (port,) = svc.all_ports
    assert (port.protocol, port.node_port, port.target_port) == ("TCP", 32000, 80)
    assert svc.external_traffic_policy == "Cluster"


@pytest.mark.parametrize(("data", "expected"), [
    (_mutate("services.0.ports", TWO_PORTS),
     "t.yaml: services[0].ports: give the ports either inline (node_port, target_port) or "
     "as ports, not both"),
    (_mutate("services.0.node_port", _DELETE),
     "t.yaml: services[0].node_port: field required (or give ports)"),
    (_ports_form([*TWO_PORTS, {"name": "web", "node_port": 32000, "target_port": 80}]),
     "t.yaml: services[0].ports[2].node_port: node port is used twice for the same protocol"),
    (_ports_form([TWO_PORTS[0], {**TWO_PORTS[1], "name": "http"}]),
     "t.yaml: services[0].ports[1].name: port name is used twice"),
    (_ports_form([{**TWO_PORTS[0], "target_port": 81}]),
     "t.yaml: services[0].ports[0].target_port: 81 but workload 'cni' listens on 80"),
    (_mutate("services.0.external_traffic_policy", "Nearest"),
     "t.yaml: services[0].external_traffic_policy: Input should be 'Cluster' or 'Local'"),
    (_mutate("load_balancer.maglev_table_size", 16384),
     "t.yaml: load_balancer.maglev_table_size: 16384 is not one of Cilium's sizes: 251, 509, "
     "1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071"),
    (_mutate("load_balancer.mode", "maglev"),
     "t.yaml: load_balancer.mode: Input should be 'snat', 'dsr' or 'hybrid'"),
    (_mutate("cluster.mtu", 1600),
     "t.yaml: cluster.mtu: 1600 is above network.mtu 1500: the links would drop what the "
     "datapath lets through"),
    (_mutate("cluster.mtu", 500),
     "t.yaml: cluster.mtu: Input should be greater than or equal to 576"),
    (_mutate("load_balancer.dsr_icmp_errors", "sometimes"),
     "t.yaml: load_balancer.dsr_icmp_errors: Input should be a valid boolean"),
    (_mutate("load_balancer.fragment_tracking", "partly"),
     "t.yaml: load_balancer.fragment_tracking: Input should be a valid boolean"),
])
def test_service_settings_errors_name_the_field(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(data, "t.yaml")
    assert expected in str(info.value)


@pytest.mark.parametrize(("mode", "tcp", "udp"), [("dsr", "dsr", "dsr"),
                                                  ("snat", "snat", "snat"),
                                                  ("hybrid", "dsr", "snat")])
def test_the_mode_says_how_each_protocol_is_forwarded(mode: str, tcp: str, udp: str) -> None:
    lb = parse_topology(_mutate("load_balancer.mode", mode), "t.yaml").load_balancer
    assert (lb.forwarding("TCP"), lb.forwarding("UDP")) == (tcp, udp)


@pytest.mark.parametrize(("mode", "protocol"), [("dsr", "vxlan"), ("hybrid", "geneve")])
def test_dsr_over_a_tunnel_is_refused_in_ciliums_words(mode: str, protocol: str) -> None:
    data = _mutate("cluster.routing", "tunnel")
    data["cluster"]["tunnel_protocol"] = protocol
    data["load_balancer"]["mode"] = mode
    with pytest.raises(TopologyError) as info:
        parse_topology(data, "tunnel.yaml")
    assert str(info.value) == (
        f'tunnel.yaml: load_balancer.mode: Node Port "{mode}" mode cannot be used with '
        f"tunneling. (cluster.routing: tunnel, tunnel_protocol: {protocol}; "
        "load_balancer.dispatch: opt)")
    data["load_balancer"]["mode"] = "snat"  # SNAT works over a tunnel
    assert parse_topology(data, "tunnel.yaml").cluster.routing == "tunnel"


@pytest.mark.netns
def test_a_refused_tunnel_topology_creates_nothing(tmp_path: Path) -> None:
    """`dsrlab up` on it: one error line naming the file and field, no namespace made."""
    from lab.plumbing import nsutil  # noqa: PLC0415
    from tests.cli.helpers import dsrlab  # noqa: PLC0415

    bad = tmp_path / "tunnel.yaml"
    # hosts of its own names: other tests' labs may come and go meanwhile
    bad.write_text(SEED.read_text().replace("routing: native", "routing: tunnel")
                   .replace("cilium-dsr", "tunnelref"))
    out = dsrlab("up", str(bad))
    assert out.returncode == 1
    assert out.stderr == (f'error: {bad}: load_balancer.mode: Node Port "dsr" mode cannot be '
                          "used with tunneling. (cluster.routing: tunnel, tunnel_protocol: "
                          "vxlan; load_balancer.dispatch: opt)\n")
    assert not [ns for ns in nsutil.list_netns() if "tunnelref" in ns]


def test_the_datapath_is_the_labs_unless_the_topology_says_cilium(tmp_path: Path) -> None:
    assert load_topology(SEED).datapath == "lab"
    path = tmp_path / "on-cilium.yaml"
    path.write_text(yaml.safe_dump({**seed_data(), "datapath": "cilium"}))
    assert load_topology(path).datapath == "cilium"
    path.write_text(yaml.safe_dump({**seed_data(), "datapath": "kind"}))
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(info.value) == (f"{path}: datapath: Input should be 'lab' or 'cilium' "
                               "(got 'kind')")
