"""Cilium's Helm values for a topology, spelled the way the chosen chart version
spells them.

The names changed between releases: 1.13 says ``kubeProxyReplacement=strict`` and
``tunnel=disabled``; 1.14 says ``kubeProxyReplacement=true`` and
``routingMode=native`` (the old names deprecated); 1.15 removed the old ones.
:data:`SPELLINGS` is the one table of those differences; everything else is
the same in every version listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv6Network
from typing import Any

from lab.errors import LabError
from lab.model.topology import Topology


class ChartVersionError(LabError, ValueError):
    """A topology the kind plan cannot be made for (a Cilium version it has no
    spelling for, no control-plane node); the message names the field."""


@dataclass(frozen=True)
class Spelling:
    """How one chart line says what differs between lines."""

    kpr_on: str | bool  # kubeProxyReplacement with kube-proxy replaced
    kpr_off: str | bool  # ... and with kube-proxy kept
    native: dict[str, str]  # native routing
    tunnel_key: str  # the key that names the tunnel protocol
    tunnel_mode: dict[str, str]  # besides the protocol, what turns tunnelling on
    agent_cli: str = "cilium"  # the debug CLI inside the agent (1.15 renamed it cilium-dbg)


SPELLINGS: dict[tuple[int, int], Spelling] = {
    (1, 13): Spelling("strict", "disabled", {"tunnel": "disabled"}, "tunnel", {}),
    (1, 14): Spelling("true", "false", {"routingMode": "native"}, "tunnelProtocol",
                      {"routingMode": "tunnel"}),
    (1, 15): Spelling("true", "false", {"routingMode": "native"}, "tunnelProtocol",
                      {"routingMode": "tunnel"}, "cilium-dbg"),
    (1, 16): Spelling("true", "false", {"routingMode": "native"}, "tunnelProtocol",
                      {"routingMode": "tunnel"}, "cilium-dbg"),
}
CHART_REPO = "https://helm.cilium.io"
CHART = "cilium/cilium"
RELEASE = "cilium"
NAMESPACE = "kube-system"
API_SERVER_PORT = 6443
API_SERVER_VALUE = "k8sServiceHost"


def chart_line(version: str) -> tuple[int, int]:
    """``1.13.0-rc5`` -> (1, 13); a version the table lacks is a clear error."""
    m = re.match(r"^v?(\d+)\.(\d+)\.\d+(?:-[0-9A-Za-z.]+)?$", version)
    if not m:
        raise ChartVersionError(f"cluster.cilium_version: {version!r} is not a Cilium "
                                "version (like 1.13.0-rc5 or 1.16.3)")
    line = (int(m[1]), int(m[2]))
    if line not in SPELLINGS:
        known = ", ".join(f"{a}.{b}" for a, b in SPELLINGS)
        raise ChartVersionError(f"cluster.cilium_version: {version}: the plan knows the Helm "
                                f"values of Cilium {known} (lab/env/kind/values.py)")
    return line


def agent_cli(t: Topology) -> str:
    """The agent's own CLI for ``status --verbose`` in this Cilium line."""
    return SPELLINGS[chart_line(t.cluster.cilium_version)].agent_cli


