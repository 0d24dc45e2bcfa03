"""Cilium's maps filled as the agent fills them, from the lab's own figures.

For one node: each NodePort frontend (the node's address and the
``0.0.0.0`` surrogate) with its backend slots, the backends, the reverse
NAT entries, the ipcache (world, hosts, remote nodes, pods), the endpoint
map (the host's addresses and the node's pods) and an allow-all policy for
every endpoint. Every key and value is packed at the offsets of the
object's own BTF (:mod:`lab.datapath.cilium.btf`), so a layout that drifted
between versions is an error naming the map, not a silent drop.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from lab.datapath import libbpf
from lab.datapath.cilium import config as cfg
from lab.datapath.cilium.btf import ObjectBtf, Value
from lab.datapath.cilium.load import CiliumNode
from lab.datapath.errors import DatapathError

SERVICES = "cilium_lb4_services_v2"
BACKENDS = "cilium_lb4_backends_v3"
REVNAT = "cilium_lb4_reverse_nat"
IPCACHE = "cilium_ipcache"
ENDPOINTS = "cilium_lxc"
SERVICES6 = "cilium_lb6_services_v2"
BACKENDS6 = "cilium_lb6_backends_v3"
REVNAT6 = "cilium_lb6_reverse_nat"

# lib/common.h's enum of service flags (the same in 1.13 to 1.16)
SVC_FLAG_NODEPORT = 1 << 1
SVC_FLAG_EXT_LOCAL_SCOPE = 1 << 2  # externalTrafficPolicy=Local
SVC_FLAG_ROUTABLE = 1 << 6
SVC_FLAG2_TWO_SCOPES = 1 << 5  # flags2: external and internal backends differ
LB_LOOKUP_SCOPE_EXT, LB_LOOKUP_SCOPE_INT = 0, 1
ENDPOINT_F_HOST = 1
ENDPOINT_KEY_IPV4 = 1
ENDPOINT_KEY_IPV6 = 2
# the bits of an ipcache key before the address: cluster_id/pad (16), pad (8), family (8)
IPCACHE_PREFIX_BITS = 32
# a v1.16 policy key's bits before the port: sec_label (32), egress + pad (8)
POLICY_LPM_ANY = 40
PROTO_NUMBERS = {"tcp": 6, "udp": 17}


Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class _Family:
    """The maps and key fields of one address family."""

    services: str
    backends: str
    revnat: str
    any_address: Address
    endpoint_family: int
    ip_field: str  # the address in an ipcache / endpoint key (IPv6: the union's bytes)


V4 = _Family(SERVICES, BACKENDS, REVNAT, IPv4Address(0), ENDPOINT_KEY_IPV4, "ip4")
V6 = _Family(SERVICES6, BACKENDS6, REVNAT6, IPv6Address(0), ENDPOINT_KEY_IPV6, "ip6.addr")


def family(address: Address) -> _Family:
    return V4 if address.version == 4 else V6


@dataclass(frozen=True)
class Frontend:
    """One service port as Cilium's agent programs it on a node."""

    address: Address
    port: int
    backends: Sequence[tuple[Address, int]]  # (pod address, target port), one family
    rev_nat_index: int
    proto: str = "tcp"
    # externalTrafficPolicy=Local: the backends on this node, for traffic from outside
    # the cluster (the agent's external scope); None: every backend for everyone
    local_backends: Sequence[tuple[Address, int]] | None = None


@dataclass(frozen=True)
class Remote:
    """An address the node must know in its ipcache: world, a host, a pod."""

    address: Address
    identity: int
    tunnel_endpoint: IPv4Address | None = None  # the node a remote pod lives on


