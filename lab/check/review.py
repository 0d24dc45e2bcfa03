"""Review any capture for DSR flows and broken DSR replies.

:func:`review` walks a pcap or pcapng file once (see :mod:`lab.wire.pcapread`;
no scapy) and returns a :class:`ReviewResult`:

* the DSR flows: a TCP SYN or a UDP datagram whose FIRST IPv4 option is the
  DSR option (type 0x9a, length 8), in either byte order; the flow is
  (client ip:port -> backend ip:port), the service is what the option names;
* per flow, the replies seen: from the service address (rewritten, as DSR
  wants), or from the backend's own address to the client (not rewritten:
  the classic broken-DSR symptom), and the client's packets to the service
  itself (the LB node's side, before the DNAT);
* findings: a reply not rewritten, a flow with no reply in the file, the
  option on a TCP packet without SYN, the option present but not first (a
  Cilium backend only reads the first option), a 0x9a option of the wrong
  length, a SYN on a DSR flow's 4-tuple without the option (Cilium clears
  the flow's DSR state).

Only what can matter is decoded: IPv4 packets with options, and TCP/UDP
packets to or from a DSR client's address (looked up by 4-tuple). Link
types: Ethernet (VLAN tags skipped), Linux cooked SLL and SLL2 (``tcpdump
-i any``), raw IP and BSD loopback.

Which byte order a flow's option is in is decided by evidence when the
file has any (replies from, or client packets to, one reading's ip:port),
else by the other flows of the file, else by :func:`plausible_order`; the
other reading is always kept (``other_reading``).

Where the capture was taken changes what is expected: at a pod, replies
leave with the pod's address (the node rewrites them later); at the LB
node, no reply passes. Pass ``role`` (the manifest's roles are used by
:func:`review_paths`); without it the file itself is used as evidence (a
reply's TTL still at 64/128/255 was not routed yet: pod side; client
packets to the service: the LB node's side).
"""

from __future__ import annotations

import functools
import gc
import ipaddress
import json
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lab.capture.layout import MANIFEST, ROLES, CaptureError, Role
from lab.wire import dsropt
from lab.wire.dsropt import OptionOrder
from lab.wire.endpoint import Endpoint
from lab.wire.pcapread import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NAMES,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    CaptureFile,
    PcapError,
)

if TYPE_CHECKING:
    from lab.capture.capdir import CaptureDir

Severity = Literal["error", "warning", "info"]
FindingKind = Literal[
    "not-rewritten", "pod-side-reply", "no-reply", "option-not-syn", "option-not-first",
    "option-bad-length", "syn-without-option",
]
FlowStatus = Literal["rewritten", "not-rewritten", "pod-side", "lb-node", "no-reply"]
OrderBasis = Literal["forced", "replies", "frontend", "file", "plausible"]
Proto = Literal["tcp", "udp"]

PROGRESS_EVERY = 0x10000  # packets between progress callbacks
INITIAL_TTLS = frozenset((64, 128, 255))
_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100))
_PROTO_NAMES: dict[int, Proto] = {6: "tcp", 17: "udp"}
_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}

# index kinds: what a packet on a 4-tuple is to the flow it belongs to
_FWD, _RAW_REPLY, _REPLY_HOST, _REPLY_NET, _FRONT_HOST, _FRONT_NET = range(6)

__all__ = [
    "DsrFlow", "Endpoint", "Finding", "PcapError", "ReviewResult", "plausibility",
    "plausible_order", "review", "review_paths",
]


class ReviewError(ValueError):
    """An input that cannot be reviewed (not a pcap, a directory without a manifest)."""


