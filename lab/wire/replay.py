"""A capture file made ready to replay from the lab's client: its client's packets, as
raw IPv4, optionally moved onto the lab's addresses.

:func:`plan_replay` reads a pcap or pcapng file (the framing and every
refusal are :mod:`lab.wire.pcapread`'s: a missing file, a directory, a file
that is not a capture is a :class:`~lab.wire.pcapread.PcapError` naming it),
decodes each frame with scapy by its link type (Ethernet, raw IP, Linux
cooked, BSD loopback) and keeps the IPv4 TCP and UDP packets.

The capture's *client* and *service* are the source and the destination
address and port of its first IPv4 TCP or UDP packet. Only what the client
sent to the service is replayed, in file order, up to ``limit`` packets; every
other packet is skipped and counted by reason (the service's replies, other
hosts' and other destinations' packets, fragments, packets the capture cut
short, non-IPv4 frames, what comes after the limit).

With a :class:`Rewrite` the client's address becomes the lab's client and the
service's address and port the lab's (the node the client addresses and its
node port); the IP header checksum and the TCP or UDP checksum are then
computed again by scapy. Without one, the packets are sent as captured
(checksums recomputed all the same). The input file is only ever read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from scapy.config import conf
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Packet

from lab.errors import LabError
from lab.wire.endpoint import Endpoint
from lab.wire.pcapread import PcapError, open_capture

# skip reasons, as the step's summary prints them
NOT_IPV4 = "not IPv4"
NOT_TCP_UDP = "not TCP or UDP"
NOT_FROM_CLIENT = "not sent by the client"
NOT_TO_SERVICE = "to another destination"
FRAGMENT = "fragments"
CUT_SHORT = "cut short by the capture"
OVER_LIMIT = "over the limit"


class ReplayError(LabError, ValueError):
    """A capture file that holds nothing to replay; names the file."""


@dataclass(frozen=True)
class Rewrite:
    """Where the capture's client and service go: the lab's client, the lab's service."""

    client: str
    service: Endpoint


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay sends and what it left out."""

    path: Path
    client: str  # the capture's client address
    service: Endpoint  # the capture's service
    proto: str  # "tcp" or "udp": the first packet's, the only one replayed
    packets: list[bytes]  # raw IPv4, in file order, checksums computed
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> packets
    rewrite: Rewrite | None = None

    def describe(self) -> str:
        """``172.18.0.1 -> 172.18.0.1, 172.18.0.2:32000 -> 172.18.0.2:32000`` (or as captured)."""
        if self.rewrite is None:
            return f"{self.client} to {self.service} as captured"
        return (f"{self.client} -> {self.rewrite.client}, "
                f"{self.service} -> {self.rewrite.service}")

    def skipped_text(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in self.skipped.items()) or "none"


def _decode(linktype: int, data: bytes) -> Packet | None:
    """One frame decoded by scapy for its link type; ``None`` for a link type scapy
    does not know."""
    cls = cast("type[Packet] | None", conf.l2types.get(linktype))
    if cls is None:
        return None
    return cls(data)


def _ipv4(frame: Packet) -> IP | None:
    layer = frame.getlayer(IP)
    return None if layer is None else cast(IP, layer)


def _l4(ip: IP) -> TCP | UDP | None:
    if isinstance(ip.payload, TCP | UDP):
        return ip.payload
    return None


def _whole(ip: IP) -> IP | None:
    """The packet as its own IPv4 header says it is (Ethernet padding cut off), or
    ``None`` when the capture holds less (a snap length)."""
    raw = bytes(ip)
    total = int(ip.len)
    if total < int(ip.ihl) * 4 or len(raw) < total:
        return None
    return IP(raw[:total])


def rebuilt(ip: IP, *, src: str | None = None, dst: str | None = None,
            dport: int | None = None, sport: int | None = None) -> bytes:
    """``ip`` with the given fields replaced and its IP and L4 checksums (and
    lengths) computed again by scapy."""
    pkt = IP(bytes(ip))
    if src is not None:
        pkt.src = src
    if dst is not None:
        pkt.dst = dst
    del pkt.chksum, pkt.len
    l4 = _l4(pkt)
    if l4 is not None:
        if sport is not None:
            l4.sport = sport
        if dport is not None:
            l4.dport = dport
        del l4.chksum
        if isinstance(l4, UDP):
            del l4.len
    return bytes(pkt)


class _Planner:
    """Walks a capture's packets once, deciding for each one."""

    def __init__(self, path: Path, rewrite: Rewrite | None, limit: int) -> None:
        self.path = path
        self.rewrite = rewrite
        self.limit = limit
        self.client: str | None = None
        self.service: Endpoint | None = None
        self.proto = ""
        self.packets: list[bytes] = []
        self.skipped: Counter[str] = Counter()
        self.unknown_links: set[int] = set()

    def take(self, linktype: int, data: bytes) -> None:
        if len(self.packets) >= self.limit:
            self.skipped[OVER_LIMIT] += 1
            return
        frame = _decode(linktype, data)
        if frame is None:
            self.unknown_links.add(linktype)
        ip = None if frame is None else _ipv4(frame)
        if ip is None or int(ip.version) != 4:
            self.skipped[NOT_IPV4] += 1
            return
        self.take_ipv4(ip)

    def take_ipv4(self, ip: IP) -> None:
        if int(ip.flags) & 1 or int(ip.frag):  # MF, or an offset: not the whole datagram
            self.skipped[FRAGMENT] += 1
            return
        l4 = _l4(ip)
        if l4 is None:
            self.skipped[NOT_TCP_UDP] += 1
            return
        proto = "tcp" if isinstance(l4, TCP) else "udp"
        if self.client is None:  # the first TCP/UDP packet names the client and service
            self.client = str(ip.src)
            self.service = Endpoint(str(ip.dst), int(l4.dport))
            self.proto = proto
        if str(ip.src) != self.client:
            self.skipped[NOT_FROM_CLIENT] += 1
            return
        if (str(ip.dst), int(l4.dport)) != self.service or proto != self.proto:
            self.skipped[NOT_TO_SERVICE] += 1
            return
        whole = _whole(ip)
        if whole is None:
            self.skipped[CUT_SHORT] += 1
            return
        rw = self.rewrite
        self.packets.append(rebuilt(whole) if rw is None else rebuilt(
            whole, src=rw.client, dst=rw.service.ip, dport=rw.service.port))

    def plan(self) -> ReplayPlan:
        if self.client is None or self.service is None or not self.packets:
            seen = ", ".join(f"{n} {why}" for why, n in self.skipped.items()) or "no packets"
            links = (f"; link types scapy does not decode: "
                     f"{', '.join(str(lt) for lt in sorted(self.unknown_links))}"
                     if self.unknown_links else "")
            raise ReplayError(f"{self.path}: nothing to replay: no IPv4 TCP or UDP packet "
                              f"from a client ({seen}{links})")
        return ReplayPlan(self.path, self.client, self.service, self.proto, self.packets,
                          dict(self.skipped), self.rewrite)


def plan_replay(path: str | Path, *, rewrite: Rewrite | None = None,
                limit: int = 1000) -> ReplayPlan:
    """The packets of ``path`` that its client sent to its service (see the module doc),
    at most ``limit``, rewritten onto ``rewrite`` when given.

    Raises :class:`PcapError` for a file that cannot be read as a capture and
    :class:`ReplayError` for one that holds nothing to replay, both naming it.
    """
    p = Path(path)
    planner = _Planner(p, rewrite, limit)
    with open_capture(p) as cap:
        for linktype, start, caplen, _rec in cap.records():
            planner.take(linktype, bytes(cap.buf[start:start + caplen]))
    return planner.plan()


__all__ = ["PcapError", "ReplayError", "ReplayPlan", "Rewrite",
           "plan_replay", "rebuilt"]
