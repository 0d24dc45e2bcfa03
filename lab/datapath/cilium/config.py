"""The headers Cilium's agent would write for a node and its endpoints.

Cilium's programs are configured at compile time: the agent writes
``node_config.h`` per node, ``ep_config.h`` per endpoint (the host endpoint
per device, each pod), and the kernel probe results ``features*.h``, then
compiles. This module writes the same headers from the lab's own figures
(:class:`NodeParams`, :class:`PodParams`, :class:`LbParams`): the define
names and meanings are the agent's, for the two configuration layouts the
lab knows:

- ``v1.13``: endpoint values as plain ``#define``s (the agent's
  ``DEFINE_U32`` + ``fetch_u32`` read a ``.data`` global that only its own
  loader inlines);
- ``v1.16`` (also used for 1.14 and 1.15, whose layout sits between):
  ``DEFINE_U32``/``DEFINE_U16`` and ``.rodata.config`` constants whose
  compile-time values the build reads (:mod:`lab.datapath.cilium.tree`),
  MACs written as the agent's loader substitutes them.

A node with an IPv6 address (a dual-stack topology) gets what the agent writes
with ``ipv6.enabled``: ``ENABLE_IPV6``, ``ROUTER_IP``/``HOST_IP``/``LXC_IP``
(:func:`define_ipv6`), ``IPV6_DIRECT_ROUTING`` and the IPv6 NodePort maps. A
node with a tunnel device (Geneve dispatch) gets the tunnel cell's defines
(:func:`tunnel_defines`) and ``bpf_overlay``'s :func:`overlay_config`.

Map sizes are the lab's (a few thousand entries), not the agent's defaults
(up to 512 Ki entries): the lab has a handful of flows, and the agent's
sizes would cost tens of MB of kernel memory per node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal

from lab.datapath.cilium import probes
from lab.datapath.cilium.probes import KernelFeatures
from lab.datapath.cilium.source import CiliumVersion

Layout = Literal["v1.13", "v1.16"]
HOST_EP_ID = 1234  # the host endpoint's id (any unused endpoint id)
WORLD_ID = 2
HOST_ID = 1
REMOTE_NODE_ID = 6
POD_IDENTITY = 1000  # every pod of the lab shares one identity (policies allow all)
LAB_CT_SIZE = 65536
LAB_MAP_SIZE = 4096
# v1.16's reserved identities of the world in a dual-stack cluster (one per family)
WORLD_IPV4_DUAL_ID = 9
WORLD_IPV6_DUAL_ID = 10


def layout_for(version: CiliumVersion) -> Layout:
    """The configuration layout of a Cilium line; :class:`ValueError` if the lab knows none."""
    if version.line == (1, 13):
        return "v1.13"
    if (1, 14) <= version.line <= (1, 16):
        return "v1.16"
    raise ValueError(
        f"Cilium {version}: the lab writes the agent's configuration for 1.13 to 1.16 only"
    )


@dataclass(frozen=True)
class NodeParams:
    """One node as Cilium's agent would see it (figures from the lab's wiring)."""

    name: str
    ip: IPv4Address
    eth0_ifindex: int
    eth0_mac: bytes
    cilium_host_ifindex: int
    cilium_host_mac: bytes
    cilium_net_ifindex: int
    cilium_net_mac: bytes
    router_ip: IPv4Address  # cilium_host's address: IPV4_GATEWAY
    pod_cidr: IPv4Network
    mtu: int = 1500
    # IPv6 (a dual-stack node): its address, cilium_host's (ROUTER_IP) and its pod CIDR
    ip6: IPv6Address | None = None
    router_ip6: IPv6Address | None = None
    pod_cidr6: IPv6Network | None = None
    # the tunnel device (cilium_geneve) when the node has one: ENCAP_IFINDEX
    encap_ifindex: int | None = None
    encap_mac: bytes = b"\x02\x04\x00\x00\x00\x01"

    @property
    def ipv6(self) -> bool:
        return self.ip6 is not None


@dataclass(frozen=True)
class PodParams:
    """One pod endpoint on a node."""

    name: str
    lxc_id: int
    ip: IPv4Address
    lxc_ifindex: int
    lxc_mac: bytes
    identity: int = POD_IDENTITY
    ip6: IPv6Address | None = None


@dataclass(frozen=True)
class LbParams:
    """The topology's load-balancer settings, in the agent's terms."""

    mode: Literal["snat", "dsr", "hybrid"] = "dsr"
    algorithm: Literal["random", "maglev"] = "random"
    maglev_table_size: int = 16381
    dispatch: Literal["opt", "geneve"] = "opt"
    fragment_tracking: bool = True
    dsr_icmp_errors: bool = False  # the agent's --enable-pmtu-discovery
    nodeport_min: int = 30000
    nodeport_max: int = 32767
    # routing: tunnel (TUNNEL_MODE); Geneve dispatch opens a Geneve tunnel either way
    tunnel_routing: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def tunnel_protocol(self) -> Literal["geneve"] | None:
        """The tunnel the agent opens (the lab's Cilium runs Geneve only: DSR across a
        tunnel needs it, and Geneve dispatch takes it)."""
        return "geneve" if self.tunnel_routing or self.dispatch == "geneve" else None


def host32(ip: IPv4Address) -> int:
    """The agent's ``NetIPv4ToHost32``: the address bytes read little-endian."""
    return int.from_bytes(ip.packed, "little")


