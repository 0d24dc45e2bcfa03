"""Byte layouts of the datapath's maps and the typed records they hold.

Mirrors ``bpf/dsr.h``: every key and value is packed/unpacked here and
nowhere else. Addresses and ports are kept in network byte order inside the
maps (as on the wire); counts, slots and flags are host order.

=============  ================================================  ===========================
map            key                                               value
=============  ================================================  ===========================
lb_services    addr(4) port(2) proto(1) pad(1)                   count flags maglev_id (u16) pad(2)
lb_backends    addr(4) port(2) proto(1) pad(1) slot(u16) pad(2)  addr(4) port(2) flags(u16)
lb_ct          client(4) svc(4) cport(2) sport(2) proto(1) 3pad  backend(4) bport(2) flags(u16)
                                                                 nat_port(2) pad(2)
dsr_revnat     client(4) backend(4) cport(2) bport(2) proto 3pad svc(4) sport(2) pad(2)
lb_snat        backend(4) bport(2) nat_port(2) proto(1) 3pad     client(4) svc(4) cport sport
lb_maglev      u32 id * maglev_size + index                      backend slot (u16)
dsr_config     u32 0                                             flags seed mtu (u32)
                                                                 node_addr(4) maglev_size
                                                                 maglev_seed (u32)
dsr_counters   u32 event                                         u64 per CPU
dsr_frags      saddr(4) daddr(4) ip_id(2) proto(1) pad(1)        sport(2) dport(2)
lb6_services   addr(16) port(2) proto(1) pad(1)                  as lb_services
lb6_backends   addr(16) port(2) proto(1) pad(1) slot pad(2)      addr(16) port(2) flags(u16)
lb6_ct         client(16) svc(16) cport sport proto(1) 3pad      backend(16) bport(2) flags
dsr6_revnat    client(16) backend(16) cport bport proto(1) 3pad  svc(16) sport(2) pad(2)
dsr_tunnel_cfg u32 0                                             flags(u32) addr(4) vni(u32)
dsr_tunnel     prefixlen(u32) addr(4)  (LPM trie)                node_addr(4)
=============  ================================================  ===========================

The IPv6 maps (``lb6_*``, ``dsr6_revnat``) hold the same records with 16-byte
addresses; the functions below pick the layout by the address's family
(:func:`family_map` names the map), so callers pass IPv4 or IPv6 text alike.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

Proto = Literal["tcp", "udp"]
PROTO_NUMBERS: dict[str, int] = {"tcp": 6, "udp": 17}
PROTO_NAMES: dict[int, Proto] = {6: "tcp", 17: "udp"}

SVC_F_DSR = 1 << 0
SVC_F_SNAT = 1 << 1
SVC_F_MAGLEV = 1 << 2
SVC_F_LOCAL_ONLY = 1 << 3
BE_F_LOCAL = 1 << 0
CT_F_LOCAL = 1 << 0
CT_F_DSR = 1 << 1
CT_F_SNAT = 1 << 2
CFG_F_OPT_NETWORK_ORDER = 1 << 0
CFG_F_SEEDED_SELECT = 1 << 1  # backend = seeded hash of the flow, not random
CFG_F_ICMP_ERRORS = 1 << 2  # too big for the option: ICMP frag-needed, not a silent drop
CFG_F_FRAGMENTS = 1 << 3  # IPv4 fragments translated with their datagram (dsr_frags)

SVC_KEY = struct.Struct("=4s2sBx")
SVC_VAL = struct.Struct("=HHHxx")  # count, flags, maglev_id
BE_KEY = struct.Struct("=4s2sBxHxx")
BE_VAL = struct.Struct("=4s2sH")
FLOW_KEY = struct.Struct("=4s4s2s2sB3x")  # lb_ct and dsr_revnat keys
CT_VAL = struct.Struct("=4s2sH2sxx")
REVNAT_VAL = struct.Struct("=4s2sxx")
SNAT_KEY = struct.Struct("=4s2s2sB3x")
SNAT_VAL = struct.Struct("=4s4s2s2s")
# dsr_frags: saddr daddr id proto pad -> the first fragment's sport dport
FRAG_KEY = struct.Struct("=4s4s2sBx")
FRAG_VAL = struct.Struct("=2s2s")
# flags, seed, mtu (0 = no MTU check), node_addr, maglev_size, maglev_seed
CONFIG_VAL = struct.Struct("=III4sII")
SVC6_KEY = struct.Struct("=16s2sBx")
BE6_KEY = struct.Struct("=16s2sBxHxx")
BE6_VAL = struct.Struct("=16s2sH")
FLOW6_KEY = struct.Struct("=16s16s2s2sB3x")  # lb6_ct and dsr6_revnat keys
CT6_VAL = struct.Struct("=16s2sH")
REVNAT6_VAL = struct.Struct("=16s2sxx")
# Geneve dispatch (lab.datapath.tunnel): flags, this node's address, VNI
TUNNEL_CFG_VAL = struct.Struct("=I4sI")
TUNNEL_KEY = struct.Struct("=I4s")  # LPM: prefix length, address
TUNNEL_VAL = struct.Struct("=4s")
TUN_F_GENEVE = 1 << 0
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")

# name -> (key size, value size) as the C side declares them
LAYOUTS: dict[str, tuple[int, int]] = {
    "lb_services": (SVC_KEY.size, SVC_VAL.size),
    "lb_backends": (BE_KEY.size, BE_VAL.size),
    "lb_ct": (FLOW_KEY.size, CT_VAL.size),
    "dsr_revnat": (FLOW_KEY.size, REVNAT_VAL.size),
    "lb_snat": (SNAT_KEY.size, SNAT_VAL.size),
    "lb_maglev": (U32.size, U16.size),
    "dsr_config": (U32.size, CONFIG_VAL.size),
    "dsr_counters": (U32.size, U64.size),
    "dsr_frags": (FRAG_KEY.size, FRAG_VAL.size),
    "lb6_services": (SVC6_KEY.size, SVC_VAL.size),
    "lb6_backends": (BE6_KEY.size, BE6_VAL.size),
    "lb6_ct": (FLOW6_KEY.size, CT6_VAL.size),
    "dsr6_revnat": (FLOW6_KEY.size, REVNAT6_VAL.size),
    "dsr_tunnel_cfg": (U32.size, TUNNEL_CFG_VAL.size),
    "dsr_tunnel": (TUNNEL_KEY.size, TUNNEL_VAL.size),
}
# each IPv4 map's IPv6 twin
V6_MAPS: dict[str, str] = {"lb_services": "lb6_services", "lb_backends": "lb6_backends",
                           "lb_ct": "lb6_ct", "dsr_revnat": "dsr6_revnat"}

# enum dsr_event in bpf/dsr.h: counter names (lower case, without EV_).
EVENT_NAMES: dict[int, str] = {
    1: "pass_not_ipv4",
    2: "pass_fragment",
    3: "pass_other_proto",
    4: "svc_hit",
    5: "ct_new",
    6: "ct_hit",
    7: "dnat",
    8: "opt_inserted",
    9: "local_dnat",
    10: "fib_redirect",
    11: "fib_redirect_neigh",
    12: "fib_pass",
    13: "backend_learned",
    14: "backend_cleared",
    15: "revnat_rewrite",
    16: "ttl_expired_pass",
    17: "snat",
    18: "snat_reverse",
    19: "maglev",
    20: "icmp_frag_needed",
    21: "frag_tracked",
    22: "frag_found",
    23: "icmp6_pkt_too_big",
    24: "pass_ipv6_exthdr",
    26: "geneve_encap",
    27: "geneve_decap",
    28: "geneve_learned",
    32: "drop_truncated_ip",
    33: "drop_bad_version",
    34: "drop_bad_ihl",
    35: "drop_bad_tot_len",
    36: "drop_truncated_l4",
    37: "drop_opt_too_long",
    38: "drop_no_backend",
    39: "drop_adjust_room",
    40: "drop_csum",
    41: "drop_store",
    42: "drop_ct_update",
    43: "drop_frag_needed",
    44: "drop_tot_len_overflow",
    45: "drop_no_local_backend",
    46: "drop_no_nat_port",
    47: "drop_no_node_addr",
    48: "drop_frag_nosupport",
    49: "drop_frag_not_found",
    50: "drop_ipv6_exthdr",
    54: "drop_no_tunnel_endpoint",
    55: "drop_tunnel_fib",
    56: "drop_geneve_truncated",
    57: "drop_geneve_bad_hdr",
    58: "drop_geneve_bad_opt",
    59: "drop_geneve_crit_opt",
    60: "drop_geneve_inner",
}
EV_MAX = 64


def drop_reason_name(code: int) -> str:
    """The reason a drop wrote into skb->cb[0], without the ``drop_`` prefix."""
    name = EVENT_NAMES.get(code, f"unknown_{code}")
    return name.removeprefix("drop_")


def ip_bytes(ip: str) -> bytes:
    """IPv4 text -> 4 bytes in network order (raises ValueError otherwise)."""
    return ipaddress.IPv4Address(ip).packed


def ip_text(raw: bytes) -> str:
    """4 or 16 bytes -> the address's text."""
    return str(ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw))


