"""The per-host wiring of a netns lab, all over netlink from this process, no
``ip`` commands:

* the client namespace holds the bridge (kind's docker bridge) with the
  client's address; each node's ``eth0`` is a veth whose peer is a port of
  that bridge;
* a pod is a namespace behind its node, as Cilium wires it: ``eth0`` with a
  /32 address and a default route via the node's router address (held by
  the ``cilium_host``/``cilium_net`` veth pair), and a host-side ``lxc…``
  veth with a /32 route;
* every node routes the other nodes' pod CIDRs via their node addresses
  (``autoDirectNodeRoutes``).

A dual-stack topology (``network.subnet6``) is wired in IPv6 the same way,
beside IPv4: the client's, nodes' and pods' addresses (added ``nodad``: usable
at once), the nodes' IPv6 router addresses, routes to the other nodes'
``pod_cidr6`` and, with ``routes_to_pods``, the client's; forwarding on the
nodes only. A pod's IPv6 router is a permanent neighbour behind its ``lxc``
veth: IPv6 neighbour discovery, unlike ARP, answers only for addresses of the
link asked on, and the router's address is on ``cilium_host`` (Cilium answers
it from its programs on the ``lxc`` veth).

Nothing is created in the root namespace: veth peers are created straight
into their target namespaces, and every netlink socket is opened inside the
namespace it configures. A namespace's sockets and sysctls are made while the
thread is in it for its creation (no second ``setns``), and each namespace's
links, addresses and routes go to the kernel as one netlink batch
(:class:`lab.plumbing.rtnl.Rtnl`).
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, field

from lab.datapath.cilium import plan as cilium_plan
from lab.env.base import BackendError
from lab.env.netns.layout import (
    BRIDGE_INDEX,
    DUAL_STACK_NODE_SYSCTLS,
    DUAL_STACK_SYSCTLS,
    HOST_SYSCTLS,
    LXC_FIRST_INDEX,
    NODE_ETH0_INDEX,
    NODE_IFNAME,
    NODE_SYSCTLS,
    OPTIONAL_SYSCTLS,
    POD_ETH0_INDEX,
    POD_IFNAME,
    ROUTER_IFNAME,
    ROUTER_INDEX,
    ROUTER_PEER_IFNAME,
    TERM_GRACE_S,
    _Layout,
    bridge_ifname,
    lxc_ifname,
)
from lab.model.topology import Node, Pod, Topology
from lab.plumbing import names, nsutil, procs, rtnl


@dataclass
class _Wiring:
    """What the lab holds of one namespace while wiring it: a batched netlink
    socket there, the namespace itself (for veth peers created into it) and,
    for a pod, its listening sockets (made inside, bound once its address is up)."""

    rtnl: rtnl.Rtnl
    fd: int
    listeners: list[tuple[socket.socket, str]] = field(default_factory=list)

    def close(self) -> None:
        self.rtnl.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        for sock, _ in self.listeners:
            sock.close()


def host_sysctls(*, dual_stack: bool = False) -> nsutil.SysctlPlan:
    """Every host's sysctls; a dual-stack lab's turn IPv6 on (and keep it quiet)."""
    if dual_stack:
        return nsutil.SysctlPlan({**HOST_SYSCTLS, **DUAL_STACK_SYSCTLS})
    return nsutil.SysctlPlan(HOST_SYSCTLS, optional=OPTIONAL_SYSCTLS)


def node_sysctls(*, dual_stack: bool = False) -> nsutil.SysctlPlan:
    """A node's: a host's, and forwarding (IPv6's too in a dual-stack lab)."""
    if dual_stack:
        return nsutil.SysctlPlan({**HOST_SYSCTLS, **NODE_SYSCTLS, **DUAL_STACK_SYSCTLS,
                                  **DUAL_STACK_NODE_SYSCTLS})
    return nsutil.SysctlPlan({**HOST_SYSCTLS, **NODE_SYSCTLS}, optional=OPTIONAL_SYSCTLS)


def _new_host(ns: str, sysctls: nsutil.SysctlPlan, protos: tuple[str, ...],
              families: tuple[int, ...] = (socket.AF_INET,)) -> _Wiring:
    """Runs inside the new namespace: sysctls, a netlink socket, the pod's sockets
    (one per protocol and address family)."""
    sysctls.apply_here()
    wiring = _Wiring(rtnl.Rtnl.here(ns), -1)
    try:
        wiring.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        for family in families:
            for proto in protos:
                kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                wiring.listeners.append((socket.socket(family, kind), proto))
    except BaseException:
        wiring.close()
        raise
    return wiring


def _remove_namespaces(created: list[str]) -> None:
    """Stop whatever still runs in the namespaces (a capture or server whose own stop
    was cut short), then remove them: a process would keep a removed namespace
    alive, out of sight of ``dsrlab clean``."""
    try:
        found = nsutil.pids_in_each(created)
    except (OSError, nsutil.NetnsError):
        found = {}
    stray = [pid for pids in found.values() for pid in pids]
    if stray:
        procs.stop(stray, grace=TERM_GRACE_S)
    errors = nsutil.remove_all(reversed(created))
    created.clear()
    if errors:
        raise BackendError("namespaces not removed: " + "; ".join(errors))


def wire_client(t: Topology, wiring: dict[str, _Wiring], *, checksum_offload: bool,
                where: str) -> None:
    """The client's bridge and address, and every node's ``eth0`` (a veth whose
    peer is a bridge port); ``where`` is the client's namespace (for errors)."""
    mtu = t.network.mtu
    br = bridge_ifname(t)
    rt = wiring[t.client.name].rtnl
    rt.set_up(rtnl.LOOPBACK_INDEX)
    rt.add_bridge(rtnl.LinkSpec(br, BRIDGE_INDEX, mac=names.docker_mac(t.client.ip),
                                  mtu=mtu))
    rt.add_address(BRIDGE_INDEX, t.client.ip, t.network.subnet.prefixlen)
    subnet6 = t.network.subnet6
    if subnet6 is not None and t.client.ip6 is not None:
        rt.add_address(BRIDGE_INDEX, t.client.ip6, subnet6.prefixlen)
    for i, node in enumerate(t.nodes):
        rt.add_veth(
            rtnl.LinkSpec(f"veth{i}", BRIDGE_INDEX + 1 + i, mtu=mtu, master=BRIDGE_INDEX),
            rtnl.LinkSpec(NODE_IFNAME, NODE_ETH0_INDEX, mac=names.docker_mac(node.ip),
                            mtu=mtu, netns_fd=wiring[node.name].fd))
    if t.client.routes_to_pods:
        rt.set_up(BRIDGE_INDEX)  # (up before its routes; the bring-up sets it up anyway)
        for node in t.nodes:
            rt.add_route(str(node.pod_cidr), BRIDGE_INDEX, gateway=node.ip)
            if node.pod_cidr6 is not None and node.ip6 is not None:
                rt.add_route(node.pod_cidr6, BRIDGE_INDEX, gateway=node.ip6)
    rt.commit()
    if not checksum_offload:
        nsutil.set_tx_checksum_via(rt.sock, br, False, where=where)


def node_routes(t: Topology) -> dict[str, list[rtnl.PreparedRoute]]:
    """Each node's pod CIDR via its address (and its IPv6 pod CIDR via its IPv6
    address, in a dual-stack lab), prepared once for every other node."""
    routes: dict[str, list[rtnl.PreparedRoute]] = {}
    for n in t.nodes:
        routes[n.name] = [rtnl.prepare_route(n.pod_cidr, NODE_ETH0_INDEX, gateway=n.ip)]
        if n.pod_cidr6 is not None and n.ip6 is not None:
            routes[n.name].append(rtnl.prepare_route(n.pod_cidr6, NODE_ETH0_INDEX,
                                                     gateway=n.ip6))
    return routes


def lxc_mac(pod: Pod, t: Topology, *, agent: bool) -> str | None:
    """The host side of a pod's veth: Cilium's MAC for the agent's wiring, and in a
    dual-stack lab (its pod names it as its IPv6 router's); else the kernel's choice."""
    return _mac(cilium_plan.lxc_mac(pod.ip)) if agent or t.dual_stack else None


def wire_node(t: Topology, node: Node, pods: list[Pod], wiring: dict[str, _Wiring],
              routes: dict[str, list[rtnl.PreparedRoute]], *, agent: bool = False) -> None:
    """A node's ``eth0`` address, its router pair, the routes to the other nodes'
    pods, and an ``lxc`` veth to each of its pods (whose ``eth0`` is the peer).

    ``agent``: as Cilium's agent wires a node for its own programs: the MACs its
    headers name, the router pair without ARP, the pod CIDR routed on
    ``cilium_host`` (Cilium delivers to the pods from there) instead of a /32 per
    pod, and the other nodes' addresses resolved ahead."""
    mtu = t.network.mtu
    rt = wiring[node.name].rtnl
    rt.set_up(rtnl.LOOPBACK_INDEX)
    rt.set_up(NODE_ETH0_INDEX)
    rt.add_address(NODE_ETH0_INDEX, node.ip, t.network.subnet.prefixlen)
    subnet6, router6 = t.network.subnet6, node.router_ip6
    if subnet6 is not None and node.ip6 is not None:
        rt.add_address(NODE_ETH0_INDEX, node.ip6, subnet6.prefixlen)
    # Cilium's cilium_host/cilium_net veth pair holds the node's router address
    host_mac = _mac(cilium_plan.cilium_host_mac(node.router_ip)) if agent else None
    net_mac = _mac(cilium_plan.cilium_net_mac(node.router_ip)) if agent else None
    rt.add_veth(rtnl.LinkSpec(ROUTER_IFNAME, ROUTER_INDEX, mac=host_mac, noarp=agent),
                rtnl.LinkSpec(ROUTER_PEER_IFNAME, ROUTER_INDEX + 1, mac=net_mac, noarp=agent))
    rt.set_up(ROUTER_INDEX + 1)
    rt.add_address(ROUTER_INDEX, node.router_ip, 32)
    if router6 is not None:
        rt.add_address(ROUTER_INDEX, router6, 128)
    # autoDirectNodeRoutes: the other nodes' pod CIDRs via their addresses
    rt.add_routes([r for name, rs in routes.items() if name != node.name for r in rs])
    for j, pod in enumerate(pods):
        lxc = LXC_FIRST_INDEX + j
        host_mac_of_pod = lxc_mac(pod, t, agent=agent)
        pod_mac = _mac(cilium_plan.pod_mac(pod.ip)) if agent else None
        rt.add_veth(rtnl.LinkSpec(lxc_ifname(pod), lxc, mtu=mtu, mac=host_mac_of_pod),
                    rtnl.LinkSpec(POD_IFNAME, POD_ETH0_INDEX, mtu=mtu, mac=pod_mac,
                                    netns_fd=wiring[pod.name].fd))
        if not agent:
            rt.add_route(f"{pod.ip}/32", lxc, scope=rtnl.SCOPE_LINK)
            if pod.ip6 is not None:
                rt.add_route(f"{pod.ip6}/128", lxc)
    if agent:
        rt.add_route(node.pod_cidr, ROUTER_INDEX, scope=rtnl.SCOPE_LINK, source=node.router_ip)
        if node.pod_cidr6 is not None and router6 is not None:
            rt.add_route(node.pod_cidr6, ROUTER_INDEX, source=router6)
        for other in t.nodes:
            if other.name != node.name:
                rt.add_neighbour(NODE_ETH0_INDEX, other.ip, names.docker_mac(other.ip))
                if other.ip6 is not None:
                    rt.add_neighbour(NODE_ETH0_INDEX, other.ip6, names.docker_mac(other.ip))
    rt.commit()


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def wire_pod(pod: Pod, layout: _Layout, w: _Wiring, *, checksum_offload: bool,
             where: str, router_mac: str | None = None) -> None:
    """A pod's address and routes (via its node's router), then its listening
    sockets bound to its address; ``where`` is its namespace (for errors). In a
    dual-stack lab the same in IPv6, the router resolved ahead to ``router_mac``
    (the host side of the pod's veth, :func:`lxc_mac`)."""
    router = layout.routers[pod.node]
    router6 = layout.routers6.get(pod.node)
    rt = w.rtnl
    rt.set_up(rtnl.LOOPBACK_INDEX)
    rt.set_up(POD_ETH0_INDEX)
    rt.add_address(POD_ETH0_INDEX, pod.ip, 32)
    rt.add_route(f"{router}/32", POD_ETH0_INDEX, scope=rtnl.SCOPE_LINK)
    rt.add_route("0.0.0.0/0", POD_ETH0_INDEX, gateway=router)
    if pod.ip6 is not None and router6 is not None:
        rt.add_address(POD_ETH0_INDEX, pod.ip6, 128)
        rt.add_route(f"{router6}/128", POD_ETH0_INDEX)
        rt.add_route("::/0", POD_ETH0_INDEX, gateway=router6)
        if router_mac is not None:
            rt.add_neighbour(POD_ETH0_INDEX, router6, router_mac)
    rt.commit()
    if not checksum_offload:
        nsutil.set_tx_checksum_via(rt.sock, POD_IFNAME, False, where=where)
    port = layout.ports[pod.name]
    for sock, proto in w.listeners:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sock.family == socket.AF_INET6:
            # its own family only; bound even while the kernel still readies the address
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
            sock.bind((str(pod.ip6), port))
        else:
            sock.bind((str(pod.ip), port))
        if proto == "tcp":
            sock.listen(128)


_IP_FREEBIND = 15  # linux/in.h (socket.IP_FREEBIND is not in every Python); IPv6 too