def addr_init(ip: IPv6Address) -> str:
    """An IPv6 address as the agent's ``FmtDefineAddress``: a ``union v6addr`` initialiser."""
    return "{ .addr = { " + ", ".join(f"0x{b:x}" for b in ip.packed) + " } }"


def define_ipv6(layout: Layout, name: str, ip: IPv6Address) -> list[str]:
    """The agent's ``defineIPv6`` (``ROUTER_IP``, ``HOST_IP``, ``LXC_IP``), read through
    ``BPF_V6``/``fetch_ipv6``.

    v1.16: ``DEFINE_IPV6`` as the agent writes it (its compile-time value is the
    address; :mod:`.tree` makes ``CONFIG()`` read it). v1.13: ``fetch_ipv6`` takes
    the *address* of four symbols ``NAME_1..4``, which the agent's loader resolves
    to the address words; a symbol defined as the object at that address reads
    the same value under libbpf, with no ``.data`` global.
    """
    if layout == "v1.13":
        words = [int.from_bytes(ip.packed[i:i + 4], "little") for i in range(0, 16, 4)]
        return [f"#define {name}_{i} (*(__u32 *){w:#x}UL)" for i, w in enumerate(words, 1)] + \
               [f"#define {name}_V"]
    return [f"DEFINE_IPV6({name}, {', '.join(f'0x{b:x}' for b in ip.packed)});",
            f"#define {name}_V"]


def mac_init(mac: bytes) -> str:
    return "{.addr={" + ",".join(f"0x{b:02x}" for b in mac) + "}}"


def _render(defines: Mapping[str, str], preamble: str = "", head: str = "") -> str:
    lines = [f"/* {head} (written by dsrlab as Cilium's agent would) */", "#pragma once", ""]
    if preamble:
        lines += [preamble, ""]
    lines += [f"#define {k} {v}".rstrip() for k, v in sorted(defines.items())]
    return "\n".join(lines) + "\n"


