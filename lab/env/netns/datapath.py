"""The netns lab's node datapaths, behind one contract (:class:`NodeDatapaths`).

The backend starts loading a topology's datapath before it wires the network,
attaches one node's once that node is wired (in its namespace), and closes it
all when the lab goes down. :class:`LabDatapaths` is the lab's own DSR
datapath (``dsr.c``) on each node's ``eth0`` (tc ingress + egress): the
nodes' objects load (verifier, maps) and fill their maps on worker threads
while the network is wired.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from lab.capture.dpevents import DatapathEvent, DatapathEvents
from lab.datapath import (
    BackendEntry,
    DatapathError,
    DatapathObject,
    build_object,
    maglev,
    tunnel,
)
from lab.datapath.tc import TcAttachment
from lab.env.netns import objpool
from lab.env.netns.layout import NODE_ETH0_INDEX
from lab.errors import LabError
from lab.model.topology import IPFamily, Node, ServicePort, Topology
from lab.plumbing import nsutil


class NodeDatapaths(Protocol):
    """What the netns backend asks of a datapath for the lab's nodes.

    An instance as handed to the backend is a recipe: :meth:`start` returns the
    one lab's own loading (a fresh object), which then serves that lab alone.
    """

    # wire the nodes as Cilium's agent does (the devices' MACs its headers name, the
    # cilium_host pair without ARP, pod CIDRs on cilium_host, other nodes resolved)
    agent_wiring: bool

    def start(self, topology: Topology) -> NodeDatapaths:
        """Start loading for ``topology`` (before the network is wired); return the
        started loading, whose :meth:`close` undoes it."""
        ...

    def attach(self, node: Node, netns: str) -> DatapathObject | None:
        """Attach ``node``'s datapath once the node is wired, inside ``netns``;
        return the object the lab exposes (``lab.datapath[node]``), if any."""
        ...

    def detach(self, node: Node, netns: str) -> None:
        """Take ``node``'s datapath off its links, inside ``netns``, before the lab
        removes the namespace (a lab taken down, not one left up)."""
        ...

    def keep_fds(self) -> list[int]:
        """The descriptors that must outlive this process when the lab is left up."""
        ...

    def describe(self) -> dict[str, str]:
        """What runs on the nodes, for the run's manifest: the fields of its
        ``datapath`` part (:class:`lab.capture.manifest.ManifestDatapath`), e.g.
        ``{"name": "lab"}``."""
        ...

    def open_events(self) -> None:
        """Start keeping what the datapath says (a run's captures start)."""
        ...

    def take_events(self) -> DatapathEvents:
        """What it said since :meth:`open_events`: its drops, by reason and hop."""
        ...

    def close(self) -> None:
        """Close everything loaded (attached or not); the tc filters stay with the links."""
        ...


def _map_sizes(t: Topology) -> dict[str, int]:
    """Map sizes for a lab node: a lab's flows and backends are few (the object's
    defaults, 65,536 entries each, cost ~15 MB and ~6 ms of kernel time a node)."""
    ports = [p for s in t.services for p in s.all_ports]
    backends = sum(len(t.backends(s.name)) * len(s.all_ports) for s in t.services)
    tables = len(ports) if t.load_balancer.algorithm == "maglev" else 0
    return {"lb_ct": 4096, "dsr_revnat": 4096, "lb_snat": 4096,
            "lb_backends": max(1024, 2 * backends),
            "lb_maglev": max(1, tables) * t.load_balancer.maglev_table_size,
            # the IPv6 twins (every object has them; a dual-stack service fills them)
            "lb6_ct": 4096, "dsr6_revnat": 4096, "lb6_backends": max(1024, 2 * backends)}


@dataclass(frozen=True)
class _Frontend:
    """One service port as one node's datapath holds it."""

    port: ServicePort
    backends: list[BackendEntry]  # in slot order (Maglev's table order when it has one)
    forwarding: str  # "dsr" or "snat" for remote backends
    local_only: bool
    maglev: list[int] | None  # the table: indexes into backends


def _frontends(t: Topology, node: Node, family: IPFamily = "IPv4") -> list[_Frontend]:
    """Every service port of ``family`` (its ``ip_families``) with the backends ``node``
    sends it to, at their address of that family: all of them, or with
    externalTrafficPolicy=Local its own only; with Maglev, the table over them."""
    lb = t.load_balancer
    out = []
    for svc in t.services:
        if family not in svc.ip_families:
            continue
        local_only = svc.external_traffic_policy == "Local"
        pods = t.backends_from(svc.name, node.name)
        for port in svc.all_ports:
            addrs = [(p, str(p.ip if family == "IPv4" else p.ip6)) for p in pods]
            entries = {(f"{ip}:" if family == "IPv4" else f"[{ip}]:") + str(port.target_port):
                       BackendEntry(ip, port.target_port, local=p.node == node.name)
                       for p, ip in addrs}
            table = None
            if lb.algorithm == "maglev" and entries:
                built = maglev.build_table(list(entries), lb.maglev_table_size,
                                           lb.maglev_hash_seed)
                order = list(built.backends)
                table = list(built.entries)
            else:
                order = list(entries)
            out.append(_Frontend(port, [entries[n] for n in order],
                                 lb.forwarding(port.protocol), local_only, table))
    return out


IPV6_MAPS_MISSING = "IPv6 services need the lab datapath's IPv6 maps"


def add_ipv6_services(dp: DatapathObject, t: Topology, node: Node) -> None:
    """``node``'s IPv6 frontends into its datapath's IPv6 maps: each dual-stack service
    port at the node's IPv6 address, to the pods' IPv6 addresses (an IPv6 address given
    to ``add_service`` goes to the IPv6 maps; remote backends get the Destination
    Options header). A :class:`LabError` when the object has no IPv6 maps, or for
    SNAT forwarding, which the lab's datapath does in IPv4 only."""
    try:
        dp.map("lb6_services")
    except DatapathError:
        raise LabError(IPV6_MAPS_MISSING) from None
    assert node.ip6 is not None  # a dual-stack topology numbers every node in IPv6
    for f in _frontends(t, node, "IPv6"):
        if f.forwarding == "snat":
            raise LabError(f"{t.source or t.name}: load_balancer.mode: {t.load_balancer.mode} "
                           f"forwards {f.port.protocol} by SNAT, which the lab's datapath "
                           "does in IPv4 only; an IPv6 service needs dsr")
        dp.add_service(vip=str(node.ip6), port=f.port.node_port,
                       proto="tcp" if f.port.protocol == "TCP" else "udp",
                       dsr=f.forwarding == "dsr", local_only=f.local_only, maglev=f.maglev,
                       backends=f.backends)


def fill_tunnel(dp: DatapathObject, t: Topology, node: Node) -> None:
    """Geneve dispatch (``load_balancer.dispatch: geneve``): this node's address (the
    outer source, and Geneve to it taken apart) and every other node's pod CIDR ->
    that node (the tunnel map). Only the DSR dispatch rides in Geneve."""
    if t.load_balancer.dispatch != "geneve":
        return
    tunnel.set_geneve(dp, str(node.ip))
    for other in t.nodes:
        if other.name != node.name:
            tunnel.add_route(dp, str(other.pod_cidr), str(other.ip))


class _DatapathLoads:
    """Every node's datapath object, loaded (verifier, maps) and configured on
    worker threads while the main thread wires the network; :meth:`take` waits
    for one. :meth:`close` closes every object loaded (taken or not)."""

    def __init__(self, t: Topology, workers: int) -> None:
        sizes = _map_sizes(t)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsrlab-bpf")
        self._loaded: list[tuple[objpool.Key, DatapathObject]] = []
        self._futures: dict[str, Future[DatapathObject]] = {}
        self._taken = 0
        # the build check (hash the sources, ask clang its version) runs on a worker too
        built = self._pool.submit(build_object)

        def load(node: Node) -> DatapathObject:
            kind = objpool.key(built.result(), sizes)  # an earlier lab's, reset, or a load
            dp = objpool.POOL.take(kind) or DatapathObject.load(built.result(),
                                                                max_entries=sizes)
            self._loaded.append((kind, dp))
            dp.set_option_order(t.load_balancer.option_byte_order)
            dp.set_mtu(t.datapath_mtu)  # the DSR option must fit in it
            dp.set_icmp_errors(t.load_balancer.dsr_icmp_errors)
            dp.set_fragment_tracking(t.load_balancer.fragment_tracking)
            dp.set_node_addr(str(node.ip))  # SNAT's source, where SNATed replies return
            dp.set_maglev_seed(t.load_balancer.maglev_hash_seed)
            fill_tunnel(dp, t, node)
            for f in _frontends(t, node):
                dp.add_service(vip=str(node.ip), port=f.port.node_port,
                               proto="tcp" if f.port.protocol == "TCP" else "udp",
                               dsr=f.forwarding == "dsr", snat=f.forwarding == "snat",
                               local_only=f.local_only, maglev=f.maglev, backends=f.backends)
            if t.dual_stack and any("IPv6" in s.ip_families for s in t.services):
                add_ipv6_services(dp, t, node)
            return dp

        for node in t.nodes:
            self._futures[node.name] = self._pool.submit(load, node)

    def take(self, node: str) -> DatapathObject:
        """One node's object (waited for); once every node's is taken, the worker
        threads go (:meth:`finish`)."""
        dp = self._futures[node].result()
        self._taken += 1
        if self._taken == len(self._futures):
            self.finish()
        return dp

    def finish(self) -> None:
        """Every object is taken: let the worker threads go."""
        self._pool.shutdown(wait=True)

    def close(self) -> None:
        """Every object goes to the pool of loaded objects for the process's next lab,
        which closes one that may still be on a link (:attr:`DatapathObject.on_a_link`)."""
        for fut in self._futures.values():
            fut.cancel()
        self._pool.shutdown(wait=True)
        for kind, dp in self._loaded:
            objpool.POOL.give(kind, dp)
        self._loaded.clear()


def _bpf_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class LabDatapaths:
    """The lab's own DSR datapath (``dsr.c``) on every node's ``eth0``."""

    agent_wiring = False

    def __init__(self, *, workers: int | None = None) -> None:
        self._workers = workers
        self._loads: _DatapathLoads | None = None
        self._attached: dict[str, DatapathObject] = {}
        self._filters: dict[str, list[TcAttachment]] = {}  # node -> its tc filters on eth0
        self._counted: dict[str, dict[str, int]] = {}  # node -> drop counters at open

    def start(self, topology: Topology) -> LabDatapaths:
        started = LabDatapaths(workers=self._workers)
        started._loads = _DatapathLoads(topology, self._workers or _bpf_workers())
        return started

    def attach(self, node: Node, netns: str) -> DatapathObject:
        if self._loads is None:
            raise RuntimeError("LabDatapaths.attach before start")
        dp = self._loads.take(node.name)
        self._attached[node.name] = dp
        filters = self._filters.setdefault(node.name, [])
        with nsutil.in_netns(netns):
            filters.append(dp.attach_tc(NODE_ETH0_INDEX, "ingress", "dsr_from_netdev"))
            filters.append(dp.attach_tc(NODE_ETH0_INDEX, "egress", "dsr_to_netdev"))
        return dp

    def detach(self, node: Node, netns: str) -> None:
        """Both filters off ``eth0``: the object runs nowhere and may serve the
        process's next lab (:mod:`lab.env.netns.objpool`)."""
        with nsutil.in_netns(netns):
            for f in self._filters.pop(node.name, []):
                f.detach()

    def _drops(self) -> dict[str, dict[str, int]]:
        return {node: {k: v for k, v in dp.counters().items() if k.startswith("drop_")}
                for node, dp in self._attached.items()}

    def open_events(self) -> None:
        self._counted = self._drops()

    def take_events(self) -> DatapathEvents:
        """The drops its counters went up by (both directions of eth0 count together)."""
        events = []
        for node, now in self._drops().items():
            before = self._counted.get(node, {})
            events += [DatapathEvent(node=node, ifname="eth0", kind="drop", what=name,
                                     count=n - before.get(name, 0))
                       for name, n in now.items() if n > before.get(name, 0)]
        return DatapathEvents.bounded("the lab's dsr.c", "dsr_counters", events)

    def keep_fds(self) -> list[int]:
        return []  # the tc filters hold the programs, and the programs their maps

    def describe(self) -> dict[str, str]:
        return {"name": "lab"}

    def close(self) -> None:
        if self._loads is not None:
            self._loads.close()
