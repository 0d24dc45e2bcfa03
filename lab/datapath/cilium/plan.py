"""What Cilium's agent would configure on each node of a topology.

From the lab's :class:`~lab.model.topology.Topology` and the netns
backend's fixed device indices, this says per node: the node's
parameters for the headers (:class:`~lab.datapath.cilium.config.NodeParams`),
its pods (:class:`~lab.datapath.cilium.config.PodParams`), the service
frontends, the ipcache entries and the MACs the wiring must give the
devices (Cilium's headers carry MACs, so they are chosen, not random).

A topology setting this Cilium line cannot do is refused here, with the
version and the reason (:class:`UnsupportedByCilium`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from lab.datapath.cilium import config as cfg
from lab.datapath.cilium.fill import Frontend, Remote
from lab.datapath.cilium.source import CiliumVersion
from lab.datapath.errors import DatapathError
from lab.model.topology import Node, Topology

# the netns backend's device indices in a node's namespace (lab/env/netns)
ETH0_INDEX = 10
CILIUM_HOST_INDEX = 11
CILIUM_NET_INDEX = 12
LXC_FIRST_INDEX = 13
FIRST_LXC_ID = 100
CILIUM_GENEVE_INDEX = 9  # cilium_geneve, when the node has a Geneve tunnel


class UnsupportedByCilium(DatapathError):
    """The topology asks for something this Cilium line does not do (or the lab
    cannot configure it to do)."""


def eth0_mac(ip: IPv4Address) -> bytes:
    """Docker's MAC for a container address (02:42 + the address), as kind's nodes."""
    return b"\x02\x42" + ip.packed


def cilium_host_mac(router: IPv4Address) -> bytes:
    return b"\x02\x00" + router.packed


def cilium_net_mac(router: IPv4Address) -> bytes:
    return b"\x02\x01" + router.packed


def lxc_mac(pod_ip: IPv4Address) -> bytes:
    """The host side of a pod's veth."""
    return b"\x02\x02" + pod_ip.packed


def pod_mac(pod_ip: IPv4Address) -> bytes:
    """The pod's own eth0."""
    return b"\x02\x03" + pod_ip.packed


@dataclass(frozen=True)
class NodePlan:
    node: cfg.NodeParams
    pods: list[cfg.PodParams]
    pod_macs: dict[str, bytes]
    frontends: list[Frontend]
    remotes: list[Remote]
    # with a tunnel: each other node's pod CIDRs (their network address) -> its address,
    # the agent's cilium_tunnel_map
    tunnels: list[tuple[IPv4Address | IPv6Address, IPv4Address]] = field(default_factory=list)


def check_supported(t: Topology, version: CiliumVersion) -> None:
    """Refuse, with the version and the reason, what the lab cannot run on Cilium."""
    lb = t.load_balancer
    problems = []
    if lb.dispatch == "ipip":
        problems.append("loadBalancer.dsrDispatch=ipip is for Cilium's standalone load "
                        "balancer (XDP), not a cluster node")
    if lb.dispatch == "geneve" and not version.at_least(1, 14):
        problems.append("loadBalancer.dsrDispatch=geneve needs Cilium 1.14 or later")
    if lb.option_byte_order != "host":
        problems.append("option_byte_order=network is the lab's own variant; Cilium writes "
                        "the option in host order")
    if problems:
        raise UnsupportedByCilium(f"Cilium {version}: " + "; ".join(problems))


def lb_params(t: Topology) -> cfg.LbParams:
    lb = t.load_balancer
    dispatch: Literal["opt", "geneve"] = "geneve" if lb.dispatch == "geneve" else "opt"
    return cfg.LbParams(mode=lb.mode, algorithm=lb.algorithm,
                        maglev_table_size=lb.maglev_table_size, dispatch=dispatch,
                        fragment_tracking=lb.fragment_tracking,
                        dsr_icmp_errors=lb.dsr_icmp_errors,
                        tunnel_routing=t.cluster.routing == "tunnel")