def _map_names(layout: Layout) -> dict[str, str]:
    names = {
        "CT_MAP_TCP4": "cilium_ct4_global", "CT_MAP_ANY4": "cilium_ct_any4_global",
        "CT_MAP_TCP6": "cilium_ct6_global", "CT_MAP_ANY6": "cilium_ct_any6_global",
        "CT_TAIL_CALL_BUFFER4": "cilium_tail_call_buffer4",
        "CT_TAIL_CALL_BUFFER6": "cilium_tail_call_buffer6",
        "EGRESS_POLICY_MAP": "cilium_egress_gw_policy_v4",
        "ENDPOINTS_MAP": "cilium_lxc", "EVENTS_MAP": "cilium_events",
        "IPCACHE_MAP": "cilium_ipcache",
        "IPV4_FRAG_DATAGRAMS_MAP": "cilium_ipv4_frag_datagrams",
        "LB4_AFFINITY_MAP": "cilium_lb4_affinity", "LB4_BACKEND_MAP": "cilium_lb4_backends_v3",
        "LB4_REVERSE_NAT_MAP": "cilium_lb4_reverse_nat",
        "LB4_REVERSE_NAT_SK_MAP": "cilium_lb4_reverse_sk",
        "LB4_SERVICES_MAP_V2": "cilium_lb4_services_v2",
        "LB4_SRC_RANGE_MAP": "cilium_lb4_source_range",
        "LB6_BACKEND_MAP": "cilium_lb6_backends_v3",
        "LB6_REVERSE_NAT_MAP": "cilium_lb6_reverse_nat",
        "LB6_REVERSE_NAT_SK_MAP": "cilium_lb6_reverse_sk",
        "LB6_SERVICES_MAP_V2": "cilium_lb6_services_v2",
        "LB_AFFINITY_MATCH_MAP": "cilium_lb_affinity_match",
        "METRICS_MAP": "cilium_metrics", "NODE_MAP": "cilium_node_map",
        "NODEPORT_NEIGH4": "cilium_nodeport_neigh4", "POLICY_CALL_MAP": "cilium_call_policy",
        "SIGNAL_MAP": "cilium_signals", "SNAT_MAPPING_IPV4": "cilium_snat_v4_external",
        "SRV6_POLICY_MAP4": "cilium_srv6_policy_v4", "SRV6_POLICY_MAP6": "cilium_srv6_policy_v6",
        "SRV6_SID_MAP": "cilium_srv6_sid", "SRV6_VRF_MAP4": "cilium_srv6_vrf_v4",
        "SRV6_VRF_MAP6": "cilium_srv6_vrf_v6", "TUNNEL_MAP": "cilium_tunnel_map",
    }
    if layout == "v1.13":
        names |= {"ENCRYPT_MAP": "cilium_encrypt_state", "EP_POLICY_MAP": "cilium_ep_to_policy",
                  "SRV6_STATE_MAP4": "cilium_srv6_state_v4",
                  "SRV6_STATE_MAP6": "cilium_srv6_state_v6"}
    else:
        names |= {
            "AUTH_MAP": "cilium_auth_map", "CONFIG_MAP": "cilium_runtime_config",
            "L2_RESPONDER_MAP4": "cilium_l2_responder_v4", "LB4_SKIP_MAP": "cilium_skip_lb4",
            "MCAST_GROUP_OUTER_V4_MAP": "cilium_mcast_group_outer_v4_map",
            "NODE_MAP_V2": "cilium_node_map_v2",
            "PER_CLUSTER_CT_ANY4": "cilium_per_cluster_ct_any4",
            "PER_CLUSTER_CT_ANY6": "cilium_per_cluster_ct_any6",
            "PER_CLUSTER_CT_TCP4": "cilium_per_cluster_ct_tcp4",
            "PER_CLUSTER_CT_TCP6": "cilium_per_cluster_ct_tcp6",
            "PER_CLUSTER_SNAT_MAPPING_IPV4": "cilium_per_cluster_snat_v4_external",
            "PER_CLUSTER_SNAT_MAPPING_IPV6": "cilium_per_cluster_snat_v6_external",
            "RATELIMIT_MAP": "cilium_ratelimit", "WORLD_CIDRS4_MAP": "cilium_world_cidrs4",
        }
    return names


def _map_sizes(layout: Layout) -> dict[str, str]:
    small, ct = str(LAB_MAP_SIZE), str(LAB_CT_SIZE)
    sizes = {
        "CILIUM_IPV4_FRAG_MAP_MAX_ENTRIES": small, "CILIUM_LB_AFFINITY_MAP_MAX_ENTRIES": small,
        "CILIUM_LB_BACKENDS_MAP_MAX_ENTRIES": small, "CILIUM_LB_MAGLEV_MAP_MAX_ENTRIES": small,
        "CILIUM_LB_REV_NAT_MAP_MAX_ENTRIES": small, "CILIUM_LB_SERVICE_MAP_MAX_ENTRIES": small,
        "CILIUM_LB_SOURCE_RANGE_MAP_MAX_ENTRIES": small,
        "CT_MAP_SIZE_ANY": ct, "CT_MAP_SIZE_TCP": ct,
        "EGRESS_POLICY_MAP_SIZE": small, "ENDPOINTS_MAP_SIZE": small,
        "IPCACHE_MAP_SIZE": small, "LB4_REVERSE_NAT_SK_MAP_SIZE": small,
        "LB4_SRC_RANGE_MAP_SIZE": small, "LB6_REVERSE_NAT_SK_MAP_SIZE": small,
        "METRICS_MAP_SIZE": "1024", "NODE_MAP_SIZE": small, "NODEPORT_NEIGH4_SIZE": small,
        "POLICY_MAP_SIZE": small, "POLICY_PROG_MAP_SIZE": "65535",
        "SNAT_MAPPING_IPV4_SIZE": ct, "SRV6_POLICY_MAP_SIZE": small,
        "SRV6_SID_MAP_SIZE": small, "SRV6_VRF_MAP_SIZE": small,
        "TUNNEL_ENDPOINT_MAP_SIZE": small,
    }
    if layout == "v1.13":
        sizes |= {"SOCKOPS_MAP_SIZE": small, "SRV6_STATE_MAP_SIZE": small}
    else:
        sizes |= {"AUTH_MAP_SIZE": small, "CILIUM_LB_SKIP_MAP_MAX_ENTRIES": "100",
                  "CONFIG_MAP_SIZE": "256", "L2_RESPONSER_MAP4_SIZE": small,
                  "WORLD_CIDRS4_MAP_SIZE": small}
    return sizes