@dataclass(slots=True)
class DsrFlow:
    """One DSR flow: client -> backend, carrying an option naming ``service``."""

    proto: Proto
    client: Endpoint
    backend: Endpoint  # the option-carrying packet's destination (after the DNAT)
    service: Endpoint  # the option, read in ``order``
    order: OptionOrder
    order_basis: OrderBasis
    other_reading: Endpoint  # the option read in the other byte order
    option_hex: str
    first_frame: int  # 1-based, as Wireshark numbers frames
    first_time: float
    option_packets: int  # packets of the flow carrying the option
    to_backend_packets: int  # client -> backend packets, with or without the option
    frontend_packets: int  # client -> service packets (the LB node's side)
    rewritten_replies: int  # service -> client
    unrewritten_replies: int  # backend -> client
    first_unrewritten_frame: int | None
    first_unrewritten_ttl: int | None
    status: FlowStatus
    note: str

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        for k in ("client", "backend", "service", "other_reading"):
            e = d[k]
            d[k] = {"ip": e.ip, "port": e.port}
        return d


@dataclass(slots=True)
class Finding:
    kind: FindingKind
    severity: Severity
    frame: int
    message: str
    flow: int | None = None  # index into ReviewResult.flows


@dataclass(frozen=True)
class ReviewResult:
    path: str
    format: str
    linktypes: list[str]
    role: Role | None
    point: str | None  # the capture point's name when a manifest names the file
    packets: int
    ipv4_packets: int
    option_packets: int  # IPv4 packets whose first option is 0x9a length 8 (any protocol)
    flows: list[DsrFlow]
    findings: list[Finding]
    skipped_linktypes: dict[str, int]  # packets of link types not decoded
    truncated_at: int | None  # byte offset where a truncated file ended (partial=True)
    seconds: float

    @property
    def services(self) -> dict[str, list[DsrFlow]]:
        """Flows by service ``ip:port``."""
        out: dict[str, list[DsrFlow]] = {}
        for f in self.flows:
            out.setdefault(f"{f.proto}/{f.service}", []).append(f)
        return out

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (endpoints as {"ip", "port"}); built by hand, it is fast."""
        statuses: dict[str, int] = {}
        for f in self.flows:
            statuses[f.status] = statuses.get(f.status, 0) + 1
        return {
            "path": self.path, "format": self.format, "linktypes": self.linktypes,
            "role": self.role, "point": self.point, "packets": self.packets,
            "ipv4_packets": self.ipv4_packets, "option_packets": self.option_packets,
            "counts": {s: self.count(s) for s in ("error", "warning", "info")},
            "statuses": statuses,
            "flows": [f.to_dict() for f in self.flows],
            "findings": [{"kind": x.kind, "severity": x.severity, "frame": x.frame,
                          "message": x.message, "flow": x.flow} for x in self.findings],
            "skipped_linktypes": self.skipped_linktypes, "truncated_at": self.truncated_at,
            "seconds": self.seconds,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# -- byte order plausibility ---------------------------------------------------------


def plausibility(ip: str, port: int) -> int:
    """How plausible ``ip``:``port`` is as a service (higher is more).

    Private, shared (CGNAT) addresses and NodePort-range or well-known ports
    score up; 0.x, loopback, multicast/reserved, .0/.255 hosts and port 0
    score down. The Lua dissector uses the same rule.
    """
    a, b, _c, d = (int(x) for x in ip.split("."))
    s = 0
    if a == 10 or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168) or (
            a == 100 and 64 <= b <= 127):
        s += 2
    if a in (0, 127) or a >= 224:
        s -= 3
    if d in (0, 255):
        s -= 1
    if port == 0:
        s -= 3
    if 30000 <= port <= 32767:
        s += 1
    if 1 <= port <= 1023:
        s += 1
    return s


def plausible_order(opt: bytes) -> OptionOrder:
    """The byte order whose reading of ``opt`` is more plausible; host on a tie."""
    (h_ip, h_port, _), (n_ip, n_port, _) = dsropt.decode_any(opt)
    return "host" if plausibility(h_ip, h_port) >= plausibility(n_ip, n_port) else "network"


# -- the walk --------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)
def _ip(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


@functools.lru_cache(maxsize=4096)
def _ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


Key = bytes  # src addr (4) + dst addr (4) + src port (2) + dst port (2), as on the wire


class _Flow:
    __slots__ = (
        "backend", "client", "counts", "first_frame", "first_rec", "index", "opt",
        "option_packets", "proto", "raw_frame", "raw_ttl", "readings",
    )

    def __init__(self, index: int, proto: int, *, client: tuple[int, int],
                 backend: tuple[int, int], opt: bytes, frame: int, rec: int) -> None:
        self.index = index
        self.proto = proto
        self.client = client
        self.backend = backend
        self.opt = opt
        self.first_frame = frame
        self.first_rec = rec
        self.option_packets = 0
        # packets seen per index kind: _FWD, _RAW_REPLY, _REPLY_HOST, _REPLY_NET, ...
        self.counts = [0, 0, 0, 0, 0, 0]
        self.raw_frame: int | None = None
        self.raw_ttl: int | None = None
        self.readings = _readings(opt)


_READINGS: dict[bytes, tuple[Endpoint, Endpoint]] = {}


def _readings(opt: bytes) -> tuple[Endpoint, Endpoint]:
    """The option's (host, network) readings; cached, most flows share a few options."""
    got = _READINGS.get(opt)
    if got is None:
        if len(_READINGS) > 100_000:
            _READINGS.clear()
        (h_ip, h_port, _), (n_ip, n_port, _) = dsropt.decode_any(opt)
        got = _READINGS[opt] = (Endpoint(h_ip, h_port), Endpoint(n_ip, n_port))
    return got