class MapWriter:
    """Writes entries into the node's maps, packed by the object's BTF."""

    def __init__(self, node: CiliumNode, btf: ObjectBtf, version: str) -> None:
        self.node = node
        self.btf = btf
        self.version = version

    def put(self, map_name: str, key: Mapping[str, Value], value: Mapping[str, Value],
            fd: int | None = None) -> None:
        where = f"{map_name} (Cilium {self.version})"
        key_layout, value_layout = self.btf.map_layouts(map_name)
        kb = key_layout.pack(key, where=where)
        vb = value_layout.pack(value, where=where)
        map_fd = self.node.map_fd(map_name) if fd is None else fd
        _, ks, vs = libbpf.map_info(map_fd)
        if (ks, vs) != (len(kb), len(vb)):
            raise DatapathError(f"{where}: the map holds {ks}/{vs}-byte keys/values, the "
                                f"object's BTF says {len(kb)}/{len(vb)}")
        kbuf = ctypes.create_string_buffer(kb, len(kb))
        vbuf = ctypes.create_string_buffer(vb, len(vb))
        libbpf.check(libbpf.lib().bpf_map_update_elem(map_fd, kbuf, vbuf, 0), f"update {where}")


def _mac64(mac: bytes) -> bytes:
    return mac + b"\0\0"


def fill_services(w: MapWriter, frontends: Sequence[Frontend]) -> None:
    """Frontends, their backend slots, the backends and reverse NAT (agent's layout:
    slot 0 = the frontend with ``count``, slots 1..n = backend ids), each in the maps
    of its family (``cilium_lb4_*`` / ``cilium_lb6_*``; the ids are shared, as the
    agent's)."""
    backend_ids: dict[tuple[Address, int], int] = {}
    for fe in frontends:
        fam = family(fe.address)
        addr = "address" if fam is V4 else "address.addr"
        for be in fe.backends:
            if be not in backend_ids:
                backend_ids[be] = len(backend_ids) + 1
                w.put(fam.backends, {"": backend_ids[be]},
                      {addr: be[0].packed, "port": be[1]})
        flags, flags2 = SVC_FLAG_NODEPORT | SVC_FLAG_ROUTABLE, 0
        scopes = [(LB_LOOKUP_SCOPE_EXT, fe.backends)]
        if fe.local_backends is not None:
            # as the agent: the external scope holds the node's own backends, the
            # internal scope (traffic from inside the cluster) every backend
            flags |= SVC_FLAG_EXT_LOCAL_SCOPE
            flags2 = SVC_FLAG2_TWO_SCOPES
            scopes = [(LB_LOOKUP_SCOPE_EXT, fe.local_backends),
                      (LB_LOOKUP_SCOPE_INT, fe.backends)]
        for address in (fe.address, fam.any_address):
            for scope, backends in scopes:
                key: dict[str, Value] = {addr: address.packed, "dport": fe.port}
                if scope != LB_LOOKUP_SCOPE_EXT:
                    key["scope"] = scope
                value: dict[str, Value] = {"count": len(backends),
                                           "rev_nat_index": fe.rev_nat_index, "flags": flags}
                if flags2:
                    value["flags2"] = flags2
                w.put(fam.services, key | {"backend_slot": 0}, value)
                for slot, be in enumerate(backends, start=1):
                    w.put(fam.services, key | {"backend_slot": slot},
                          {"backend_id": backend_ids[be]})
        w.put(fam.revnat, {"": fe.rev_nat_index}, {addr: fe.address.packed, "port": fe.port})