def node_config(node: NodeParams, lb: LbParams, layout: Layout) -> str:
    """``node_config.h`` for ``node``."""
    d: dict[str, str] = {
        "CIDR_IDENTITY_RANGE_START": "16777217", "CIDR_IDENTITY_RANGE_END": "16842751",
        "CT_CLOSE_TIMEOUT": "10", "CT_CONNECTION_LIFETIME_NONTCP": "60",
        "CT_CONNECTION_LIFETIME_TCP": "21600", "CT_REPORT_FLAGS": "0x00ff",
        "CT_REPORT_INTERVAL": "5", "CT_SERVICE_CLOSE_REBALANCE": "30",
        "CT_SERVICE_LIFETIME_NONTCP": "60", "CT_SERVICE_LIFETIME_TCP": "21600",
        "CT_SYN_TIMEOUT": "60",
        "DIRECT_ROUTING_DEV_IFINDEX": str(node.eth0_ifindex),
        "DSR_ENCAP_NONE": "1", "DSR_ENCAP_IPIP": "2",
        "DSR_XLATE_FRONTEND": "1", "DSR_XLATE_BACKEND": "2", "DSR_XLATE_MODE": "0",
        "ENABLE_IDENTITY_MARK": "1", "ENABLE_IPV4": "1", "ENABLE_NODEPORT": "1",
        "ENABLE_SESSION_AFFINITY": "1", "ENABLE_SOCKET_LB_FULL": "1",
        "ENABLE_SRC_RANGE_CHECK": "1",
        "HASH_INIT4_SEED": "0", "HASH_INIT6_SEED": "0",
        "HEALTH_ID": "4", "HOST_ID": str(HOST_ID), "INIT_ID": "5", "UNMANAGED_ID": "3",
        "WORLD_ID": str(WORLD_ID), "REMOTE_NODE_ID": str(REMOTE_NODE_ID),
        "LOCAL_NODE_ID": "6", "KUBE_APISERVER_NODE_ID": "7", "HOST_NETNS_COOKIE": "1",
        "IPV4_DIRECT_ROUTING": str(host32(node.ip)),
        "IPV4_GATEWAY": f"0x{host32(node.router_ip):08x}",
        "IPV4_LOOPBACK": f"0x{host32(IPv4Address('169.254.42.1')):08x}",
        "IPV4_MASK": f"0x{host32(node.pod_cidr.netmask):08x}",
        "IPV4_RSS_PREFIX": "IPV4_DIRECT_ROUTING", "IPV4_RSS_PREFIX_BITS": "32",
        "IS_L3_DEV(ifindex)": "false", "VLAN_FILTER(ifindex, vlan_id)": "return false",
        "KERNEL_HZ": "250", "MTU": str(node.mtu),
        "LB_SELECTION_RANDOM": "1", "LB_SELECTION_MAGLEV": "2",
        "LB_SELECTION": "2" if lb.algorithm == "maglev" else "1",
        "NAT_46X64_PREFIX_0": "0", "NAT_46X64_PREFIX_1": "0",
        "NAT_46X64_PREFIX_2": "0", "NAT_46X64_PREFIX_3": "0",
        "NODEPORT_PORT_MIN": str(lb.nodeport_min), "NODEPORT_PORT_MAX": str(lb.nodeport_max),
        "NODEPORT_PORT_MIN_NAT": "32768", "NODEPORT_PORT_MAX_NAT": "65535",
        "TRACE_PAYLOAD_LEN": "128ULL",
        "NATIVE_DEV_MAC_BY_IFINDEX(IFINDEX)": (
            "({ union macaddr __mac = {.addr = {0x0, 0x0, 0x0, 0x0, 0x0, 0x0}}; "
            f"switch (IFINDEX) {{ case {node.eth0_ifindex}: {{union macaddr __tmp = "
            f"{mac_init(node.eth0_mac)}; __mac=__tmp;}} break; }} __mac; }})"),
        "CILIUM_NET_MAC": mac_init(node.cilium_net_mac),
    }
    if lb.mode in ("dsr", "hybrid"):
        d |= {"ENABLE_DSR": "1", "DSR_ENCAP_MODE": "1"}
        if lb.mode == "hybrid":
            d["ENABLE_DSR_HYBRID"] = "1"
        if lb.dsr_icmp_errors:  # as the agent: with path MTU discovery on
            d["ENABLE_DSR_ICMP_ERRORS"] = "1"
    if lb.algorithm == "maglev":
        d["LB_MAGLEV_LUT_SIZE"] = str(lb.maglev_table_size)
        d["LB4_MAGLEV_MAP_OUTER"] = "cilium_lb4_maglev"
        d["LB6_MAGLEV_MAP_OUTER"] = "cilium_lb6_maglev"
    if lb.fragment_tracking:
        d["ENABLE_IPV4_FRAGMENTS"] = "1"
    if layout == "v1.13":
        d |= {"TUNNEL_PORT": "8472", "HOST_IFINDEX": str(node.cilium_host_ifindex),
              "HOST_IFINDEX_MAC": mac_init(node.cilium_host_mac),
              "CILIUM_IFINDEX": str(node.cilium_host_ifindex)}
        preamble = '#include "lib/utils.h"'
    else:
        d |= {"DSR_ENCAP_GENEVE": "3", "CLUSTER_ID_MAX": "255", "ENCRYPTED_OVERLAY_ID": "11",
              "EPHEMERAL_MIN": "32768", "UNKNOWN_ID": "0", "WORLD_IPV4_ID": "2",
              "WORLD_IPV6_ID": "2", "HOST_IFINDEX": str(node.cilium_net_ifindex),
              "HOST_IFINDEX_MAC": mac_init(node.cilium_host_mac),
              "CILIUM_IFINDEX": str(node.cilium_host_ifindex)}
        if lb.dispatch == "geneve" and lb.mode != "snat":
            d["DSR_ENCAP_MODE"] = "3"
        if lb.tunnel_protocol == "geneve":
            d |= tunnel_defines(node, lb)
        preamble = ('#include "lib/utils.h"\n'
                    'DECLARE_CONFIG(__u32, identity_length, "Identity length in bits")\n'
                    "ASSIGN_CONFIG(__u32, identity_length, 16)")
    if node.ip6 is not None:
        d |= _ipv6_defines(node, lb, layout)
        router6 = node.router_ip6 if node.router_ip6 is not None else node.ip6
        preamble += "\n" + "\n".join(define_ipv6(layout, "ROUTER_IP", router6)
                                      + define_ipv6(layout, "HOST_IP", node.ip6))
    d |= _map_names(layout) | _map_sizes(layout) | dict(lb.extra)
    return _render(d, preamble, f"node_config.h of {node.name}, Cilium {layout} layout")


