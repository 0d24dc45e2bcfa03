"""Byte layouts of the datapath's maps and the typed records they hold.

Mirrors ``bpf/dsr.h``: every key and value is packed/unpacked here and
nowhere else. Addresses and ports are kept in network byte order inside the
maps (as on the wire); counts, slots and flags are host order.

=============  ================================================  ===========================
map            key                                               value
=============  ================================================  ===========================
lb_services    addr(4) port(2) proto(1) pad(1)                   count(u16) flags(u16)
lb_backends    addr(4) port(2) proto(1) pad(1) slot(u16) pad(2)  addr(4) port(2) flags(u16)
lb_ct          client(4) svc(4) cport(2) sport(2) proto(1) 3pad  backend(4) bport(2) flags(u16)
dsr_revnat     client(4) backend(4) cport(2) bport(2) proto 3pad svc(4) sport(2) pad(2)
dsr_config     u32 0                                             flags(u32) seed(u32) mtu(u32)
dsr_counters   u32 event                                         u64 per CPU
=============  ================================================  ===========================
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
BE_F_LOCAL = 1 << 0
CT_F_LOCAL = 1 << 0
CT_F_DSR = 1 << 1
CFG_F_OPT_NETWORK_ORDER = 1 << 0
CFG_F_SEEDED_SELECT = 1 << 1  # backend = seeded hash of the flow, not random

SVC_KEY = struct.Struct("=4s2sBx")
SVC_VAL = struct.Struct("=HH")
BE_KEY = struct.Struct("=4s2sBxHxx")
BE_VAL = struct.Struct("=4s2sH")
FLOW_KEY = struct.Struct("=4s4s2s2sB3x")  # lb_ct and dsr_revnat keys
CT_VAL = struct.Struct("=4s2sH")
REVNAT_VAL = struct.Struct("=4s2sxx")
CONFIG_VAL = struct.Struct("=III")  # flags, seed, mtu (0 = no MTU check)
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")

# name -> (key size, value size) as the C side declares them
LAYOUTS: dict[str, tuple[int, int]] = {
    "lb_services": (SVC_KEY.size, SVC_VAL.size),
    "lb_backends": (BE_KEY.size, BE_VAL.size),
    "lb_ct": (FLOW_KEY.size, CT_VAL.size),
    "dsr_revnat": (FLOW_KEY.size, REVNAT_VAL.size),
    "dsr_config": (U32.size, CONFIG_VAL.size),
    "dsr_counters": (U32.size, U64.size),
}

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
    return str(ipaddress.IPv4Address(raw))


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
    """A service as it sits in lb_services/lb_backends."""

    vip: str
    port: int
    proto: Proto
    dsr: bool
    backends: tuple[BackendEntry, ...]


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
    return SVC_KEY.pack(ip_bytes(vip), port_bytes(port), proto_number(proto))


def svc_val(count: int, dsr: bool) -> bytes:
    return SVC_VAL.pack(count, SVC_F_DSR if dsr else 0)


def be_key(vip: str, port: int, proto: str, slot: int) -> bytes:
    return BE_KEY.pack(ip_bytes(vip), port_bytes(port), proto_number(proto), slot)


def be_val(backend: BackendEntry) -> bytes:
    return BE_VAL.pack(
        ip_bytes(backend.ip), port_bytes(backend.port), BE_F_LOCAL if backend.local else 0
    )


def unpack_svc(key: bytes, val: bytes) -> tuple[str, int, Proto, int, bool]:
    """(vip, port, proto, count, dsr) of one lb_services entry."""
    addr, port, proto = SVC_KEY.unpack(key)
    count, flags = SVC_VAL.unpack(val)
    return ip_text(addr), port_int(port), PROTO_NAMES[proto], count, bool(flags & SVC_F_DSR)


def unpack_backend(val: bytes) -> BackendEntry:
    addr, port, flags = BE_VAL.unpack(val)
    return BackendEntry(ip=ip_text(addr), port=port_int(port), local=bool(flags & BE_F_LOCAL))


def unpack_ct(key: bytes, val: bytes) -> CtEntry:
    client, svc, cport, sport, proto = FLOW_KEY.unpack(key)
    backend, bport, flags = CT_VAL.unpack(val)
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
    )


def revnat_key(entry: RevnatEntry) -> bytes:
    return FLOW_KEY.pack(
        ip_bytes(entry.client_ip),
        ip_bytes(entry.backend_ip),
        port_bytes(entry.client_port),
        port_bytes(entry.backend_port),
        proto_number(entry.proto),
    )


def revnat_val(entry: RevnatEntry) -> bytes:
    return REVNAT_VAL.pack(ip_bytes(entry.service_ip), port_bytes(entry.service_port))


def unpack_revnat(key: bytes, val: bytes) -> RevnatEntry:
    client, backend, cport, bport, proto = FLOW_KEY.unpack(key)
    svc, sport = REVNAT_VAL.unpack(val)
    return RevnatEntry(
        client_ip=ip_text(client),
        client_port=port_int(cport),
        backend_ip=ip_text(backend),
        backend_port=port_int(bport),
        proto=PROTO_NAMES[proto],
        service_ip=ip_text(svc),
        service_port=port_int(sport),
    )
