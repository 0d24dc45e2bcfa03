"""One node's Cilium datapath: built, loaded and filled for a topology.

:func:`load_node` is the whole sequence for one node (the agent's work
between "endpoint regenerated" and "programs attached"): the headers from
the topology (:mod:`.plan`), the objects built (cached) and loaded with
shared maps and tail calls, the maps filled (:mod:`.fill`). Attaching to
devices is the backend's part; test runs need none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.datapath.cilium import config as cfg
from lab.datapath.cilium import fill, probes
from lab.datapath.cilium.btf import ObjectBtf
from lab.datapath.cilium.build import BuiltObject, build_node, build_overlay
from lab.datapath.cilium.load import CiliumNode
from lab.datapath.cilium.plan import NodePlan, check_supported, lb_params, plan_node
from lab.datapath.cilium.source import CiliumSource
from lab.model.topology import Topology

OVERLAY = "overlay"  # the role of bpf_overlay's object


@dataclass
class NodeTimes:
    build_s: float = 0.0
    load_s: float = 0.0
    fill_s: float = 0.0
    compiled: list[str] = field(default_factory=list)  # objects compiled (not from the cache)


@dataclass
class LoadedNode:
    """A node's loaded Cilium objects (close it), its plan and what it cost."""

    plan: NodePlan
    node: CiliumNode
    source: CiliumSource
    times: NodeTimes

    def close(self) -> None:
        self.node.close()

    def __enter__(self) -> LoadedNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def world_identities(source: CiliumSource, plan: NodePlan) -> dict[int, int]:
    """The world's identity per IP version: v1.16 gives each family its own in a
    dual-stack cluster (``WORLD_IPV4_ID``/``WORLD_IPV6_ID``), 1.13 has one."""
    if plan.node.ipv6 and cfg.layout_for(source.version) != "v1.13":
        return {4: cfg.WORLD_IPV4_DUAL_ID, 6: cfg.WORLD_IPV6_DUAL_ID}
    return {}


def load_node(source: CiliumSource, topology: Topology, node_name: str,
              cache_dir: Path | None = None) -> LoadedNode:
    """Build, load and fill Cilium's datapath for ``node_name`` of ``topology``."""
    check_supported(topology, source.version)
    return load_plan(source, plan_node(topology, node_name), lb_params(topology), cache_dir)


def build_topology(source: CiliumSource, topology: Topology,
                   cache_dir: Path | None = None, release: str | None = None,
                   ) -> list[BuiltObject]:
    """Every object ``topology``'s nodes load (``bpf_host``, ``bpf_lxc`` per pod,
    ``bpf_overlay`` with a tunnel), built into the cache without loading any, for
    kernel ``release`` (default: the running one; another's features are predicted,
    :func:`lab.datapath.cilium.probes.features_for`): the kernel matrix builds them
    on the host for its guests, which would compile them under emulation."""
    check_supported(topology, source.version)
    lb = lb_params(topology)
    features = probes.features_for(release)
    built: list[BuiltObject] = []
    for node in topology.nodes:
        plan = plan_node(topology, node.name)
        host, lxcs = build_node(source, plan.node, plan.pods, lb, cache_dir, features=features)
        built += [host, *lxcs.values()]
        if plan.node.encap_ifindex is not None:
            built.append(build_overlay(source, plan.node, lb, cache_dir, features=features))
    return built


def load_plan(source: CiliumSource, plan: NodePlan, lb: cfg.LbParams,
              cache_dir: Path | None = None) -> LoadedNode:
    """Build, load and fill Cilium's datapath for one node's plan."""
    times = NodeTimes()
    started = time.monotonic()
    host, lxcs = build_node(source, plan.node, plan.pods, lb, cache_dir)
    overlay = (build_overlay(source, plan.node, lb, cache_dir)
               if plan.node.encap_ifindex is not None else None)
    times.build_s = time.monotonic() - started
    times.compiled = [b.path.name for b in (host, *lxcs.values()) if not b.cached]
    node = CiliumNode(plan.node.name)
    try:
        started = time.monotonic()
        node.load("host", host.path)
        if overlay is not None:  # the tunnel device's programs (cil_from_overlay, ...)
            node.load(OVERLAY, overlay.path)
        for pod in plan.pods:
            node.load(pod.name, lxcs[pod.name].path)
            node.set_policy_program(pod.name, pod.lxc_id)
        times.load_s = time.monotonic() - started
        started = time.monotonic()
        with ObjectBtf(host.path) as btf:
            w = fill.MapWriter(node, btf, str(source.version))
            fill.fill_services(w, plan.frontends)
            fill.fill_ipcache(w, plan.remotes, world=world_identities(source, plan))
            fill.fill_endpoints(w, plan.node, plan.pods, plan.pod_macs)
            if plan.tunnels:
                fill.fill_tunnels(w, plan.tunnels)
            policy = cfg.policy_map(cfg.HOST_EP_ID)
            fill.fill_allow_all(w, policy, node.map_fd(policy))
        for pod in plan.pods:
            with ObjectBtf(lxcs[pod.name].path) as btf:
                w = fill.MapWriter(node, btf, str(source.version))
                policy = cfg.policy_map(pod.lxc_id)
                fill.fill_allow_all(w, policy, node.objects[pod.name].maps[policy])
        times.fill_s = time.monotonic() - started
    except BaseException:
        node.close()
        raise
    return LoadedNode(plan, node, source, times)