GENEVE_PORT = 6081
TUNNEL_PROTOCOL_IDS = {"vxlan": 1, "geneve": 2}  # pkg/datapath/tunnel's datapath ids


def tunnel_defines(node: NodeParams, lb: LbParams) -> dict[str, str]:
    """What the agent's tunnel cell (1.16) adds: the protocol ids, the protocol, the port
    and the tunnel device's ifindex; ``TUNNEL_MODE`` with tunnel routing."""
    if node.encap_ifindex is None:
        raise ValueError(f"{node.name}: a tunnel needs the tunnel device's ifindex")
    d = {"TUNNEL_PROTOCOL_VXLAN": str(TUNNEL_PROTOCOL_IDS["vxlan"]),
         "TUNNEL_PROTOCOL_GENEVE": str(TUNNEL_PROTOCOL_IDS["geneve"]),
         "TUNNEL_PROTOCOL": str(TUNNEL_PROTOCOL_IDS["geneve"]),
         "TUNNEL_PORT": str(GENEVE_PORT), "ENCAP_IFINDEX": str(node.encap_ifindex)}
    if lb.tunnel_routing:
        d["TUNNEL_MODE"] = "1"
    return d


def overlay_config(node: NodeParams, lb: LbParams) -> str:
    """``netdev_config.h`` of ``bpf_overlay.c`` for the tunnel device, with the defines
    the agent passes on clang's command line (pkg/datapath/loader's
    ``reinitializeOverlay``, 1.16): the world's identity, the device's MAC, its calls
    map, and with NodePort its ifindex."""
    if node.encap_ifindex is None:
        raise ValueError(f"{node.name}: bpf_overlay needs the tunnel device's ifindex")
    v4, v6 = ((WORLD_IPV4_DUAL_ID, WORLD_IPV6_DUAL_ID) if node.ipv6 else (WORLD_ID, WORLD_ID))
    lines = [f"#define SECLABEL {WORLD_ID}", f"#define SECLABEL_IPV4 {v4}",
             f"#define SECLABEL_IPV6 {v6}",
             f"#define THIS_INTERFACE_MAC {mac_init(node.encap_mac)}",
             f"#define CALLS_MAP cilium_calls_overlay_{WORLD_ID}",
             "#define DISABLE_LOOPBACK_LB 1",
             f"#define NATIVE_DEV_IFINDEX {node.encap_ifindex}", *_NOTIFY]
    return (f"/* netdev_config.h: the overlay of {node.name} (written by dsrlab) */\n"
            "#pragma once\n" + "\n".join(lines) + "\n")


