"""The kind cluster config for a topology, as data (kind's ``Cluster`` document)."""

from __future__ import annotations

import re
from typing import Any

from lab.errors import LabError
from lab.model.topology import Topology

NODE_IMAGE = "kindest/node"
# the kind release the lab runs (CI installs this one, .github/workflows/ci.yml) and the
# node images its release notes list, by digest: a node image is built for one kind
# release, and kind v0.22.0 has none of the write-up's v1.23.4 (kind v0.12.0's)
KIND_VERSION = "v0.22.0"
NODE_IMAGES: dict[tuple[int, int], str] = {
    (1, 23): "v1.23.17@sha256:14d0a9a892b943866d7e6be119a06871291c517d279aedb816a4b4bc0ec0a5b3",
    (1, 24): "v1.24.17@sha256:bad10f9b98d54586cba05a7eaa1b61c6b90bfc4ee174fdc43a7b75ca75c95e51",
    (1, 25): "v1.25.16@sha256:e8b50f8e06b44bb65a93678a65a26248fae585b3d3c2a669e5ca6c90c69dc519",
    (1, 26): "v1.26.14@sha256:5d548739ddef37b9318c70cb977f57bf3e5015e4552be4e27e57280a8cbb8e4f",
    (1, 27): "v1.27.11@sha256:681253009e68069b8e01aad36a1e0fa8cf18bb0ab3e5c4069b2e65cafdd70843",
    (1, 28): "v1.28.7@sha256:9bc6c451a289cf96ad0bbaf33d416901de6fd632415b076ab05f5fa7e4f65c58",
    (1, 29): "v1.29.2@sha256:51a1434a5397193442f0be2a297b488b6c919ce8a3931be0ce822606ea5ca245",
}


KIND_POD_SUBNET4 = "10.244.0.0/16"  # kind's default IPv4 pod subnet


class KindConfigError(LabError, ValueError):
    """A topology kind cannot make as it says (a Kubernetes without a node image of the
    kind release, node names kind would not give); the message names the field."""


def kubernetes_minor(version: str) -> tuple[int, int]:
    m = re.match(r"^v?(\d+)\.(\d+)(?:\.\d+)?$", version)
    if not m:
        raise KindConfigError(f"cluster.kubernetes_version: {version!r} is not a Kubernetes "
                              "version (like v1.23.4)")
    return int(m[1]), int(m[2])


def node_image(t: Topology) -> str:
    """The node image kind's release lists for the topology's Kubernetes minor, by digest
    (the seed's v1.23.4: kindest/node:v1.23.17@sha256:...)."""
    v = t.cluster.kubernetes_version
    image = NODE_IMAGES.get(kubernetes_minor(v))
    if image is None:
        known = ", ".join(f"{a}.{b}" for a, b in NODE_IMAGES)
        raise KindConfigError(f"cluster.kubernetes_version: {v}: kind {KIND_VERSION} has node "
                              f"images for Kubernetes {known} (lab/env/kind/config.py)")
    return f"{NODE_IMAGE}:{image}"


def image_note(t: Topology) -> str | None:
    """What the plan says when the image is not the topology's exact Kubernetes."""
    v = t.cluster.kubernetes_version
    tag = node_image(t).split(":", 1)[1].split("@", 1)[0]
    if tag == (v if v.startswith("v") else f"v{v}"):
        return None
    return (f"cluster.kubernetes_version {v}: kind {KIND_VERSION} lists no node image of it; "
            f"the cluster runs {tag}, the image kind {KIND_VERSION} lists for that minor")


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
    if t.dual_stack:
        # kind's dual stack: both families on its docker network and in Kubernetes; the
        # pod subnets are kind's IPv4 default and the topology's IPv6 pod range (kind's
        # own IPv6 default, fd00:10:244::/56, in the seed)
        networking["ipFamily"] = "dual"
        if t.cluster.native_routing_cidr6 is not None:
            networking["podSubnet"] = f"{KIND_POD_SUBNET4},{t.cluster.native_routing_cidr6}"
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


def node_name_problem(t: Topology) -> str | None:
    """Why kind's node names will not be the topology's (None: they will be).

    kind names a cluster's nodes after it; the lab finds them by the topology's names,
    so a topology whose name and node names disagree could never be discovered."""
    want = dict(zip(expected_node_names(t), (n["role"] for n in kind_config(t)["nodes"]),
                    strict=True))
    got = {n.name: n.role for n in t.nodes}
    if want == got:
        return None
    hint = ""
    cp = next((n.name for n in t.nodes if n.role == "control-plane"), "")
    if cp.endswith("-control-plane"):
        hint = f"name: {cp.removesuffix('-control-plane')}, or "
    return (f"nodes: kind names the nodes of cluster {cluster_name(t)}: "
            f"{', '.join(want)}; the topology's are {', '.join(got)} (rename: {hint}the "
            "nodes after the topology's name)")
