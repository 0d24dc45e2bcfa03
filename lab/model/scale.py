"""Topologies of any size in the seed's shape (benchmarks, scale tests, ``dsrlab up``
of hundreds of nodes): :func:`scale_data` gives the YAML's data, :func:`scale_topology`
the validated model."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from lab.model.topology import Topology, parse_topology

PODS_PER_NODE = 2
MAX_NODES = 65536 - 2  # node addresses in 172.18.0.0/16 after the client's


def scale_data(nodes: int, pods_per_node: int = PODS_PER_NODE) -> dict[str, Any]:
    """The seed's shape at any size: node i at 172.18.0.0/16 + 2 + i with pod CIDR
    10.<i / 256>.<i % 256>.0/24 (inside 10.0.0.0/8), its pods at .10, .11, ...; one
    DaemonSet on port 80 and one NodePort service (32000) over all of its pods."""
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"nodes: 1 to {MAX_NODES} (got {nodes})")
    node_list: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    first = int(IPv4Address("172.18.0.2"))
    for i in range(nodes):
        name = f"node-{i}"
        hi, lo = divmod(i, 256)
        node_list.append({"name": name, "role": "control-plane" if i == 0 else "worker",
                          "ip": str(IPv4Address(first + i)), "pod_cidr": f"10.{hi}.{lo}.0/24"})
        pods += [{"name": f"pod-{i}-{j}", "node": name, "ip": f"10.{hi}.{lo}.{10 + j}"}
                 for j in range(pods_per_node)]
    return {
        "name": f"scale-{nodes}",
        "description": f"{nodes} nodes with {pods_per_node} pods each",
        "cluster": {"native_routing_cidr": "10.0.0.0/8"},
        "network": {"name": "kind", "subnet": "172.18.0.0/16", "mtu": 1500},
        "client": {"name": "client", "ip": "172.18.0.1"},
        "nodes": node_list,
        "workloads": [{"name": "web", "kind": "DaemonSet", "port": 80, "pods": pods}],
        "services": [{"name": "websvc", "selector": "web", "protocol": "TCP",
                      "node_port": 32000, "target_port": 80}],
    }


def scale_topology(nodes: int, pods_per_node: int = PODS_PER_NODE) -> Topology:
    return parse_topology(scale_data(nodes, pods_per_node),
                          f"<scale: {nodes} nodes, {pods_per_node} pods each>")
