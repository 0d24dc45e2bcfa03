"""The netns backend (:class:`NetnsBackend`): brings a topology up as
namespaces, in steps each recording its undo on the lab.

The steps: the hosts' namespaces (with their sysctls, netlink sockets and a
pod's listening sockets), the client's bridge and the nodes' ``eth0``, the
fabric on the bridge ports, the nodes, the pods, then each node's datapath
(loaded on worker threads meanwhile, :mod:`lab.env.netns.datapath`) and the
one pod server process (:mod:`lab.env.netns.servers`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from lab.atomic import check_folder
from lab.datapath.fabric import FabricObject, FabricPort
from lab.env import resources
from lab.env.base import BackendError, HostKind, LabHost
from lab.env.netns import geneve
from lab.env.netns.choice import node_datapaths
from lab.env.netns.datapath import NodeDatapaths
from lab.env.netns.lab import NetnsLab
from lab.env.netns.layout import (
    BRIDGE_INDEX,
    NODE_IFNAME,
    POD_IFNAME,
    _Layout,
    bridge_ifname,
)
from lab.env.netns.servers import PodServers
from lab.env.netns.wiring import (
    _new_host,
    _remove_namespaces,
    _Wiring,
    host_sysctls,
    lxc_mac,
    node_routes,
    node_sysctls,
    wire_client,
    wire_node,
    wire_pod,
)
from lab.env.state import STATE_DIR
from lab.model.topology import Pod, Topology
from lab.plumbing import interrupts, names, nsutil


class NetnsBackend:
    """Brings a :class:`Topology` up as namespaces (see :mod:`lab.env.netns`).

    ``datapath``: run a datapath on the nodes: ``datapaths`` (an implementation
    of :class:`NodeDatapaths`) when given, else the one each topology's
    ``datapath:`` names (:mod:`lab.env.netns.choice`; Cilium's from ``cilium_src``
    or ``$DSRLAB_CILIUM_SRC``).
    """

    name = "netns"

    def __init__(self, *, datapath: bool = True, servers: bool = True,
                 checksum_offload: bool = False,
                 datapaths: NodeDatapaths | None = None,
                 cilium_src: Path | str | None = None) -> None:
        self.with_datapath = datapath
        self.with_servers = servers
        self.checksum_offload = checksum_offload
        self.datapaths = datapaths if datapath else None  # None: the topology's choice
        self.cilium_src = cilium_src

    def up(self, topology: Topology, *, run_id: str | None = None) -> NetnsLab:
        recipe = self.datapaths
        if self.with_datapath and recipe is None:  # the topology's (a source found first)
            recipe = node_datapaths(None, topology, self.cilium_src)
        if topology.dual_stack and not os.path.isdir("/proc/sys/net/ipv6"):
            raise BackendError(
                f"{topology.source or topology.name}: network.subnet6: a dual-stack lab "
                "needs IPv6, which this kernel has off (booted with ipv6.disable=1?)")
        refused = geneve.refusal(topology, recipe if self.with_datapath else None)
        if refused is not None:
            raise BackendError(refused)
        check_folder(STATE_DIR, "state folder")  # claims and state go there: checked first
        # memory and open files for it, or one line saying what is missing (before anything)
        resources.check(resources.lab_needs(topology, datapath=self.with_datapath,
                                            servers=self.with_servers))
        lab = NetnsLab(topology, run_id or names.new_run_id())
        try:
            self._build(lab, recipe)
        except BaseException as exc:
            errors = lab.abort()
            if errors:
                raise BackendError(
                    f"bring-up of lab {lab.run_id} failed ({exc}) and its undo was "
                    "incomplete:\n  " + "\n  ".join(errors)
                ) from exc
            raise
        return lab

    # -- the steps ---------------------------------------------------------------
    def _build(self, lab: NetnsLab, recipe: NodeDatapaths | None) -> None:
        t = lab.topology
        run_id = lab.run_id
        lab._undo.push(f"release the claim on run {run_id}",
                       lambda: nsutil.release_if_done(run_id))
        loads: NodeDatapaths | None = None
        if recipe is not None:
            with interrupts.deferred():  # started and its undo recorded, or neither
                loads = recipe.start(t)
                lab._undo.push("close the datapath objects", loads.close)
            lab.datapaths = loads
        wiring: dict[str, _Wiring] = {}
        layout = _Layout.of(t)
        try:
            self._create_hosts(lab, layout, wiring)
            wire_client(t, wiring, checksum_offload=self.checksum_offload,
                        where=lab.netns(t.client.name))
            if self.with_datapath:
                self._attach_fabric(lab)
            routes = node_routes(t)
            agent = loads is not None and loads.agent_wiring
            for node in t.nodes:
                wire_node(t, node, layout.pods_by_node[node.name], wiring, routes,
                          agent=agent)
            for pod in layout.pods:
                wire_pod(pod, layout, wiring[pod.name], checksum_offload=self.checksum_offload,
                         where=lab.netns(pod.name), router_mac=lxc_mac(pod, t, agent=agent))
            if loads is not None:
                for node in t.nodes:
                    netns = lab.netns(node.name)
                    with interrupts.deferred():  # attached and its undo recorded together
                        lab._undo.push(f"detach the datapath of {node.name}",
                                       functools.partial(loads.detach, node, netns))
                        dp = loads.attach(node, netns)
                    if dp is not None:
                        lab.datapath[node.name] = dp
            if self.with_servers:
                self._start_servers(lab, layout.pods, wiring)
        finally:
            for w in wiring.values():
                w.close()

    def _create_hosts(self, lab: NetnsLab, layout: _Layout,
                      wiring: dict[str, _Wiring]) -> None:
        t = lab.topology
        hosts: list[tuple[str, HostKind, IPv4Address, str]] = [
            (t.client.name, "client", t.client.ip, bridge_ifname(t)),
            *((n.name, "node", n.ip, NODE_IFNAME) for n in t.nodes),
            *((p.name, "pod", p.ip, POD_IFNAME) for p in layout.pods),
        ]
        host_plan = host_sysctls(dual_stack=t.dual_stack)
        node_plan = node_sysctls(dual_stack=t.dual_stack)
        # a pod listens in each family it has an address of
        families = (socket.AF_INET, socket.AF_INET6) if t.dual_stack else (socket.AF_INET,)
        created: list[str] = []  # removed last-made first, all in one undo step
        lab._undo.push("remove the namespaces", functools.partial(_remove_namespaces, created))
        for name, kind, ip, ifname in hosts:
            ns = names.netns_name(lab.run_id, name)
            sysctls = node_plan if kind == "node" else host_plan
            want = layout.protos[name] if kind == "pod" and self.with_servers else ()
            with interrupts.deferred():  # made and recorded for the undo, or neither
                w = nsutil.create(ns, functools.partial(_new_host, ns, sysctls, want,
                                                        families))
                assert w is not None
                created.append(ns)
                wiring[name] = w
            lab.hosts[name] = LabHost(name=name, kind=kind, ip=ip, ifname=ifname, netns=ns)

    def _attach_fabric(self, lab: NetnsLab) -> None:
        """The topology's fabric on the bridge ports of the nodes it names (tc ingress
        in the client's namespace: the frames each node sends)."""
        t = lab.topology
        named = set(t.fabric.strip_ip_options) | set(t.fabric.source_dest_check) | set(
            t.fabric.drop_ipv6_ext_headers)
        if not named:
            return
        with interrupts.deferred():  # loaded and its close recorded, or neither
            fabric = FabricObject.load()
            lab._undo.push("close the fabric object", fabric.close)
        lab.fabric = fabric
        with nsutil.in_netns(lab.netns(t.client.name)):
            for i, node in enumerate(t.nodes):
                if node.name not in named:
                    continue
                port = BRIDGE_INDEX + 1 + i
                fabric.set_port(FabricPort(
                    port, str(node.ip), str(node.pod_cidr),
                    strip_options=node.name in t.fabric.strip_ip_options,
                    source_dest_check=node.name in t.fabric.source_dest_check,
                    drop_ipv6_ext=node.name in t.fabric.drop_ipv6_ext_headers))
                fabric.attach(port)

    def _start_servers(self, lab: NetnsLab, pods: list[Pod],
                       wiring: dict[str, _Wiring]) -> None:
        listeners = [(pod, wiring[pod.name].listeners) for pod in pods]
        if not listeners:
            return
        netns = lab.netns(lab.topology.client.name)
        with interrupts.deferred():  # started and its stop recorded, or neither
            keep = tuple(lab.datapaths.keep_fds()) if lab.datapaths is not None else ()
            servers = PodServers.start(netns, listeners, keep)
            lab.servers = servers
            lab._undo.push(f"stop the pod server (pid {servers.pid})", servers.stop)
        lab.pids.update({pod.name: servers.pid for pod in pods})


@contextlib.contextmanager
def netns_lab(topology: Topology, **kwargs: Any) -> Iterator[NetnsLab]:
    """``with netns_lab(topo) as lab:`` brings the lab up and always down."""
    lab = NetnsBackend(**kwargs).up(topology)
    with lab:
        yield lab