def _ipv6_defines(node: NodeParams, lb: LbParams, layout: Layout) -> dict[str, str]:
    """What the agent adds to ``node_config.h`` with ``--enable-ipv6`` (NodePort, DSR on)."""
    assert node.ip6 is not None
    small, ct = str(LAB_MAP_SIZE), str(LAB_CT_SIZE)
    d = {"ENABLE_IPV6": "1",
         "IPV6_DIRECT_ROUTING": addr_init(node.ip6),
         "IPV6_RSS_PREFIX": "IPV6_DIRECT_ROUTING", "IPV6_RSS_PREFIX_BITS": "128",
         "NODEPORT_NEIGH6": "cilium_nodeport_neigh6", "NODEPORT_NEIGH6_SIZE": small,
         "SNAT_MAPPING_IPV6": "cilium_snat_v6_external", "SNAT_MAPPING_IPV6_SIZE": ct,
         "LB6_AFFINITY_MAP": "cilium_lb6_affinity",
         "LB6_SRC_RANGE_MAP": "cilium_lb6_source_range", "LB6_SRC_RANGE_MAP_SIZE": small}
    if layout != "v1.13":  # 1.16: a dual-stack cluster has a world identity per family
        d |= {"WORLD_IPV4_ID": str(WORLD_IPV4_DUAL_ID), "WORLD_IPV6_ID": str(WORLD_IPV6_DUAL_ID)}
    return d


def _u32(layout: Layout, name: str, value: int, kind: str = "U32") -> list[str]:
    if layout == "v1.13":
        return [f"#define {name} {value:#x}"]
    fetch = "fetch_u16" if kind == "U16" else "fetch_u32"
    return [f"DEFINE_{kind}({name}, {value:#x});", f"#define {name} {fetch}({name})"]


def _mac(layout: Layout, name: str, mac: bytes) -> list[str]:
    if layout == "v1.13":
        return [f"#define {name} {mac_init(mac)}"]
    # the value the agent's loader substitutes (bytes read in host order)
    first, second = int.from_bytes(mac[:4], "little"), int.from_bytes(mac[4:], "little")
    return [f'DECLARE_CONFIG(__u32, {name}_1, "{name} 1")',
            f'DECLARE_CONFIG(__u32, {name}_2, "{name} 2")',
            f"ASSIGN_CONFIG(__u32, {name}_1, {first:#x})",
            f"ASSIGN_CONFIG(__u32, {name}_2, {second:#x})",
            f"#define {name} fetch_mac({name})"]


_NOTIFY = ["#define CONNTRACK_ACCOUNTING 1", "#define DROP_NOTIFY 1", "#define TRACE_NOTIFY 1",
           "#define POLICY_VERDICT_NOTIFY 1",
           "#define MONITOR_AGGREGATION 0  /* monitorAggregation=none, as in the write-up */"]


