"""The addresses a run uses, in the family its scenario names (``target.family``).

An IPv4 run uses what the lab says of its hosts (a kind cluster's real
addresses); an IPv6 run reads them from the running lab's topology, whose
dual-stack fields give every host its IPv6 address. The manifest records the
family's addresses under the same names, so one trace reads either.
"""

from __future__ import annotations

from typing import Literal

from lab.env import Lab
from lab.env.base import BackendError
from lab.model.topology import Pod, Topology

Family = Literal["IPv4", "IPv6"]


def host_address(lab: Lab, host: str, family: Family) -> str:
    """``host``'s address on the lab network (client, node or pod) in ``family``."""
    if family == "IPv4":
        return str(lab.hosts[host].ip)
    t = lab.topology
    ips = {t.client.name: t.client.ip6, **{n.name: n.ip6 for n in t.nodes},
           **{p.name: p.ip6 for p in t.pods}}
    found = ips.get(host)
    if found is None:
        raise BackendError(f"host {host} of lab {lab.run_id} has no IPv6 address "
                           f"(is {t.name} dual-stack?)")
    return str(found)


def node_address(topo: Topology, node: str, family: Family) -> str:
    """The node's address a client calls its node ports at."""
    n = topo.node(node)
    ip = n.ip if family == "IPv4" else n.ip6
    if ip is None:
        raise BackendError(f"node {node} of {topo.name} has no IPv6 address")
    return str(ip)


def pod_address(pod: Pod, family: Family) -> str:
    ip = pod.ip if family == "IPv4" else pod.ip6
    if ip is None:
        raise BackendError(f"pod {pod.name} has no IPv6 address")
    return str(ip)
