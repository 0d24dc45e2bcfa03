"""The netns lab's layout: device names, interface indices, sysctls, and the
topology's look-ups computed once per bring-up.

Interface indices are chosen by the lab, so nothing is looked up while wiring
(indices are per namespace; ``lo`` is 1, and 2..9 are left to devices a
kernel module may add to every new namespace).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from lab.model.topology import Pod, Topology
from lab.plumbing import names

BRIDGE_PREFIX = "br-"
NODE_IFNAME = "eth0"
POD_IFNAME = "eth0"
ROUTER_IFNAME = "cilium_host"
ROUTER_PEER_IFNAME = "cilium_net"
TERM_GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long (pod server, stray processes)

BRIDGE_INDEX = 10  # client: the bridge; its port to node i is BRIDGE_INDEX + 1 + i
NODE_ETH0_INDEX = 10
ROUTER_INDEX = 11  # node: cilium_host; cilium_net is ROUTER_INDEX + 1
LXC_FIRST_INDEX = 13  # node: the lxc veth of its j-th pod is LXC_FIRST_INDEX + j
POD_ETH0_INDEX = 10

HOST_SYSCTLS: dict[str, str | int] = {
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    # IPv4 lab: no IPv6 link-local chatter (router solicitations, MLD) in the captures
    "net.ipv6.conf.all.disable_ipv6": 1,
    "net.ipv6.conf.default.disable_ipv6": 1,
    # TCP Fast Open as client and server (a pod's listener turns it on for itself;
    # a client uses it only when asked, e.g. curl --tcp-fastopen)
    "net.ipv4.tcp_fastopen": 3,
    # a link's unsolicited IGMP reports go when it joins its groups (bring-up), not up
    # to 1 s (v3; 10 s for v2) later: in the middle of a run's captures, where they
    # kept the captures from settling (the kernel makes 0 one jiffy)
    "net.ipv4.conf.default.igmpv2_unsolicited_report_interval": 0,
    "net.ipv4.conf.default.igmpv3_unsolicited_report_interval": 0,
}
OPTIONAL_SYSCTLS = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6")
NODE_SYSCTLS: dict[str, str | int] = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
}
# a dual-stack lab: IPv6 on, and on its links nothing the lab did not configure: no
# router advertisements taken or solicited, no autoconfigured addresses, no duplicate
# address detection (the lab's own addresses are added nodad; the link-local ones,
# which neighbour discovery sends from, are usable at once too); addresses are kept
# when a fault takes a link down
DUAL_STACK_SYSCTLS: dict[str, str | int] = {
    "net.ipv6.conf.all.disable_ipv6": 0,
    "net.ipv6.conf.default.disable_ipv6": 0,
    "net.ipv6.conf.all.accept_ra": 0,
    "net.ipv6.conf.default.accept_ra": 0,
    "net.ipv6.conf.default.router_solicitations": 0,
    "net.ipv6.conf.all.autoconf": 0,
    "net.ipv6.conf.default.autoconf": 0,
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    "net.ipv6.conf.all.keep_addr_on_down": 1,
    "net.ipv6.conf.default.keep_addr_on_down": 1,
    # MLD reports as IGMP's above: at bring-up, not a second into a run's captures
    "net.ipv6.conf.default.mldv1_unsolicited_report_interval": 0,
    "net.ipv6.conf.default.mldv2_unsolicited_report_interval": 0,
}
DUAL_STACK_NODE_SYSCTLS: dict[str, str | int] = {
    "net.ipv6.conf.all.forwarding": 1,  # the nodes only; sets every device's too
}


def bridge_ifname(topology: Topology) -> str:
    return names.check_ifname(f"{BRIDGE_PREFIX}{topology.network.name}"[: names.IFNAMSIZ])


def lxc_ifname(pod: Pod) -> str:
    """Cilium-style host-side veth name: ``lxc`` + 8 hex digits of the pod's name."""
    return "lxc" + hashlib.sha1(pod.name.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class _Layout:
    """The topology's look-ups, computed once per bring-up (a 256-node lab has 512 pods)."""

    pods: list[Pod]
    pods_by_node: dict[str, list[Pod]]
    ports: dict[str, int]  # pod -> its workload's port
    routers: dict[str, IPv4Address]  # node -> its router address
    protos: dict[str, tuple[str, ...]]  # pod -> what it serves: tcp (HTTP), udp (echo)
    routers6: dict[str, IPv6Address]  # node -> its IPv6 router address (dual-stack only)

    @property
    def dual_stack(self) -> bool:
        return bool(self.routers6)

    @classmethod
    def of(cls, t: Topology) -> _Layout:
        pods = t.pods
        by_node: dict[str, list[Pod]] = {n.name: [] for n in t.nodes}
        for p in pods:
            by_node[p.node].append(p)
        ports: dict[str, int] = {}
        protos: dict[str, tuple[str, ...]] = {}
        for w in t.workloads:
            # HTTP over TCP always; a UDP echo too when a UDP service selects the workload
            udp = any(s.selector == w.name and p.protocol == "UDP"
                      for s in t.services for p in s.all_ports)
            for p in w.pods:
                ports[p.name] = w.port
                protos[p.name] = ("tcp", "udp") if udp else ("tcp",)
        routers6 = {n.name: n.router_ip6 for n in t.nodes if n.router_ip6 is not None} \
            if t.dual_stack else {}
        return cls(pods, by_node, ports, {n.name: n.router_ip for n in t.nodes}, protos,
                   routers6)