RawFinding = tuple[FindingKind, Severity, int, str, "int | None"]


@dataclass
class _Walk:
    """Mutable state of one pass over a file."""

    flows: list[_Flow] = field(default_factory=list)
    index: dict[Key, tuple[_Flow, int]] = field(default_factory=dict)
    raw: list[RawFinding] = field(default_factory=list)
    packets: int = 0
    ipv4: int = 0
    option_packets: int = 0
    skipped: dict[int, int] = field(default_factory=dict)


def _l3_offset(buf: Any, lt: int, start: int, caplen: int, skipped: dict[int, int]) -> int:
    """Where the IPv4 header starts in a frame of link type ``lt``; -1 if not IPv4."""
    if lt == LINKTYPE_ETHERNET:
        if caplen < 34:
            return -1
        ip = start + 14
        et = (buf[start + 12] << 8) | buf[start + 13]
        while et in _VLAN_TYPES and ip + 4 <= start + caplen:
            et = (buf[ip + 2] << 8) | buf[ip + 3]
            ip += 4
        return ip if et == 0x0800 else -1
    if lt == LINKTYPE_LINUX_SLL:
        ok = caplen >= 36 and buf[start + 14] == 8 and buf[start + 15] == 0
        return start + 16 if ok else -1
    if lt == LINKTYPE_LINUX_SLL2:
        ok = caplen >= 40 and buf[start] == 8 and buf[start + 1] == 0
        return start + 20 if ok else -1
    if lt in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return start
    if lt == LINKTYPE_NULL:  # 4-byte AF_INET (2) in the writer's byte order
        ok = caplen >= 24 and 2 in (buf[start], buf[start + 3])
        return start + 4 if ok else -1
    skipped[lt] = skipped.get(lt, 0) + 1
    return -1


def _on_hit(buf: Any, ip: int, end: int, hit: tuple[_Flow, int], *, n: int,
            raw: list[RawFinding]) -> None:
    """A packet (IPv4, no options) on one of a flow's 4-tuples."""
    flow, kind = hit
    if buf[ip + 9] != flow.proto or ip + 24 > end or buf[ip + 6] & 0x1F or buf[ip + 7]:
        return  # other protocol, or a non-first fragment (no ports)
    flow.counts[kind] += 1
    if kind == _FWD:
        if flow.proto == 6 and ip + 34 <= end and buf[ip + 33] & 0x02:
            raw.append(_syn_without_option(flow, n))
    elif kind == _RAW_REPLY and flow.raw_frame is None:
        flow.raw_frame = n
        flow.raw_ttl = buf[ip + 8]