def is_ipv6(ip: str) -> bool:
    """Whether ``ip`` is IPv6 text (ValueError when it is no address at all)."""
    return ipaddress.ip_address(ip).version == 6


def addr_bytes(ip: str) -> bytes:
    """IPv4 or IPv6 text -> its 4 or 16 bytes in network order (ValueError otherwise)."""
    return ipaddress.ip_address(ip).packed


def family_map(name: str, ip: str) -> str:
    """The map holding ``ip``'s records: ``name`` (an IPv4 map) or its IPv6 twin."""
    return V6_MAPS[name] if is_ipv6(ip) else name


def port_bytes(port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    return port.to_bytes(2, "big")


def port_int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def proto_number(proto: str) -> int:
    try:
        return PROTO_NUMBERS[proto]
    except KeyError:
        raise ValueError(f"protocol must be tcp or udp, not {proto!r}") from None


@dataclass(frozen=True)
class BackendEntry:
    """One backend of a service; ``local`` means it runs on this node."""

    ip: str
    port: int
    local: bool = False


@dataclass(frozen=True)
class ServiceEntry:
    """A service as it sits in lb_services/lb_backends (and lb_maglev)."""

    vip: str
    port: int
    proto: Proto
    dsr: bool
    backends: tuple[BackendEntry, ...]
    snat: bool = False  # remote backends get the node's address as source
    maglev: bool = False  # backends chosen from the service's Maglev table
    local_only: bool = False  # externalTrafficPolicy=Local


@dataclass(frozen=True)
class Config:
    """dsr_config[0]: what the loader sets for the whole node."""

    flags: int = 0
    seed: int = 0
    mtu: int = 0
    node_addr: str | None = None  # SNAT's source address
    maglev_size: int = 0
    maglev_seed: int = 0

    def pack(self) -> bytes:
        addr = ip_bytes(self.node_addr) if self.node_addr else bytes(4)
        return CONFIG_VAL.pack(self.flags, self.seed, self.mtu, addr, self.maglev_size,
                               self.maglev_seed)

    @classmethod
    def unpack(cls, raw: bytes) -> Config:
        flags, seed, mtu, addr, size, mseed = CONFIG_VAL.unpack(raw)
        return cls(flags, seed, mtu, ip_text(addr) if any(addr) else None, size, mseed)


@dataclass(frozen=True)
class SnatEntry:
    """lb_snat: a SNATed flow's replies (backend -> node:nat_port) go back to the client."""

    backend_ip: str
    backend_port: int
    nat_port: int
    proto: Proto
    client_ip: str
    client_port: int
    service_ip: str
    service_port: int


@dataclass(frozen=True)
class CtEntry:
    """lb_ct: which backend a client's flow to a service got."""

    client_ip: str
    client_port: int
    service_ip: str
    service_port: int
    proto: Proto
    backend_ip: str
    backend_port: int
    local: bool
    dsr: bool
    snat: bool = False
    nat_port: int | None = None  # the flow's source port on the node, when SNATed


@dataclass(frozen=True)
class RevnatEntry:
    """dsr_revnat: replies backend -> client get the service as their source."""

    client_ip: str
    client_port: int
    backend_ip: str
    backend_port: int
    proto: Proto
    service_ip: str
    service_port: int


def svc_key(vip: str, port: int, proto: str) -> bytes:
    layout = SVC6_KEY if is_ipv6(vip) else SVC_KEY
    return layout.pack(addr_bytes(vip), port_bytes(port), proto_number(proto))


def svc_val(count: int, dsr: bool, *, snat: bool = False, maglev_id: int | None = None,
            local_only: bool = False) -> bytes:
    flags = ((SVC_F_DSR if dsr else 0) | (SVC_F_SNAT if snat else 0)
             | (SVC_F_MAGLEV if maglev_id is not None else 0)
             | (SVC_F_LOCAL_ONLY if local_only else 0))
    return SVC_VAL.pack(count, flags, maglev_id or 0)


def be_key(vip: str, port: int, proto: str, slot: int) -> bytes:
    layout = BE6_KEY if is_ipv6(vip) else BE_KEY
    return layout.pack(addr_bytes(vip), port_bytes(port), proto_number(proto), slot)


def be_val(backend: BackendEntry) -> bytes:
    layout = BE6_VAL if is_ipv6(backend.ip) else BE_VAL
    return layout.pack(
        addr_bytes(backend.ip), port_bytes(backend.port), BE_F_LOCAL if backend.local else 0
    )


def unpack_svc(key: bytes, val: bytes) -> tuple[str, int, Proto, int, int, int]:
    """(vip, port, proto, count, flags, maglev_id) of one lb_services entry."""
    addr, port, proto = (SVC6_KEY if len(key) == SVC6_KEY.size else SVC_KEY).unpack(key)
    count, flags, maglev_id = SVC_VAL.unpack(val)
    return ip_text(addr), port_int(port), PROTO_NAMES[proto], count, flags, maglev_id


def unpack_backend(val: bytes) -> BackendEntry:
    addr, port, flags = (BE6_VAL if len(val) == BE6_VAL.size else BE_VAL).unpack(val)
    return BackendEntry(ip=ip_text(addr), port=port_int(port), local=bool(flags & BE_F_LOCAL))


def unpack_ct(key: bytes, val: bytes) -> CtEntry:
    if len(key) == FLOW6_KEY.size:
        client, svc, cport, sport, proto = FLOW6_KEY.unpack(key)
        backend, bport, flags = CT6_VAL.unpack(val)
        nat_port = b"\0\0"
    else:
        client, svc, cport, sport, proto = FLOW_KEY.unpack(key)
        backend, bport, flags, nat_port = CT_VAL.unpack(val)
    return CtEntry(
        client_ip=ip_text(client),
        client_port=port_int(cport),
        service_ip=ip_text(svc),
        service_port=port_int(sport),
        proto=PROTO_NAMES[proto],
        backend_ip=ip_text(backend),
        backend_port=port_int(bport),
        local=bool(flags & CT_F_LOCAL),
        dsr=bool(flags & CT_F_DSR),
        snat=bool(flags & CT_F_SNAT),
        nat_port=port_int(nat_port) if flags & CT_F_SNAT else None,
    )


def unpack_snat(key: bytes, val: bytes) -> SnatEntry:
    backend, bport, nat_port, proto = SNAT_KEY.unpack(key)
    client, svc, cport, sport = SNAT_VAL.unpack(val)
    return SnatEntry(backend_ip=ip_text(backend), backend_port=port_int(bport),
                     nat_port=port_int(nat_port), proto=PROTO_NAMES[proto],
                     client_ip=ip_text(client), client_port=port_int(cport),
                     service_ip=ip_text(svc), service_port=port_int(sport))


def revnat_key(entry: RevnatEntry) -> bytes:
    layout = FLOW6_KEY if is_ipv6(entry.client_ip) else FLOW_KEY
    return layout.pack(
        addr_bytes(entry.client_ip),
        addr_bytes(entry.backend_ip),
        port_bytes(entry.client_port),
        port_bytes(entry.backend_port),
        proto_number(entry.proto),
    )


def revnat_val(entry: RevnatEntry) -> bytes:
    layout = REVNAT6_VAL if is_ipv6(entry.service_ip) else REVNAT_VAL
    return layout.pack(addr_bytes(entry.service_ip), port_bytes(entry.service_port))


def unpack_revnat(key: bytes, val: bytes) -> RevnatEntry:
    v6 = len(key) == FLOW6_KEY.size
    client, backend, cport, bport, proto = (FLOW6_KEY if v6 else FLOW_KEY).unpack(key)
    svc, sport = (REVNAT6_VAL if v6 else REVNAT_VAL).unpack(val)
    return RevnatEntry(
        client_ip=ip_text(client),
        client_port=port_int(cport),
        backend_ip=ip_text(backend),
        backend_port=port_int(bport),
        proto=PROTO_NAMES[proto],
        service_ip=ip_text(svc),
        service_port=port_int(sport),
    )
