"""The kind cluster config for a topology, as data (kind's ``Cluster`` document)."""

from __future__ import annotations

from typing import Any

from lab.model.topology import Topology

NODE_IMAGE = "kindest/node"


def node_image(t: Topology) -> str:
    """kind's node image for the topology's Kubernetes (the seed: kindest/node:v1.23.4)."""
    v = t.cluster.kubernetes_version
    return f"{NODE_IMAGE}:{v if v.startswith('v') else 'v' + v}"


def cluster_name(t: Topology) -> str:
    """The kind cluster's name: the topology's (its nodes are <name>-control-plane,
    <name>-worker, <name>-worker2, as the seed's)."""
    return t.name


def kind_config(t: Topology) -> dict[str, Any]:
    """kind's config: no default CNI (Cilium is installed), kube-proxy off when Cilium
    replaces it, one node entry per topology node in its role (control-plane first)."""
    networking: dict[str, Any] = {"disableDefaultCNI": True}
    if t.cluster.kube_proxy == "none":
        networking["kubeProxyMode"] = "none"
    roles = sorted((n.role for n in t.nodes), key=lambda r: r != "control-plane")
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
            "networking": networking, "nodes": [{"role": r} for r in roles]}


def expected_node_names(t: Topology) -> list[str]:
    """The names kind gives the nodes: <cluster>-control-plane, then <cluster>-worker,
    <cluster>-worker2, ... (and control-plane2... for more control planes)."""
    out: list[str] = []
    counts: dict[str, int] = {}
    for role in (n["role"] for n in kind_config(t)["nodes"]):
        counts[role] = counts.get(role, 0) + 1
        n = counts[role]
        out.append(f"{cluster_name(t)}-{role}{'' if n == 1 else n}")
    return out