def _walk(cap: CaptureFile, w: _Walk, progress: Callable[[int], None] | None) -> None:
    """One pass: find option packets, create flows, count packets on flows' 4-tuples.

    The hot path (Ethernet, IPv4 without options) is one 3-byte compare, one
    12-byte slice and one dict lookup, the lookup only once a DSR flow is known.
    """
    buf = cap.buf
    index, flows, raw, skipped = w.index, w.flows, w.raw, w.skipped
    eth = LINKTYPE_ETHERNET  # locals, not globals, in the per-packet loop
    ipv4_no_options = b"\x08\x00\x45"  # ethertype IPv4, version 4 + IHL 5
    fwd = _FWD
    opt_type, opt_len = dsropt.OPT_TYPE, dsropt.OPT_LEN
    report = progress is not None
    n = w.packets
    ipv4 = 0
    try:
        for lt, start, caplen, rec in cap.records():
            n += 1
            if report and not n & 0xFFFF:
                progress(rec)  # type: ignore[misc]
            if lt == eth and buf[start + 12:start + 15] == ipv4_no_options:
                ipv4 += 1
                if index and caplen >= 38:
                    hit = index.get(buf[start + 26:start + 38])
                    if hit is not None:
                        _on_hit(buf, start + 14, start + caplen, hit, n=n, raw=raw)
                continue
            ip = _l3_offset(buf, lt, start, caplen, skipped)
            end = start + caplen
            if ip < 0 or ip + 20 > end:
                continue
            vihl = buf[ip]
            if vihl == 0x45:
                ipv4 += 1
                if index:
                    hit = index.get(buf[ip + 12:ip + 24])
                    if hit is not None:
                        _on_hit(buf, ip, end, hit, n=n, raw=raw)
                continue
            if vihl >> 4 != 4:
                continue
            ipv4 += 1
            ihl = (vihl & 0x0F) * 4
            if ihl < 20 or ip + ihl > end:
                continue
            # -- IPv4 with options: is the first one the DSR option?
            first = ihl >= 28 and buf[ip + 20] == opt_type and buf[ip + 21] == opt_len
            if first:
                w.option_packets += 1
            proto = buf[ip + 9]
            l4 = ip + ihl
            is_l4 = proto in (6, 17) and l4 + 4 <= end and not (
                buf[ip + 6] & 0x1F or buf[ip + 7])
            key = buf[ip + 12:ip + 20] + (buf[l4:l4 + 4] if is_l4 else b"\0\0\0\0")
            if not first:
                _other_options(buf, ip, ihl, n=n, raw=raw, key=key)
            elif is_l4:
                syn = proto == 17 or (l4 + 14 <= end and buf[l4 + 13] & 0x02)
                hit = index.get(key)
                if hit is not None and hit[1] == fwd and hit[0].proto == proto:
                    flow = hit[0]
                    flow.option_packets += 1
                    flow.counts[fwd] += 1
                    if not syn:
                        raw.append(("option-not-syn", "warning", n,
                                    f"TCP packet without SYN carries the DSR option "
                                    f"({_where(key)}); Cilium adds it to SYNs only",
                                    flow.index))
                    continue
                if not syn:
                    raw.append(("option-not-syn", "warning", n,
                                f"TCP packet without SYN carries the DSR option "
                                f"({_where(key)}); it does not start a DSR flow", None))
                else:
                    src, dst, sport, dport = _KEY.unpack(key)
                    flow = _Flow(len(flows), proto, client=(src, sport), backend=(dst, dport),
                                 opt=bytes(buf[ip + 20:ip + 28]), frame=n, rec=rec)
                    flow.option_packets = 1
                    flow.counts[fwd] = 1
                    flows.append(flow)
                    _register(flow, index)
                    continue
            if is_l4 and index:
                hit = index.get(key)
                if hit is not None and hit[0].proto == proto:
                    flow, kind = hit
                    flow.counts[kind] += 1
                    if kind == _RAW_REPLY and flow.raw_frame is None:
                        flow.raw_frame = n
                        flow.raw_ttl = buf[ip + 8]
    finally:  # also when a truncated record ends the walk (partial reviews)
        w.packets = n
        w.ipv4 += ipv4


_KEY = struct.Struct("!IIHH")