def fill_ipcache(w: MapWriter, remotes: Sequence[Remote], *,
                 world: Mapping[int, int] | None = None) -> None:
    """The world (``0.0.0.0/0``, and ``::/0`` when any remote is IPv6); then each
    address as a host prefix with its identity (the field is ``sec_label`` up to
    1.15, ``sec_identity`` from 1.16). ``world``: the world's identity per IP
    version (v1.16 dual-stack: 9 and 10), else ``WORLD_ID``."""
    fields = w.btf.map_layouts(IPCACHE)[1].fields
    label = "sec_identity" if "sec_identity" in fields else "sec_label"
    world = world or {}
    families = [V4] + ([V6] if any(r.address.version == 6 for r in remotes) else [])
    for fam in families:
        version = 4 if fam is V4 else 6
        w.put(IPCACHE, {"lpm_key.prefixlen": IPCACHE_PREFIX_BITS, "family": fam.endpoint_family,
                        fam.ip_field: bytes(4 if fam is V4 else 16)},
              {label: world.get(version, cfg.WORLD_ID)})
    for r in remotes:
        fam = family(r.address)
        value: dict[str, Value] = {label: r.identity}
        if r.tunnel_endpoint is not None:
            value[tunnel_field(fields)] = r.tunnel_endpoint.packed
        w.put(IPCACHE, {"lpm_key.prefixlen": IPCACHE_PREFIX_BITS + r.address.max_prefixlen,
                        "family": fam.endpoint_family, fam.ip_field: r.address.packed}, value)


TUNNEL_MAP = "cilium_tunnel_map"


def fill_tunnels(w: MapWriter, tunnels: Sequence[tuple[Address, IPv4Address]]) -> None:
    """``cilium_tunnel_map``: each remote pod CIDR (its network address, either family)
    to the node that holds it, as the agent's node handler writes it with a tunnel."""
    for prefix, node_ip in tunnels:
        fam = family(prefix)
        w.put(TUNNEL_MAP, {fam.ip_field: prefix.packed, "family": fam.endpoint_family},
              {"ip4": node_ip.packed, "family": ENDPOINT_KEY_IPV4})


def tunnel_field(fields: Mapping[str, object]) -> str:
    """The IPv4 tunnel endpoint of ``remote_endpoint_info`` (a plain ``__be32`` up to
    1.15, a union with the IPv6 one later)."""
    for name in ("tunnel_endpoint", "tunnel_endpoint.ip4"):
        if name in fields:
            return name
    raise DatapathError("remote_endpoint_info has no IPv4 tunnel endpoint field "
                        f"(it has {', '.join(fields)})")


def fill_endpoints(w: MapWriter, node: cfg.NodeParams, pods: Sequence[cfg.PodParams],
                   pod_macs: Mapping[str, bytes]) -> None:
    """The host's addresses (``ENDPOINT_F_HOST``) and each local pod, as ``cilium_lxc``."""
    v116 = "sec_id" in w.btf.map_layouts(ENDPOINTS)[1].fields
    host: list[Address] = [node.ip, node.router_ip]
    host += [a for a in (node.ip6, node.router_ip6) if a is not None]
    for address in dict.fromkeys(host):
        value: dict[str, Value] = {"flags": ENDPOINT_F_HOST}
        if v116:
            value["sec_id"] = cfg.HOST_ID
        fam = family(address)
        w.put(ENDPOINTS, {fam.ip_field: address.packed, "family": fam.endpoint_family}, value)
    for pod in pods:
        value = {"ifindex": pod.lxc_ifindex, "lxc_id": pod.lxc_id,
                 "mac": _mac64(pod_macs[pod.name]), "node_mac": _mac64(pod.lxc_mac)}
        if v116:
            value["sec_id"] = pod.identity
        for address in [pod.ip] + ([pod.ip6] if pod.ip6 is not None else []):
            fam = family(address)
            w.put(ENDPOINTS, {fam.ip_field: address.packed, "family": fam.endpoint_family},
                  value)


def fill_allow_all(w: MapWriter, policy_map: str, fd: int) -> None:
    """Every identity, port and protocol allowed, both directions."""
    key_layout, _ = w.btf.map_layouts(policy_map)
    lpm = "lpm_key.prefixlen" in key_layout.fields
    for egress in (0, 1):
        if lpm:
            w.put(policy_map, {"lpm_key.prefixlen": POLICY_LPM_ANY, "egress": egress},
                  {"wildcard_protocol": 1, "wildcard_dport": 1}, fd)
        else:
            w.put(policy_map, {"egress": egress}, {}, fd)