def node_params(t: Topology, node: Node) -> cfg.NodeParams:
    """The node's parameters; a dual-stack topology's node has its IPv6 too (Cilium's
    ``ipv6.enabled``: ``ROUTER_IP`` is the first address of its IPv6 pod CIDR)."""
    dual = t.dual_stack and node.ip6 is not None
    return cfg.NodeParams(
        name=node.name, ip=node.ip, eth0_ifindex=ETH0_INDEX, eth0_mac=eth0_mac(node.ip),
        cilium_host_ifindex=CILIUM_HOST_INDEX, cilium_host_mac=cilium_host_mac(node.router_ip),
        cilium_net_ifindex=CILIUM_NET_INDEX, cilium_net_mac=cilium_net_mac(node.router_ip),
        router_ip=node.router_ip, pod_cidr=node.pod_cidr, mtu=t.datapath_mtu,
        ip6=node.ip6 if dual else None, router_ip6=node.router_ip6 if dual else None,
        pod_cidr6=node.pod_cidr6 if dual else None,
        encap_ifindex=CILIUM_GENEVE_INDEX if lb_params(t).tunnel_protocol else None)


def _pick(v6: bool, ip: IPv4Address, ip6: IPv6Address | None) -> IPv4Address | IPv6Address:
    if not v6:
        return ip
    if ip6 is None:  # the model numbers every host of a dual-stack lab in both families
        raise DatapathError(f"{ip} has no IPv6 address in a dual-stack topology")
    return ip6


def plan_node(t: Topology, node_name: str) -> NodePlan:
    """Everything the agent would configure on ``node_name``."""
    node = t.node(node_name)
    params = node_params(t, node)
    dual = params.ipv6
    pods = [cfg.PodParams(pod.name, FIRST_LXC_ID + j, pod.ip, LXC_FIRST_INDEX + j,
                          lxc_mac(pod.ip), ip6=pod.ip6 if dual else None)
            for j, pod in enumerate(t.pods_on(node_name))]
    frontends = []
    rev_nat = 1
    for svc in t.services:
        backends = t.backends(svc.name)
        workload = t.workload(svc.selector)
        local = svc.external_traffic_policy == "Local"
        v6s = [False, True] if dual and "IPv6" in svc.ip_families else [False]
        if dual and svc.ip_families == ["IPv6"]:
            v6s = [True]
        for port in svc.all_ports:
            target = port.target_port or workload.port
            for v6 in v6s:  # the agent: one frontend (and rev NAT id) per family
                frontends.append(Frontend(
                    _pick(v6, node.ip, node.ip6), port.node_port,
                    [(_pick(v6, p.ip, p.ip6), target) for p in backends],
                    rev_nat, port.protocol.lower(),
                    [(_pick(v6, p.ip, p.ip6), target) for p in backends if p.node == node_name]
                    if local else None))
                rev_nat += 1
    remotes = []
    for other in t.nodes:
        identity = cfg.HOST_ID if other.name == node_name else cfg.REMOTE_NODE_ID
        remotes += [Remote(other.ip, identity), Remote(other.router_ip, identity)]
        if dual and other.ip6 is not None and other.router_ip6 is not None:
            remotes += [Remote(other.ip6, identity), Remote(other.router_ip6, identity)]
    # as the agent's ipcache listener: a pod on another node has that node as its
    # tunnel endpoint (written here when the node has a tunnel; Geneve dispatch reads it)
    tunnel = params.encap_ifindex is not None
    ips = {n.name: n.ip for n in t.nodes}

    def endpoint(pod_node: str) -> IPv4Address | None:
        return ips[pod_node] if tunnel and pod_node != node_name else None

    remotes += [Remote(p.ip, cfg.POD_IDENTITY, endpoint(p.node)) for p in t.pods]
    if dual:
        remotes += [Remote(p.ip6, cfg.POD_IDENTITY, endpoint(p.node))
                    for p in t.pods if p.ip6 is not None]
    tunnels: list[tuple[IPv4Address | IPv6Address, IPv4Address]] = []
    for other in t.nodes if tunnel else []:
        if other.name != node_name:
            tunnels.append((other.pod_cidr.network_address, other.ip))
            if dual and other.pod_cidr6 is not None:
                tunnels.append((other.pod_cidr6.network_address, other.ip))
    return NodePlan(params, pods, {p.name: pod_mac(p.ip) for p in pods},
                    frontends, remotes, tunnels)