def helm_values(t: Topology, api_server: str) -> dict[str, Any]:
    """The values ``helm install`` gets, flat (``--set`` names) and in the order the
    write-up sets them; ``api_server`` is the control-plane's address."""
    sp = SPELLINGS[chart_line(t.cluster.cilium_version)]
    c, lb = t.cluster, t.load_balancer
    replaced = c.kube_proxy == "none"
    values: dict[str, Any] = {
        API_SERVER_VALUE: api_server,
        "k8sServicePort": API_SERVER_PORT,
        "debug.enabled": True,
        "debug.verbose": "datapath",
        # the write-up's `--set monitorAggregation=none` names no key of the chart (it is
        # dropped without a word); bpf.monitorAggregation is the one the agent gets
        "bpf.monitorAggregation": "none",
        "ipam.mode": "cluster-pool",
        "cluster.name": t.name,
        "kubeProxyReplacement": sp.kpr_on if replaced else sp.kpr_off,
    }
    if c.routing == "native":
        values.update(sp.native)
        values["autoDirectNodeRoutes"] = c.auto_direct_node_routes
        values["ipv4NativeRoutingCIDR"] = str(c.native_routing_cidr)
        if lb.mode != "snat" and lb.dispatch == "geneve" and sp.tunnel_key != "tunnel":
            # Geneve dispatch opens a Geneve tunnel beside native routing (1.14+); from
            # 1.15 the agent takes its protocol from tunnelProtocol (default vxlan)
            values[sp.tunnel_key] = c.tunnel_protocol
    else:
        values.update(sp.tunnel_mode)
        values[sp.tunnel_key] = c.tunnel_protocol
    if t.dual_stack:
        values["ipv6.enabled"] = True
        if c.routing == "native" and c.native_routing_cidr6 is not None:
            values["ipv6NativeRoutingCIDR"] = str(c.native_routing_cidr6)
        # the IPv6 pod CIDRs the topology gives the nodes: /N slices of its range (the
        # IPv6 native routing CIDR, else the smallest network holding them all)
        cidrs = [n.pod_cidr6 for n in t.nodes if n.pod_cidr6 is not None]
        prefixes = {cidr.prefixlen for cidr in cidrs}
        if cidrs and len(prefixes) == 1:
            pool = c.native_routing_cidr6 or _covering(cidrs)
            values["ipam.operator.clusterPoolIPv6PodCIDRList"] = str(pool)
            values["ipam.operator.clusterPoolIPv6MaskSize"] = prefixes.pop()
        if sp.tunnel_key == "tunnel":
            # 1.13's agent refuses BPF masquerade with IPv6 masquerade on (its default)
            values["enableIPv6Masquerade"] = False
    values["bpf.masquerade"] = True
    if c.routing == "native" and replaced:
        # the agent refuses it in tunnel mode and without the full kube-proxy replacement
        values["installNoConntrackIptablesRules"] = True
    values["loadBalancer.mode"] = lb.mode
    if lb.algorithm != "random":
        values["loadBalancer.algorithm"] = lb.algorithm
        values["maglev.tableSize"] = lb.maglev_table_size
    if lb.mode != "snat" and lb.dispatch != "opt":  # snat dispatches nothing
        values["loadBalancer.dsrDispatch"] = lb.dispatch
    if c.mtu is not None:
        values["MTU"] = c.mtu
    if not lb.fragment_tracking:  # Cilium tracks fragments unless told not to
        values["fragmentTracking"] = False
    if lb.dsr_icmp_errors:  # the agent's --enable-pmtu-discovery: ENABLE_DSR_ICMP_ERRORS
        values["pmtuDiscovery.enabled"] = True
    return values


def _covering(cidrs: list[IPv6Network]) -> IPv6Network:
    """The smallest network that holds every one of ``cidrs``."""
    net = cidrs[0]
    while not all(c.subnet_of(net) for c in cidrs):
        net = net.supernet()
    return net


def set_args(values: dict[str, Any]) -> list[str]:
    """``--set name=value`` arguments, booleans as Helm writes them."""
    out: list[str] = []
    for key, value in values.items():
        shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out += ["--set", f"{key}={shown}"]
    return out


# the write-up's Helm settings that the chart does not read, and what the plan sets instead
WRITE_UP_NOT_CHART = {
    "bpf.monitorAggregation": "the write-up's --set monitorAggregation=none is not a key of "
                              "the chart (Helm drops it; the agent keeps its default, "
                              "medium): bpf.monitorAggregation is the one that takes effect",
}

# what the lab's topology says that no Helm value of Cilium's sets (the plan says so)
NOT_HELM = {
    "load_balancer.option_byte_order": "the lab's datapath only; Cilium writes host order",
    "fabric": "the netns lab's bridge only; a real fabric is what it is",
    "load_balancer.maglev_hash_seed": "Cilium's maglev.hashSeed is 12 random bytes in "
                                      "base64, not the lab's 32-bit seed: left to Cilium",
}