def _where(key: Key) -> str:
    src, dst, sport, dport = _KEY.unpack(key)
    return f"{_ip(src)}:{sport} -> {_ip(dst)}:{dport}"


def _syn_without_option(flow: _Flow, n: int) -> RawFinding:
    (c, cp), (b, bp) = flow.client, flow.backend
    return ("syn-without-option", "warning", n,
            f"SYN on DSR flow {_ip(c)}:{cp} -> {_ip(b)}:{bp} without the DSR option: "
            "Cilium clears the flow's DSR state, its replies will not be rewritten",
            flow.index)


def _register(flow: _Flow, index: dict[Key, tuple[_Flow, int]]) -> None:
    """Index every 4-tuple a packet of this flow can have (later flows win)."""
    (c, cp), (b, bp) = flow.client, flow.backend
    # network reading first, so the host reading wins if both name the same ip:port
    for (svc, kind_reply, kind_front) in ((flow.readings[1], _REPLY_NET, _FRONT_NET),
                                          (flow.readings[0], _REPLY_HOST, _FRONT_HOST)):
        s = _ip_int(svc.ip)
        index[_KEY.pack(s, c, svc.port, cp)] = (flow, kind_reply)
        index[_KEY.pack(c, s, cp, svc.port)] = (flow, kind_front)
    index[_KEY.pack(b, c, bp, cp)] = (flow, _RAW_REPLY)
    index[_KEY.pack(c, b, cp, bp)] = (flow, _FWD)


def _other_options(buf: Any, ip: int, ihl: int, *, n: int, raw: list[RawFinding],
                   key: Key) -> None:
    """Options present but the first is not a DSR option: is one further on?"""
    p, lim, first = ip + 20, ip + ihl, True
    where = _where(key)
    while p < lim:
        t = buf[p]
        if t == 0:
            return
        if t == 1:
            p += 1
            first = False
            continue
        if p + 1 >= lim:
            return
        length = buf[p + 1]
        if t == dsropt.OPT_TYPE:
            if length != dsropt.OPT_LEN:
                raw.append(("option-bad-length", "warning", n,
                            f"IPv4 option 0x9a with length {length}, not 8: not a DSR "
                            f"option a Cilium backend reads ({where})", None))
            elif not first:
                raw.append(("option-not-first", "warning", n,
                            f"DSR option at byte {p - ip} of the IPv4 header, not the first "
                            f"option: a Cilium backend only reads the first ({where})", None))
            return
        if length < 2:
            return
        p += length
        first = False


# -- deciding -----------------------------------------------------------------------------


def _desc(f: _Flow, service: Endpoint) -> str:
    return (f"{_PROTO_NAMES[f.proto]} {_ip(f.client[0])}:{f.client[1]} -> "
            f"{_ip(f.backend[0])}:{f.backend[1]} (service {service})")


def _evidence(f: _Flow) -> tuple[int, OrderBasis]:
    """The reading (0 host, 1 network) the file's packets back, or -1."""
    c = f.counts
    for a, b, basis in ((c[_REPLY_HOST], c[_REPLY_NET], "replies"),
                        (c[_FRONT_HOST], c[_FRONT_NET], "frontend")):
        if a and not b:
            return 0, basis  # type: ignore[return-value]
        if b and not a:
            return 1, basis  # type: ignore[return-value]
    return -1, "plausible"


