"""``dsrlab datapath run --datapath cilium``: frames through Cilium's own programs.

The same contract as :class:`lab.datapath.runner.DatapathRunner` (a scratch
namespace, :meth:`CiliumRunner.run` one frame, the same
:class:`~lab.datapath.runner.PacketResult`), with Cilium's objects built for
a node that the run's service and backends describe:

``lb``
    a node whose address is the service's: every frame goes through
    ``cil_from_netdev`` on eth0 (the service and its backends programmed as
    the agent would, each backend reachable through eth0 with a resolved
    neighbour).
``backend``
    a node whose pods are the backends (``bpf_lxc`` per pod). A frame from
    the network goes through ``cil_from_netdev``; when Cilium passes it to
    the stack (``ok``) and it is addressed to a local pod, it goes on
    through ``cil_from_host`` (the stack routes a pod's traffic out of
    ``cilium_host`` in Cilium's legacy host routing, and there Cilium
    delivers it: in 1.13 that is where the pod's policy program learns the
    service from the option). A frame from a backend (its reply) goes
    through that pod's ``cil_from_container``, then, when passed on,
    through ``cil_to_netdev`` on eth0 (where 1.16 rewrites the reply). The
    result's ``program`` names the whole chain, e.g.
    ``cil_from_container>cil_to_netdev``.

An IPv6 service and backends make the node dual-stack (IPv6 addresses on eth0
and cilium_host, the IPv6 frontend in ``cilium_lb6_*``): Cilium's own
``tc_nodeport_lb6_dsr_lb`` vector comes out of ``cil_from_netdev`` byte for
byte after the Ethernet header. ``dispatch="geneve"`` (1.14+) gives the node
a tunnel (``ENCAP_IFINDEX``, ``bpf_overlay``): the LB redirects the DNATed
SYN there; the tunnel key and the Geneve option are skb metadata, which a
test run does not return (Cilium's ``TRACE_TO_OVERLAY`` notification says
where it went).

What this is not: the kernel between two programs (routing, neighbour
resolution, MAC rewriting) is not emulated beyond that rule; a live lab
(``dsrlab run --datapath cilium``) has the real kernel in between.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from types import TracebackType
from typing import Literal

from lab.datapath.cilium import config as cfg
from lab.datapath.cilium import fill, plan
from lab.datapath.cilium.build import prepared_tree
from lab.datapath.cilium.events import CiliumEvent, EventDecoder, EventReader, Names
from lab.datapath.cilium.node import LoadedNode, load_plan
from lab.datapath.cilium.source import CiliumSource
from lab.datapath.errors import DatapathError, TestRunRefused
from lab.datapath.runner import (
    NEIGH_PERMANENT,
    NETNS_HOST,
    REJECTED,
    RT_SCOPE_LINK,
    PacketResult,
    RunConfig,
    interface_names,
    ipv4_source,
    json_verdict,
)
from lab.datapath.tc import current_netns_inode
from lab.datapath.testrun import ETH_HLEN, run_program
from lab.plumbing import nsutil, rtnl
from lab.plumbing.names import docker_mac, netns_name, new_run_id

# the node's own addresses when the run does not give them (RFC 2544's benchmark range)
ROUTER_IP = IPv4Address("198.18.0.1")
BACKEND_NODE_IP = IPv4Address("198.18.0.2")
NODE_NAME = "dprun"
Dispatch = Literal["opt", "geneve"]
# an IPv6 run's node (the documentation prefix): cilium_host's address, the
# backend node's address, its pod CIDR; pods of an IPv6 run get IPv4 addresses
# from POD_IP4_BASE (Cilium's pods always have one)
ROUTER_IP6 = IPv6Address("2001:db8:18::1")
BACKEND_NODE_IP6 = IPv6Address("2001:db8:18::2")
POD_CIDR6 = IPv6Network("2001:db8:18::/64")
POD_IP4_BASE = IPv4Address("198.18.0.10")
ETH_P_IPV6 = b"\x86\xdd"
IPV6_HLEN = 40


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _address(text: str) -> IPv4Address | IPv6Address:
    return ipaddress.ip_address(text)


def neighbour_mac(ip: IPv4Address | IPv6Address) -> str:
    """The MAC the run gives a backend beyond eth0 (Docker's for IPv4; ``02:42`` and the
    last four bytes for IPv6)."""
    if ip.version == 4:
        return docker_mac(ip)
    return _mac(b"\x02\x42" + ip.packed[-4:])


def run_plan(config: RunConfig, dispatch: Dispatch = "opt") -> plan.NodePlan:
    """The node the run's role, service and backends describe, as the agent sees it.

    Geneve dispatch gives the node a tunnel device (``ENCAP_IFINDEX``) and each
    backend :data:`BACKEND_NODE_IP` as its tunnel endpoint in the ipcache.

    An IPv6 service (and its IPv6 backends) makes a dual-stack node: the LB node's
    IPv6 address is the service's, the backend node's :data:`BACKEND_NODE_IP6`."""
    service = _address(config.service.ip)
    backends = [(_address(b.ip), b.port) for b in config.backends]
    # (RunConfig holds the service and its backends to one family)
    v6 = service.version == 6
    lb = config.program == "lb"
    node_ip = IPv4Address(config.service.ip) if lb and not v6 else BACKEND_NODE_IP
    node_ip6: IPv6Address | None = None
    if isinstance(service, IPv6Address):
        node_ip6 = service if lb else BACKEND_NODE_IP6
    own = node_ip6 if v6 else node_ip
    if config.program == "backend" and own in {ip for ip, _ in backends}:
        raise DatapathError(f"{own} is the lab's backend node address; use another backend")
    # eth0's MAC is the lab runner's for the same service (runner.node_mac), so a diff
    # of the two datapaths compares their work, not the namespaces' addresses
    eth0_mac = plan.eth0_mac(node_ip) if node_ip6 is None or not lb else \
        b"\x02\x42" + node_ip6.packed[-4:]
    node = cfg.NodeParams(
        name=NODE_NAME, ip=node_ip, eth0_ifindex=plan.ETH0_INDEX,
        eth0_mac=eth0_mac, cilium_host_ifindex=plan.CILIUM_HOST_INDEX,
        cilium_host_mac=plan.cilium_host_mac(ROUTER_IP),
        cilium_net_ifindex=plan.CILIUM_NET_INDEX, cilium_net_mac=plan.cilium_net_mac(ROUTER_IP),
        router_ip=ROUTER_IP, pod_cidr=IPv4Network("198.18.0.0/24"), mtu=config.mtu or 1500,
        ip6=node_ip6, router_ip6=ROUTER_IP6 if v6 else None, pod_cidr6=POD_CIDR6 if v6 else None,
        encap_ifindex=plan.CILIUM_GENEVE_INDEX if dispatch == "geneve" else None)
    pods: list[cfg.PodParams] = []
    if config.program == "backend":
        for j, ip in enumerate(dict.fromkeys(ip for ip, _ in backends)):
            if isinstance(ip, IPv6Address):
                ip4 = POD_IP4_BASE + j
                pods.append(cfg.PodParams(f"pod{j}", plan.FIRST_LXC_ID + j, ip4,
                                          plan.LXC_FIRST_INDEX + j, plan.lxc_mac(ip4), ip6=ip))
            else:
                pods.append(cfg.PodParams(f"pod{j}", plan.FIRST_LXC_ID + j, ip,
                                          plan.LXC_FIRST_INDEX + j, plan.lxc_mac(ip)))
    frontends = [fill.Frontend(service, config.service.port, backends, 1)]
    remotes = [fill.Remote(node_ip, cfg.HOST_ID), fill.Remote(ROUTER_IP, cfg.HOST_ID)]
    if node_ip6 is not None:
        remotes += [fill.Remote(node_ip6, cfg.HOST_ID), fill.Remote(ROUTER_IP6, cfg.HOST_ID)]
    tunnel = BACKEND_NODE_IP if dispatch == "geneve" and lb else None
    remotes += [fill.Remote(ip, cfg.POD_IDENTITY, tunnel)
                for ip in dict.fromkeys(ip for ip, _ in backends)]
    return plan.NodePlan(node, pods, {p.name: plan.pod_mac(p.ip) for p in pods}, frontends,
                         remotes)


def setup_namespace(name: str, p: plan.NodePlan, config: RunConfig) -> None:
    """eth0, cilium_host/cilium_net at the indices of the headers; each backend reachable
    (lb: a /32 on eth0 with a permanent neighbour; backend: an lxc veth per pod, and
    every other address on eth0's link, where the clients are)."""
    node = p.node
    mtu = config.mtu or 1500
    nsutil.write_sysctl(name, "net.ipv4.ip_forward", 1)
    if node.ip6 is not None:  # Cilium's IPv6 FIB lookups need forwarding; no DAD wait
        nsutil.write_sysctl(name, "net.ipv6.conf.all.forwarding", 1)
        nsutil.write_sysctl(name, "net.ipv6.conf.default.accept_dad", 0)
    with rtnl.Rtnl.open(name) as rt:
        rt.set_up(rtnl.LOOPBACK_INDEX)
        rt.add_veth(rtnl.LinkSpec("eth0", node.eth0_ifindex, mac=_mac(node.eth0_mac), mtu=mtu),
                    rtnl.LinkSpec("peer0", node.eth0_ifindex + 40, mtu=mtu))
        rt.add_veth(rtnl.LinkSpec("cilium_host", node.cilium_host_ifindex,
                                  mac=_mac(node.cilium_host_mac)),
                    rtnl.LinkSpec("cilium_net", node.cilium_net_ifindex,
                                  mac=_mac(node.cilium_net_mac)))
        for j, pod in enumerate(p.pods):
            rt.add_veth(rtnl.LinkSpec(f"lxc{j}", pod.lxc_ifindex, mac=_mac(pod.lxc_mac)),
                        rtnl.LinkSpec(f"lxcpeer{j}", pod.lxc_ifindex + 40,
                                      mac=_mac(p.pod_macs[pod.name])))
        rt.add_address(node.eth0_ifindex, node.ip, 32)
        rt.add_address(node.cilium_host_ifindex, node.router_ip, 32)
        rt.commit()
    local = {str(pod.ip) for pod in p.pods} | {str(pod.ip6) for pod in p.pods if pod.ip6}
    with nsutil.open_iproute(name) as ipr:
        if node.ip6 is not None and node.router_ip6 is not None:
            ipr.addr("add", index=node.eth0_ifindex, address=str(node.ip6), prefixlen=128,
                     family=socket.AF_INET6)
            ipr.addr("add", index=node.cilium_host_ifindex, address=str(node.router_ip6),
                     prefixlen=128, family=socket.AF_INET6)
        if config.program == "backend":
            # the clients are on eth0's link: 1.16 looks the reply's route up in cil_to_netdev
            ipr.route("add", dst="0.0.0.0", dst_len=0, oif=node.eth0_ifindex,
                      scope=RT_SCOPE_LINK)
            if node.ip6 is not None:
                ipr.route("add", dst="::", dst_len=0, oif=node.eth0_ifindex,
                          family=socket.AF_INET6)
        for fe in p.frontends:
            for ip, _ in fe.backends:
                if str(ip) in local or str(ip) in (str(node.ip), str(node.ip6)):
                    continue
                family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
                ipr.route("add", dst=str(ip), dst_len=ip.max_prefixlen, oif=node.eth0_ifindex,
                          scope=RT_SCOPE_LINK if ip.version == 4 else 0, family=family)
                ipr.neigh("add", dst=str(ip), lladdr=neighbour_mac(ip),
                          ifindex=node.eth0_ifindex, state=NEIGH_PERMANENT, family=family)


def ipv6_address(frame: bytes, offset: int) -> str | None:
    """The IPv6 address at ``offset`` of the IPv6 header (8: source, 24: destination)
    of an untagged Ethernet/IPv6 frame, else None."""
    if len(frame) < ETH_HLEN + IPV6_HLEN or frame[12:14] != ETH_P_IPV6 or frame[14] >> 4 != 6:
        return None
    start = ETH_HLEN + offset
    return str(IPv6Address(frame[start:start + 16]))


class CiliumRunner:
    """A scratch namespace and one node's Cilium objects; :meth:`run` a frame.

    ``events`` collects Cilium's drop and trace notifications as they come.
    """

    def __init__(self, config: RunConfig, source: CiliumSource, *,
                 dispatch: Dispatch = "opt") -> None:
        if config.repeat > 1:
            raise DatapathError("--repeat is for the lab's datapath (bench/datapath.py times "
                                "Cilium's programs)")
        if config.seed is not None:
            raise DatapathError("--seed is the lab's datapath's; Cilium chooses backends its "
                                "own way")
        self.config = config
        self.source = source
        if dispatch == "geneve" and not source.version.at_least(1, 14):
            raise DatapathError(f"Cilium {source.version}: Geneve dispatch needs 1.14 or later")
        self.dispatch = dispatch
        self.plan = run_plan(config, dispatch)
        self.netns = netns_name(new_run_id(), NETNS_HOST)
        self.ifnames: dict[int, str] = {}
        self.events: list[CiliumEvent] = []
        self._stack = contextlib.ExitStack()
        self._node: LoadedNode | None = None
        self._reader: EventReader | None = None
        self._pods_by_ip = {str(pod.ip): pod for pod in self.plan.pods}
        self._pods_by_ip |= {str(pod.ip6): pod for pod in self.plan.pods if pod.ip6 is not None}
        self._next_index = 0

    def __enter__(self) -> CiliumRunner:
        try:
            self._stack.enter_context(nsutil.scratch(self.netns))
            setup_namespace(self.netns, self.plan, self.config)
            self.ifnames = interface_names(self.netns)
            self._node = self._stack.enter_context(load_plan(self.source, self.plan, cfg.LbParams(
                fragment_tracking=self.config.fragment_tracking, dispatch=self.dispatch)))
            names = Names.from_tree(prepared_tree(self.source))
            decoder = EventDecoder(NODE_NAME, names, ifnames=self.ifnames)
            self._reader = self._stack.enter_context(EventReader(
                self._node.node.map_fd("cilium_events"), decoder, self.events.append,
                threaded=False))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    @property
    def node(self) -> LoadedNode:
        if self._node is None:
            raise DatapathError("the runner is not set up (use it as a context manager)")
        return self._node

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        with nsutil.in_netns(self.netns):
            yield

    def counters(self) -> dict[str, int]:
        """Drop reasons seen so far (Cilium's names), as the lab's datapath counts its own."""
        if self._reader is not None:
            self._reader.flush()
        out: dict[str, int] = {}
        for e in self.events:
            if e.kind == "drop":
                out[e.what] = out.get(e.what, 0) + 1
        return out

    def run(self, frame: bytes, index: int | None = None) -> PacketResult:
        """Run one frame through its chain (the result carries the frame fed, as
        :class:`~lab.datapath.runner.DatapathRunner`'s does)."""
        if index is None:
            index = self._next_index
        self._next_index = index + 1
        if nsutil.netns_inode(self.netns) != current_netns_inode():
            with self.inside():
                return replace(self._run(frame, index), data_in=frame)
        return replace(self._run(frame, index), data_in=frame)

    def _chain(self, frame: bytes) -> list[tuple[str, str, int]]:
        """(role, program, ctx ifindex) in order for this frame."""
        node = self.plan.node
        src = ipv4_source(frame) or ipv6_address(frame, 8)
        if self.config.program == "backend" and src in self._pods_by_ip:
            pod = self._pods_by_ip[src]
            return [(pod.name, "cil_from_container", pod.lxc_ifindex),
                    ("host", "cil_to_netdev", node.eth0_ifindex)]
        chain = [("host", "cil_from_netdev", node.eth0_ifindex)]
        if self.config.program == "backend":
            chain.append(("host", "cil_from_host", node.cilium_host_ifindex))
        return chain

    def _dst_is_local_pod(self, frame: bytes) -> bool:
        dst6 = ipv6_address(frame, 24)
        if dst6 is not None:
            return dst6 in self._pods_by_ip
        if len(frame) < ETH_HLEN + 20 or frame[12:14] != b"\x08\x00":
            return False
        return str(ipaddress.IPv4Address(frame[30:34])) in self._pods_by_ip

    def _run(self, frame: bytes, index: int) -> PacketResult:
        chain = self._chain(frame)
        if len(frame) < ETH_HLEN:
            return PacketResult(index, chain[0][1], REJECTED, len(frame),
                                reason="frame_too_short")
        before = len(self.events)
        ran: list[str] = []
        data = frame
        result = None
        for step, (role, program, ifindex) in enumerate(chain):
            if step and not (result is not None and result.verdict == "ok"):
                break
            if program == "cil_from_host" and not self._dst_is_local_pod(data):
                break
            fd = self.node.node.objects[role].program_fd(program)
            try:
                result = run_program(fd, data, ingress_ifindex=ifindex, ifindex=ifindex)
            except TestRunRefused:
                return PacketResult(index, ">".join([*ran, program]), REJECTED, len(frame),
                                    reason="kernel_refused")
            ran.append(program)
            data = result.data
        assert result is not None
        verdict = json_verdict(result.verdict)
        reason = None
        if verdict == "drop":
            reason = self._drop_reason(before)
        return PacketResult(index=index, program=">".join(ran), verdict=verdict,
                            length=len(data), reason=reason, data=data)

    def _drop_reason(self, before: int) -> str | None:
        """The reason of the drop notification this frame caused, if it came."""
        if self._reader is not None:
            self._reader.flush()
        for e in self.events[before:]:
            if e.kind == "drop":
                return e.what
        return None


__all__ = ["CiliumRunner", "run_plan"]