def _identity(layout: Layout, identity: int) -> list[str]:
    out = _u32(layout, "SECLABEL", identity)
    if layout == "v1.13":
        network_order = int.from_bytes(identity.to_bytes(4, "big"), "little")
        out.append(f"#define SECLABEL_NB {network_order:#x}")
    else:
        out += _u32(layout, "SECLABEL_IPV4", identity) + _u32(layout, "SECLABEL_IPV6", identity)
    return out + _u32(layout, "POLICY_VERDICT_LOG_FILTER", 0)


def calls_map_netdev(ifindex: int) -> str:
    return f"cilium_calls_netdev_{ifindex:05d}"


def calls_map_pod(lxc_id: int) -> str:
    return f"cilium_calls_{lxc_id:05d}"


def policy_map(ep_id: int) -> str:
    return f"cilium_policy_{ep_id:05d}"


def host_ep_config(node: NodeParams, layout: Layout) -> str:
    """``ep_config.h`` of the host endpoint for ``eth0`` (bpf_host.c)."""
    mac_name = "NODE_MAC" if layout == "v1.13" else "THIS_INTERFACE_MAC"
    lines = ['#include "lib/utils.h"']
    lines += _u32(layout, "NATIVE_DEV_IFINDEX", node.eth0_ifindex)
    lines += _u32(layout, "SECCTX_FROM_IPCACHE", 1)
    lines += _mac(layout, mac_name, node.eth0_mac)
    if layout != "v1.13":
        lines += _u32(layout, "THIS_INTERFACE_IFINDEX", node.cilium_host_ifindex)
    lines += _identity(layout, HOST_ID)
    lines += [f"#define POLICY_MAP {policy_map(HOST_EP_ID)}",
              f"#define CALLS_MAP {calls_map_netdev(node.eth0_ifindex)}",
              "#define ENABLE_ROUTING 1", "#define HOST_ENDPOINT 1",
              "#define DISABLE_LOOPBACK_LB 1", f"#define HOST_EP_ID {HOST_EP_ID}",
              "#define ENABLE_ARP_RESPONDER 1", "#define LOCAL_DELIVERY_METRICS 1", *_NOTIFY]
    return (f"/* ep_config.h: host endpoint of {node.name}, eth0 (written by dsrlab) */\n"
            "#pragma once\n" + "\n".join(lines) + "\n")


def pod_ep_config(node: NodeParams, pod: PodParams, layout: Layout) -> str:
    """``ep_config.h`` of a pod endpoint (bpf_lxc.c)."""
    mac_name = "NODE_MAC" if layout == "v1.13" else "THIS_INTERFACE_MAC"
    lines = ['#include "lib/utils.h"']
    if pod.ip6 is not None:
        lines += define_ipv6(layout, "LXC_IP", pod.ip6)
    lines += _u32(layout, "LXC_IPV4", host32(pod.ip))
    lines += (["#define LXC_ID " + str(pod.lxc_id)] if layout == "v1.13"
              else _u32(layout, "LXC_ID", pod.lxc_id, "U16"))
    lines += _mac(layout, mac_name, pod.lxc_mac)
    if layout != "v1.13":
        lines += _u32(layout, "THIS_INTERFACE_IFINDEX", pod.lxc_ifindex)
    lines += _identity(layout, pod.identity)
    lines += [f"#define POLICY_MAP {policy_map(pod.lxc_id)}",
              f"#define CALLS_MAP {calls_map_pod(pod.lxc_id)}",
              "#define ENABLE_ROUTING 1", f"#define HOST_EP_ID {HOST_EP_ID}",
              "#define ENABLE_ARP_RESPONDER 1", "#define LOCAL_DELIVERY_METRICS 1", *_NOTIFY]
    return (f"/* ep_config.h: pod {pod.name} on {node.name} (written by dsrlab) */\n"
            "#pragma once\n" + "\n".join(lines) + "\n")


def feature_headers(layout: Layout, features: KernelFeatures | None = None) -> dict[str, str]:
    """``include/bpf/features*.h`` by file name: the agent's kernel probe results for
    ``features``' kernel (default: the running kernel, :mod:`.probes`)."""
    return probes.feature_headers(layout, features or probes.running())