def _decide(w: _Walk, cap: CaptureFile, order: OptionOrder | None, role: Role | None,
            ) -> tuple[list[DsrFlow], list[Finding]]:
    chosen: list[tuple[int, OrderBasis]]
    votes = [0, 0]
    if order is not None:
        chosen = [(0 if order == "host" else 1, "forced")] * len(w.flows)
    else:
        chosen = [_evidence(f) for f in w.flows]
        for ri, _basis in chosen:
            if ri >= 0:
                votes[ri] += 1
    flows: list[DsrFlow] = []
    findings = [Finding(k, s, fr, m, fl) for (k, s, fr, m, fl) in w.raw]
    ts = cap.timestamp
    for f, (seen, seen_basis) in zip(w.flows, chosen, strict=True):
        ri, basis = seen, seen_basis
        if ri < 0:
            if votes[0] != votes[1]:
                ri, basis = (0 if votes[0] > votes[1] else 1), "file"
            else:
                ri = 0 if plausible_order(f.opt) == "host" else 1
        c = f.counts
        rewritten = c[_REPLY_NET] if ri else c[_REPLY_HOST]
        front = c[_FRONT_NET] if ri else c[_FRONT_HOST]
        raw_replies = c[_RAW_REPLY]
        service = f.readings[ri]
        status: FlowStatus
        if rewritten:
            status = "rewritten"
            note = f"{rewritten} replies from the service address"
            if raw_replies:
                note += (f"; {raw_replies} also seen before the rewrite, from the "
                         "backend's address")
        elif raw_replies:
            ttl = f.raw_ttl
            frame = f.raw_frame if f.raw_frame is not None else f.first_frame
            if role == "pod":
                status = "pod-side"
                note = ("replies leave the pod with its own address; its node rewrites "
                        "them (expected at a pod)")
            elif role is None and ttl in INITIAL_TTLS:
                status = "pod-side"
                note = (f"replies from the backend's address with TTL {ttl} (not routed "
                        "yet): this capture looks taken inside the pod or on its veth, "
                        "before the node rewrites them")
                findings.append(Finding(
                    "pod-side-reply", "warning", frame,
                    f"reply of {_desc(f, service)} leaves with the backend's address "
                    f"{_ip(f.backend[0])}:{f.backend[1]}, TTL {ttl}: expected if captured "
                    "at the pod; broken DSR if captured on the node's uplink", f.index))
            else:
                status = "not-rewritten"
                note = (f"{raw_replies} replies from the backend's address "
                        f"{_ip(f.backend[0])}:{f.backend[1]} instead of the service's")
                findings.append(Finding(
                    "not-rewritten", "error", frame,
                    f"reply of {_desc(f, service)} left the backend with source "
                    f"{_ip(f.backend[0])}:{f.backend[1]}, not the service address "
                    f"{service}: the DSR reverse translation did not happen "
                    f"(TTL {ttl})", f.index))
        elif role == "lb-node" or (role is None and front):
            status = "lb-node"
            note = ("no reply, as expected on the LB node: replies go from the backend "
                    "straight to the client")
            if front:
                note += f" ({front} client packets to the service seen)"
        else:
            status = "no-reply"
            note = "no reply in this file"
            findings.append(Finding(
                "no-reply", "warning", f.first_frame,
                f"no reply to {_desc(f, service)} in this file (neither from the service "
                "nor from the backend's address)", f.index))
        flows.append(DsrFlow(
            proto=_PROTO_NAMES[f.proto],
            client=Endpoint(_ip(f.client[0]), f.client[1]),
            backend=Endpoint(_ip(f.backend[0]), f.backend[1]),
            service=service,
            order=dsropt.ORDERS[ri],
            order_basis=basis,
            other_reading=f.readings[1 - ri],
            option_hex=f.opt.hex(),
            first_frame=f.first_frame,
            first_time=ts(f.first_rec),
            option_packets=f.option_packets,
            to_backend_packets=f.counts[_FWD],
            frontend_packets=front,
            rewritten_replies=rewritten,
            unrewritten_replies=raw_replies,
            first_unrewritten_frame=f.raw_frame,
            first_unrewritten_ttl=f.raw_ttl,
            status=status,
            note=note,
        ))
    findings.sort(key=lambda x: (_SEVERITY_RANK[x.severity], x.frame))
    return flows, findings


# -- entry points ---------------------------------------------------------------------------


