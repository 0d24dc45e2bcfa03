"""The one pass over a capture: option packets found, DSR flows made, packets counted.

A DSR flow starts at a TCP SYN or UDP datagram whose first IPv4 option is
the DSR option, that carries the IPv6 DSR Destination Option (0x1B), or that
travels Geneve-encapsulated (UDP 6081) with Cilium's DSR Geneve option (the
flow is then the INNER packet's); every 4-tuple a packet of the flow can have
is then indexed (:func:`_register`), so later packets are counted on their
flow with one dict lookup. Only IPv4 packets with options, IPv6 packets,
Geneve frames and packets on an indexed 4-tuple are decoded further.

Keys are the wire's bytes: 12 for IPv4 (addresses, ports), 36 for IPv6.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.check.review.model import FindingKind, Severity
from lab.check.review.order import option_readings
from lab.wire import dsropt
from lab.wire.dsropt import DsrValue, hostport
from lab.wire.endpoint import Endpoint
from lab.wire.pcapread import LINKTYPE_ETHERNET, CaptureFile, l3_offset

PROGRESS_EVERY = 0x10000  # packets between progress callbacks

# index kinds: what a packet on a 4-tuple is to the flow it belongs to
FWD, RAW_REPLY, REPLY_HOST, REPLY_NET, FRONT_HOST, FRONT_NET = range(6)

Key = bytes  # src addr (4) + dst addr (4) + src port (2) + dst port (2), as on the wire
KEY = struct.Struct("!IIHH")  # IPv4; IPv6 keys are 16 + 16 + 2 + 2 bytes
_EXT6 = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options: walked over
_GENEVE_LO = dsropt.GENEVE_PORT & 0xFF  # the UDP destination port's low byte: a cheap test
RawFinding = tuple[FindingKind, Severity, int, str, "int | None"]


@functools.lru_cache(maxsize=65536)
def ip_str(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


@functools.lru_cache(maxsize=4096)
def _ip_int(ip: str) -> int:
    return int(ipaddress.ip_address(ip))


def addr_str(n: int, family: int) -> str:
    """An address the walk keeps as an integer, as text (IPv6 compressed)."""
    return ip_str(n) if family == 4 else str(ipaddress.IPv6Address(n))


def _where(key: Key) -> str:
    if len(key) == 36:
        src, dst = (str(ipaddress.IPv6Address(key[i:i + 16])) for i in (0, 16))
        sport, dport = int.from_bytes(key[32:34], "big"), int.from_bytes(key[34:36], "big")
        return f"{hostport(src, sport)} -> {hostport(dst, dport)}"
    src_n, dst_n, sport, dport = KEY.unpack(key)
    return f"{ip_str(src_n)}:{sport} -> {ip_str(dst_n)}:{dport}"


class FlowState:
    """A DSR flow as the walk sees it: addresses as integers, packets counted per kind."""

    __slots__ = (
        "backend", "client", "counts", "dispatch", "family", "first_frame", "first_rec",
        "index", "opt", "option_packets", "proto", "raw_frame", "raw_ttl", "readings",
    )

    def __init__(self, index: int, proto: int, *, client: tuple[int, int],
                 backend: tuple[int, int], opt: bytes, frame: int, rec: int,
                 family: int = 4, carrier: DsrValue | None = None) -> None:
        self.index = index
        self.proto = proto
        self.client = client
        self.backend = backend
        self.opt = opt
        # the IPv4 option has two readings (host, network); the IPv6 option and the
        # Geneve option one, in network order (both readings the same)
        self.family = family
        self.dispatch: dsropt.Dispatch = "opt" if carrier is None else carrier.dispatch
        self.first_frame = frame
        self.first_rec = rec
        self.option_packets = 0
        # packets seen per index kind: FWD, RAW_REPLY, REPLY_HOST, REPLY_NET, ...
        self.counts = [0, 0, 0, 0, 0, 0]
        self.raw_frame: int | None = None
        self.raw_ttl: int | None = None
        if carrier is None:
            self.readings = option_readings(opt)
        else:
            svc = Endpoint(carrier.ip, carrier.port)
            self.readings = (svc, svc)

    @property
    def single(self) -> bool:
        """One reading only (the IPv6 option, the Geneve option): network order."""
        return self.dispatch == "geneve" or self.family == 6


Hit = tuple[FlowState, int]  # a flow and the index kind of the 4-tuple


@dataclass
class WalkState:
    """Mutable state of one pass over a file."""

    flows: list[FlowState] = field(default_factory=list)
    index: dict[Key, Hit] = field(default_factory=dict)
    raw: list[RawFinding] = field(default_factory=list)
    packets: int = 0
    ipv4: int = 0
    ipv6: int = 0
    option_packets: int = 0
    skipped: dict[int, int] = field(default_factory=dict)


# -- the per-record loop ------------------------------------------------------------------


def walk_capture(cap: CaptureFile, w: WalkState, progress: Callable[[int], None] | None,
                 ) -> None:
    """One pass: find option packets, create flows, count packets on flows' 4-tuples.

    The hot path (Ethernet, IPv4 without options) is one 3-byte compare, one
    12-byte slice and one dict lookup, the lookup only once a DSR flow is known.
    Other frames go through :func:`l3_offset`; IPv4 with options goes to
    :func:`_with_options`. The hot path keeps its own copy of the lookup: a tail
    shared with the other frames costs an int allocation per packet (+2% of the
    walk's instructions).
    """
    buf, index, raw, skipped = cap.buf, w.index, w.raw, w.skipped
    # locals, not globals or attributes, in the per-packet loop
    get, on_hit, l3, with_options = index.get, _on_hit, l3_offset, _with_options
    geneve, geneve_lo = _geneve, _GENEVE_LO
    eth, ipv4_no_options = LINKTYPE_ETHERNET, b"\x08\x00\x45"  # ethertype IPv4, v4 + IHL 5
    report, every = progress is not None, PROGRESS_EVERY - 1
    n, ipv4 = w.packets, 0
    try:
        for lt, start, caplen, rec in cap.records():
            n += 1
            if report and not n & every:
                progress(rec)  # type: ignore[misc]
            if lt == eth and buf[start + 12:start + 15] == ipv4_no_options:
                ipv4 += 1
                if index and (hit := get(buf[start + 26:start + 38])):  # (flow, kind) or None
                    on_hit(buf, start + 14, start + caplen, hit, n=n, raw=raw)
                elif caplen > 50 and buf[start + 37] == geneve_lo:  # UDP to 6081? (cheap)
                    geneve(w, buf, start + 14, start + caplen, n=n, rec=rec)
                continue
            if (ip := l3(buf, lt, start, caplen, skipped)) < 0 or ip + 20 > start + caplen:
                continue  # not IP, or no room for its header
            if buf[ip] != 0x45:
                ipv4 += with_options(w, buf, ip, start + caplen, n=n, rec=rec)
                continue
            ipv4 += 1  # IPv4 without options behind another link layer
            if index and (hit := get(buf[ip + 12:ip + 24])):
                on_hit(buf, ip, start + caplen, hit, n=n, raw=raw)
            elif buf[ip + 23] == geneve_lo and ip + 36 < start + caplen:
                geneve(w, buf, ip, start + caplen, n=n, rec=rec)
    finally:  # also when a truncated record ends the walk (partial reviews)
        w.packets = n
        w.ipv4 += ipv4


def _on_hit(buf: Any, ip: int, end: int, hit: Hit, *, n: int, raw: list[RawFinding],
            ) -> None:
    """A packet (IPv4, no options) on one of a flow's 4-tuples."""
    flow, kind = hit
    if buf[ip + 9] != flow.proto or ip + 24 > end or buf[ip + 6] & 0x1F or buf[ip + 7]:
        return  # other protocol, truncated, or a non-first fragment (no ports)
    flow.counts[kind] += 1
    if kind == FWD:
        # a Geneve flow's SYN is seen again decapsulated, without its carrier: no finding
        if flow.proto == 6 and ip + 34 <= end and buf[ip + 33] & 0x02 and \
                flow.dispatch == "opt":
            raw.append(_syn_without_option(flow, n))
    elif kind == RAW_REPLY and flow.raw_frame is None:
        flow.raw_frame = n
        flow.raw_ttl = buf[ip + 8]


# -- IPv4 with options ----------------------------------------------------------------------


def _with_options(w: WalkState, buf: Any, ip: int, end: int, *, n: int, rec: int) -> int:
    """An IP header other than plain IPv4; 1 if it is IPv4 (with options), else 0.

    A first DSR option starts or continues a flow; other options are searched
    for a misplaced or malformed one; anything else counts on its flow.
    """
    vihl = buf[ip]
    if vihl >> 4 != 4:
        if vihl >> 4 == 6:
            _ipv6(w, buf, ip, end, n=n, rec=rec)
        return 0
    ihl = (vihl & 0x0F) * 4
    if ihl < 20 or ip + ihl > end:
        return 1
    proto, l4 = buf[ip + 9], ip + ihl
    is_l4 = proto in (6, 17) and l4 + 4 <= end and not (buf[ip + 6] & 0x1F or buf[ip + 7])
    key = buf[ip + 12:ip + 20] + (buf[l4:l4 + 4] if is_l4 else b"\0\0\0\0")
    if not (ihl >= 28 and buf[ip + 20] == dsropt.OPT_TYPE and buf[ip + 21] == dsropt.OPT_LEN):
        _other_options(buf, ip, ihl, n=n, raw=w.raw, key=key)
    else:
        w.option_packets += 1
        if is_l4 and _dsr_option_packet(w, buf, ip, l4, end, proto=proto, key=key, n=n, rec=rec):
            return 1
    if is_l4 and w.index:
        _count_on_flow(w.index.get(key), buf, ip, proto, n)
    if proto == 17 and is_l4 and buf[l4 + 2] == dsropt.GENEVE_PORT >> 8 \
            and buf[l4 + 3] == _GENEVE_LO:
        _geneve(w, buf, ip, end, n=n, rec=rec)
    return 1


def _dsr_option_packet(w: WalkState, buf: Any, ip: int, l4: int, end: int, *, proto: int,
                       key: Key, n: int, rec: int, carrier: DsrValue | None = None) -> bool:
    """A TCP/UDP packet that carries a DSR carrier (the first IPv4 option, or
    ``carrier``: the IPv6 option, the Geneve option); True if a flow took it (one it
    continues, or a new one its SYN or datagram starts)."""
    syn = proto == 17 or (l4 + 14 <= end and buf[l4 + 13] & 0x02)
    hit = w.index.get(key)
    if hit is not None and hit[1] == FWD and hit[0].proto == proto:
        _continue_flow(hit[0], bool(syn), key, n, w.raw)
        return True
    if syn:
        opt = carrier.raw if carrier is not None else bytes(buf[ip + 20:ip + 28])
        _start_flow(w, proto, key, opt, n=n, rec=rec, carrier=carrier)
        return True
    w.raw.append(("option-not-syn", "warning", n,
                  f"TCP packet without SYN carries the DSR option "
                  f"({_where(key)}); it does not start a DSR flow", None))
    return False


def _continue_flow(flow: FlowState, syn: bool, key: Key, n: int,
                   raw: list[RawFinding]) -> None:
    """Another option-carrying packet client -> backend of a known flow."""
    flow.option_packets += 1
    flow.counts[FWD] += 1
    if not syn:
        raw.append(("option-not-syn", "warning", n,
                    f"TCP packet without SYN carries the DSR option "
                    f"({_where(key)}); Cilium adds it to SYNs only", flow.index))


def _start_flow(w: WalkState, proto: int, key: Key, opt: bytes, *, n: int, rec: int,
                carrier: DsrValue | None = None) -> None:
    """A new DSR flow (client -> backend of ``key``), its 4-tuples indexed."""
    if len(key) == 36:
        src, dst = int.from_bytes(key[0:16], "big"), int.from_bytes(key[16:32], "big")
        sport, dport = int.from_bytes(key[32:34], "big"), int.from_bytes(key[34:36], "big")
    else:
        src, dst, sport, dport = KEY.unpack(key)
    flow = FlowState(len(w.flows), proto, client=(src, sport), backend=(dst, dport),
                     opt=opt, frame=n, rec=rec, family=6 if len(key) == 36 else 4,
                     carrier=carrier)
    flow.option_packets = 1
    flow.counts[FWD] = 1
    w.flows.append(flow)
    _register(flow, w.index)


def _count_on_flow(hit: Hit | None, buf: Any, ip: int, proto: int, n: int, *,
                   ttl_at: int = 8) -> None:
    """An IPv4 packet with options, an IPv6 or an inner packet on a flow's 4-tuple (not
    the flow's option packet); ``ttl_at``: where its TTL (hop limit) is."""
    if hit is None or hit[0].proto != proto:
        return
    flow, kind = hit
    flow.counts[kind] += 1
    if kind == RAW_REPLY and flow.raw_frame is None:
        flow.raw_frame = n
        flow.raw_ttl = buf[ip + ttl_at]


def _register(flow: FlowState, index: dict[Key, Hit]) -> None:
    """Index every 4-tuple a packet of this flow can have (later flows win)."""
    (c, cp), (b, bp) = flow.client, flow.backend
    pack = KEY.pack if flow.family == 4 else _pack6
    # network reading first, so the host reading wins if both name the same ip:port; a
    # flow with one reading (network order) registers it alone
    readings = ((flow.readings[1], REPLY_NET, FRONT_NET),) if flow.single else (
        (flow.readings[1], REPLY_NET, FRONT_NET), (flow.readings[0], REPLY_HOST, FRONT_HOST))
    for (svc, kind_reply, kind_front) in readings:
        if (":" in svc.ip) != (flow.family == 6):
            continue  # a service of the other family: no packet of this flow has it
        s = _ip_int(svc.ip)
        index[pack(s, c, svc.port, cp)] = (flow, kind_reply)
        index[pack(c, s, cp, svc.port)] = (flow, kind_front)
    index[pack(b, c, bp, cp)] = (flow, RAW_REPLY)
    index[pack(c, b, cp, bp)] = (flow, FWD)


def _pack6(src: int, dst: int, sport: int, dport: int) -> Key:
    return src.to_bytes(16, "big") + dst.to_bytes(16, "big") + sport.to_bytes(2, "big") + \
        dport.to_bytes(2, "big")


def _syn_without_option(flow: FlowState, n: int) -> RawFinding:
    (c, cp), (b, bp) = flow.client, flow.backend
    fam = flow.family
    return ("syn-without-option", "warning", n,
            f"SYN on DSR flow {hostport(addr_str(c, fam), cp)} -> "
            f"{hostport(addr_str(b, fam), bp)} without the DSR option: "
            "Cilium clears the flow's DSR state, its replies will not be rewritten",
            flow.index)


def _other_options(buf: Any, ip: int, ihl: int, *, n: int, raw: list[RawFinding],
                   key: Key) -> None:
    """Options present but the first is not a DSR option: is one further on?"""
    p, lim, first = ip + 20, ip + ihl, True
    while p < lim:
        t = buf[p]
        if t == 0:
            return
        if t == 1:  # no-operation: one byte
            p += 1
            first = False
            continue
        if p + 1 >= lim:
            return
        length = buf[p + 1]
        if t == dsropt.OPT_TYPE:
            _misplaced_dsr_option(length, first, p - ip, n=n, raw=raw, where=_where(key))
            return
        if length < 2:
            return
        p += length
        first = False


def _misplaced_dsr_option(length: int, first: bool, at: int, *, n: int,
                          raw: list[RawFinding], where: str) -> None:
    """A 0x9a option of the wrong length, or a DSR option that is not the first."""
    if length != dsropt.OPT_LEN:
        raw.append(("option-bad-length", "warning", n,
                    f"IPv4 option 0x9a with length {length}, not 8: not a DSR "
                    f"option a Cilium backend reads ({where})", None))
    elif not first:
        raw.append(("option-not-first", "warning", n,
                    f"DSR option at byte {at} of the IPv4 header, not the first "
                    f"option: a Cilium backend only reads the first ({where})", None))


# -- IPv6 -----------------------------------------------------------------------------------


def _ipv6(w: WalkState, buf: Any, ip: int, end: int, *, n: int, rec: int,
          geneve: DsrValue | None = None) -> None:
    """An IPv6 packet: its extension headers walked over (a DSR Destination Option
    starts or continues a flow), then counted on its flow by 4-tuple. ``geneve``: the
    Geneve option of the frame it was encapsulated in."""
    w.ipv6 += 1
    if ip + 40 > end:
        return
    stop = min(end, ip + 40 + ((buf[ip + 4] << 8) | buf[ip + 5]))
    nh, off, carrier = buf[ip + 6], ip + 40, geneve
    while nh in _EXT6 and off + 8 <= stop:
        ext_end = off + (buf[off + 1] + 1) * 8
        if nh == dsropt.NEXTHDR_DEST and carrier is None:
            carrier = _dest_option(w, buf, off, min(ext_end, stop), n=n)
        nh, off = buf[off], ext_end
    if nh not in (6, 17) or off + 4 > stop:
        return
    key = bytes(buf[ip + 8:ip + 40]) + bytes(buf[off:off + 4])
    if carrier is not None:
        w.option_packets += 1
        if _dsr_option_packet(w, buf, ip, off, stop, proto=nh, key=key, n=n, rec=rec,
                              carrier=carrier):
            return
    if w.index:
        hit = w.index.get(key)
        if hit is not None and hit[1] == FWD and hit[0].proto == 6 and off + 14 <= stop \
                and buf[off + 13] & 0x02 and carrier is None and hit[0].dispatch == "opt":
            w.raw.append(_syn_without_option(hit[0], n))
        _count_on_flow(hit, buf, ip, nh, n, ttl_at=7)


def _dest_option(w: WalkState, buf: Any, off: int, end: int, *, n: int) -> DsrValue | None:
    """The DSR option of a Destination Options header; a 0x1B option of another length
    is flagged."""
    value = dsropt.find_in_dest_opts(bytes(buf[off:end]))
    if value is None:
        p = off + 2
        while p + 2 <= end:
            if buf[p] == 0:
                p += 1
                continue
            if buf[p] == dsropt.OPT6_TYPE:
                if buf[p + 1] == dsropt.OPT6_LEN:
                    break  # the right length, cut off by the capture: nothing to say
                w.raw.append(("option-bad-length", "warning", n,
                              f"IPv6 destination option 0x1b with length {buf[p + 1]}, not "
                              f"{dsropt.OPT6_LEN}: not a DSR option a Cilium backend reads",
                              None))
                break
            p += 2 + buf[p + 1]
    return value


# -- Geneve ---------------------------------------------------------------------------------


def _geneve(w: WalkState, buf: Any, ip: int, end: int, *, n: int, rec: int) -> None:
    """A frame whose IPv4 packet (at ``ip``) may be UDP to 6081 carrying Geneve with an
    Ethernet frame inside: the inner IPv4 or IPv6 packet is the flow's, the Geneve DSR
    option its carrier."""
    ihl = (buf[ip] & 0x0F) * 4
    udp = ip + ihl
    if buf[ip + 9] != 17 or udp + 16 > end or buf[ip + 6] & 0x1F or buf[ip + 7] \
            or (buf[udp + 2] << 8) | buf[udp + 3] != dsropt.GENEVE_PORT:
        return
    gen = udp + 8
    opt_len = (buf[gen] & 0x3F) * 4
    inner = gen + 8 + opt_len
    if buf[gen] >> 6 or buf[gen + 2] != 0x65 or buf[gen + 3] != 0x58 or inner + 34 > end:
        return  # another Geneve version, or not Ethernet inside
    carrier = dsropt.find_in_geneve_options(bytes(buf[gen + 8:inner])) if opt_len else None
    et, iip = (buf[inner + 12] << 8) | buf[inner + 13], inner + 14
    if et == 0x86DD:
        _ipv6(w, buf, iip, end, n=n, rec=rec, geneve=carrier)
        return
    if et != 0x0800 or buf[iip] >> 4 != 4:
        return
    iihl = (buf[iip] & 0x0F) * 4
    proto, l4 = buf[iip + 9], iip + iihl
    if proto not in (6, 17) or l4 + 4 > end or buf[iip + 6] & 0x1F or buf[iip + 7]:
        return
    key = bytes(buf[iip + 12:iip + 20]) + bytes(buf[l4:l4 + 4])
    if carrier is not None:
        w.option_packets += 1
        if _dsr_option_packet(w, buf, iip, l4, end, proto=proto, key=key, n=n, rec=rec,
                              carrier=carrier):
            return
    if w.index:
        _count_on_flow(w.index.get(key), buf, iip, proto, n)
