"""Cilium's own programs on the netns backend's nodes (:class:`NodeDatapaths`).

Per node, as Cilium's agent would: ``bpf_host`` for eth0 and the
``cilium_host`` pair and ``bpf_lxc`` for each pod are built from the Cilium
source (on worker threads while the network is wired; cached by content),
loaded with shared maps and filled tail calls, their maps filled from the
topology, and attached (:mod:`lab.datapath.cilium`). Each node's
``cilium_events`` is read on a thread from then on (:attr:`events`); a run's
captures take what came between :meth:`open_events` and :meth:`take_events`.

The wiring differs from the lab's datapath's where Cilium's headers and
routing need it (:attr:`agent_wiring`): the devices get the MACs the
headers name, the ``cilium_host``/``cilium_net`` pair has no ARP, a node's
pod CIDR is routed on ``cilium_host`` (legacy host routing: Cilium delivers
to the pod from there) instead of a /32 per pod on its ``lxc`` veth, and
the other nodes' addresses are resolved ahead.

The prog arrays lose their tail calls when their last descriptor closes:
:meth:`keep_fds` lists them, and a lab left up hands them to its pod server
process, which holds them for the lab's life.
"""

from __future__ import annotations

import socket
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from lab.capture.dpevents import DatapathEvents
from lab.datapath import DatapathObject
from lab.datapath.cilium.attach import add_geneve_device, attach_node
from lab.datapath.cilium.build import BuiltObject, build_node, prepared_tree
from lab.datapath.cilium.events import CiliumEvent, EventDecoder, EventLog, EventReader, Names
from lab.datapath.cilium.node import LoadedNode, load_plan
from lab.datapath.cilium.plan import NodePlan, check_supported, lb_params, plan_node
from lab.datapath.cilium.source import CiliumSource
from lab.model.topology import Node, Topology
from lab.plumbing import interrupts, nsutil

BUILD_WORKERS = 2


class CiliumDatapaths:
    """A recipe (``NetnsBackend(datapaths=CiliumDatapaths(source))``); :meth:`start`
    returns one lab's own loading."""

    agent_wiring = True

    def __init__(self, source: CiliumSource, cache_dir: Path | None = None) -> None:
        self.source = source
        self.cache_dir = cache_dir
        self.events = EventLog()
        self._plans: dict[str, NodePlan] = {}
        self._builds: dict[str, Future[tuple[BuiltObject, dict[str, BuiltObject]]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._loaded: dict[str, LoadedNode] = {}
        self._readers: list[EventReader] = []
        self._topology: Topology | None = None
        self._names: Names | None = None

    def start(self, topology: Topology) -> CiliumDatapaths:
        check_supported(topology, self.source.version)
        started = CiliumDatapaths(self.source, self.cache_dir)
        started._topology = topology
        lb = lb_params(topology)
        started._pool = ThreadPoolExecutor(BUILD_WORKERS, thread_name_prefix="cilium-build")
        tree = prepared_tree(self.source, self.cache_dir)  # once, before builders share it
        started._names = Names.from_tree(tree)  # the version's names for its events
        for node in topology.nodes:
            plan = plan_node(topology, node.name)
            started._plans[node.name] = plan
            started._builds[node.name] = started._pool.submit(
                build_node, self.source, plan.node, plan.pods, lb, self.cache_dir)
        return started

    def attach(self, node: Node, netns: str) -> DatapathObject | None:
        assert self._topology is not None, "attach() of a CiliumDatapaths not started"
        self._builds[node.name].result()  # a build error surfaces here, with clang's words
        plan = self._plans[node.name]
        with interrupts.deferred():  # loaded and recorded for close, or neither
            loaded = load_plan(self.source, plan, lb_params(self._topology), self.cache_dir)
            self._loaded[node.name] = loaded
        if plan.node.encap_ifindex is not None:  # Geneve dispatch: the tunnel device
            add_geneve_device(netns, plan.node.encap_ifindex, plan.node.encap_mac)
        with nsutil.in_netns(netns):
            attach_node(loaded)
            ifnames = {index: name for index, name in socket.if_nameindex()}
        assert self._names is not None
        decoder = EventDecoder(node.name, self._names, ifnames=ifnames)
        with interrupts.deferred():
            self._readers.append(EventReader(loaded.node.map_fd("cilium_events"), decoder,
                                             self.events))
        return None

    def detach(self, node: Node, netns: str) -> None:
        """Nothing: Cilium's objects are closed with the lab, never reused, and their
        filters go with the namespace."""

    def drops(self) -> list[CiliumEvent]:
        """The latest drop notifications, in order."""
        return self.events.drops()

    def open_events(self) -> None:
        self.events.open_window()

    def take_events(self) -> DatapathEvents:
        for reader in self._readers:
            reader.sync()
        return self.events.close_window(f"Cilium {self.source.version}",
                                        lost=sum(r.lost for r in self._readers))

    def keep_fds(self) -> list[int]:
        return sorted(fd for loaded in self._loaded.values() for fd in loaded.node.keep_fds())

    def describe(self) -> dict[str, str]:
        return {"name": "cilium", "version": str(self.source.version),
                "commit": self.source.commit or "", "source_sha256": self.source.sha256}

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for loaded in self._loaded.values():
            loaded.close()
        self._loaded.clear()