def review(path: str | Path, *, order: OptionOrder | None = None, role: Role | None = None,
           point: str | None = None, partial: bool = False,
           progress: Callable[[int, int], None] | None = None) -> ReviewResult:
    """Review one pcap/pcapng file for DSR flows and broken DSR replies.

    ``order`` forces the option's byte order (default: decided per flow,
    see the module doc). ``role`` says where the capture was taken (it
    changes what is expected, see the module doc). ``partial`` reviews the
    packets before a truncated end instead of raising. ``progress`` is
    called now and then with (bytes done, file size).

    Raises :class:`~lab.wire.pcapread.PcapError` (file and byte offset in the
    message) for anything that is not a readable capture.
    """
    if order is not None and order not in dsropt.ORDERS:
        raise ValueError(f"order must be one of {dsropt.ORDERS}, not {order!r}")
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    t0 = time.perf_counter()
    w = _Walk()
    # the walk allocates many small acyclic objects (keys, flows): the cyclic GC
    # would only rescan them over and over
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _review(path, w, t0, order=order, role=role, point=point, partial=partial,
                       progress=progress)
    finally:
        if gc_was_enabled:
            gc.enable()


def _review(path: str | Path, w: _Walk, t0: float, *, order: OptionOrder | None,
            role: Role | None, point: str | None, partial: bool,
            progress: Callable[[int, int], None] | None) -> ReviewResult:
    truncated_at: int | None = None
    with CaptureFile(path) as cap:
        size = cap.size
        cb = None if progress is None else (lambda done: progress(done, size))
        try:
            _walk(cap, w, cb)
        except PcapError as exc:
            if not (partial and exc.truncated):
                raise
            truncated_at = exc.offset
        flows, findings = _decide(w, cap, order, role)
        if progress is not None:
            progress(size, size)
        result = ReviewResult(
            path=str(path),
            format=cap.format,
            linktypes=sorted(LINKTYPE_NAMES.get(lt, f"linktype {lt}") for lt in cap.linktypes),
            role=role,
            point=point,
            packets=w.packets,
            ipv4_packets=w.ipv4,
            option_packets=w.option_packets,
            flows=flows,
            findings=findings,
            skipped_linktypes={LINKTYPE_NAMES.get(k, f"linktype {k}"): v
                               for k, v in sorted(w.skipped.items())},
            truncated_at=truncated_at,
            seconds=time.perf_counter() - t0,
        )
    return result


@dataclass(frozen=True)
class Target:
    """A file to review and what a manifest says about it."""

    path: Path
    role: Role | None = None
    point: str | None = None


def _capture_dir(directory: Path) -> CaptureDir:
    # the manifest model loads pydantic: only files inside capture sets pay for it
    from lab.capture.capdir import CaptureDir  # noqa: PLC0415

    return CaptureDir.load(directory)


def _manifest_point(path: Path) -> Target:
    manifest = path.parent / MANIFEST
    if manifest.is_file():
        try:
            cd = _capture_dir(path.parent)
        except CaptureError:
            return Target(path)
        for p in cd.points:
            if p.file.resolve() == path.resolve():
                return Target(path, p.role, p.name)
    return Target(path)


def targets(paths: Iterable[str | Path]) -> list[Target]:
    """Expand capture directories (their manifest's pcaps, with roles) and files.

    A file that sits beside a manifest naming it gets its role from there.
    """
    out: list[Target] = []
    for raw_path in paths:
        p = Path(raw_path)
        if p.is_dir():
            try:
                cd = _capture_dir(p)
            except CaptureError as exc:
                raise ReviewError(f"{p}: a directory must be a capture set with a "
                                  f"{MANIFEST} ({exc})") from None
            out += [Target(pt.file, pt.role, pt.name) for pt in cd.points]
        else:
            out.append(_manifest_point(p))
    return out


def review_paths(paths: Iterable[str | Path], *, order: OptionOrder | None = None,
                 role: Role | None = None, partial: bool = False,
                 ) -> list[ReviewResult | PcapError]:
    """:func:`review` for files and capture directories; a bad file gives its error.

    ``role`` applies to files whose role no manifest gives.
    """
    results: list[ReviewResult | PcapError] = []
    for t in targets(paths):
        try:
            results.append(review(t.path, order=order, role=t.role or role, point=t.point,
                                  partial=partial))
        except PcapError as exc:
            results.append(exc)
    return results
