"""Captured packets as flat, comparable records (scapy does the parsing).

:func:`read_pcap` turns a capture file into :class:`Pkt` records: addresses,
ports, TCP flags, IP header length, the raw IP options and the decoded DSR
option, payload length and whether the IP and L4 checksums are right.
Claims, traces and the report work on these records, never on raw bytes.

IPv4 and IPv6 both make records (``family``); an IPv6 packet's DSR
Destination Option is decoded into ``carrier``. A Geneve-encapsulated frame
(UDP port 6081, an Ethernet frame inside) is one record of its INNER packet
(the flow's), with the outer headers in ``outer`` and a DSR Geneve option in
``carrier``: flows are keyed by the inner packet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, cast

from scapy.layers.inet import (
    ICMP,
    IP,
    TCP,
    UDP,
    IPerror,
    IPOption_NOP,
    IPOption_RR,
    IPOption_Timestamp,
    TCPerror,
    UDPerror,
    in4_chksum,
)
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import PcapReader, checksum

from lab.wire import dsropt
from lab.wire.dsropt import DsrValue, hostport

TCP_FLAG_NAMES = "FSRPAUEC"  # bit 0 .. bit 7
_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
ICMP6_PACKET_TOO_BIG = 2
ICMP6_ERRORS = (1, 2, 3, 4)  # unreachable, packet too big, time exceeded, parameter problem
_EXT6 = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options: walked over


@dataclass(frozen=True)
class Outer:
    """The outer headers of an encapsulated frame (node to node)."""

    src: str
    dst: str
    sport: int
    dport: int
    vni: int
    ttl: int
    proto: str = "geneve"

    def __str__(self) -> str:
        return (f"{self.proto} {hostport(self.src, self.sport)} > "
                f"{hostport(self.dst, self.dport)} vni={self.vni}")


@dataclass(frozen=True)
class Pkt:
    """One IPv4 packet as seen at one capture point."""

    # Wireshark's frame number: 1-based, counting every frame of its capture file
    # (ARP, IPv6 and all), so "frame 7" here is frame 7 in Wireshark and tshark
    frame: int
    time: float
    src: str
    dst: str
    proto: str  # "tcp", "udp", or the IP protocol number as text
    sport: int | None
    dport: int | None
    flags: str  # TCP flags in tcpdump's order of letters, e.g. "S", "SA", "A", "FA", "PA"
    ttl: int
    ip_id: int
    ihl: int
    ip_len: int
    options: bytes
    payload_len: int
    ip_csum_ok: bool
    l4_csum_ok: bool | None  # None when the L4 header is not complete
    payload: bytes = b""
    seq: int | None = None  # TCP only
    ack: int | None = None  # TCP only
    mac_src: str = ""
    mac_dst: str = ""
    # ICMP only: type, code, the next-hop MTU of a fragmentation-needed (3/4), and the
    # packet an error quotes (its addresses, protocol and ports)
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_mtu: int | None = None
    quoted: tuple[str, str, str, int | None, int | None] | None = None  # src dst proto sp dp
    # an IPv4 fragment: its offset in bytes and the more-fragments flag (a later
    # fragment has no L4 header: no ports, its payload the datagram's bytes it carries)
    frag_offset: int = 0
    more_fragments: bool = False
    family: int = 4  # 4 or 6: the (inner) packet's IP version
    # a DSR carrier other than the IPv4 option: the IPv6 Destination Option, the Geneve
    # option of the frame's outer headers
    carrier: DsrValue | None = None
    outer: Outer | None = None  # an encapsulated frame's outer headers

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.frag_offset > 0

    @property
    def has_dsr_option(self) -> bool:
        """The IPv4 DSR option (first, type 0x9a length 8)."""
        opt = self.options
        return len(opt) >= dsropt.OPT_LEN and (opt[0], opt[1]) == (dsropt.OPT_TYPE, dsropt.OPT_LEN)

    @property
    def has_dsr(self) -> bool:
        """Any DSR carrier: the IPv4 option, the IPv6 option or the Geneve option."""
        return self.carrier is not None or self.has_dsr_option

    def dsr(self, order: dsropt.OptionOrder = "host") -> DsrValue | None:
        """The DSR carrier decoded (an IPv4 option read in ``order``), or None."""
        if self.carrier is not None:
            return self.carrier
        if self.has_dsr_option:
            return dsropt.value4(self.options, order)
        return None

    @property
    def syn(self) -> bool:
        return "S" in self.flags and "A" not in self.flags

    @property
    def synack(self) -> bool:
        return "S" in self.flags and "A" in self.flags

    def endpoint(self, side: str) -> str:
        if side == "src":
            return hostport(self.src, self.sport)
        return hostport(self.dst, self.dport)

    def summary(self) -> str:
        """One line: ``frame 3: tcp 172.18.0.1:40000 > ...``; an encapsulated frame says
        its outer headers first, an IPv6 packet its DSR option."""
        inner = self._summary()
        if self.outer is not None:
            head = f"frame {self.frame}: "
            dsr = f" dsr={self.carrier}" if self.carrier is not None else ""
            return f"{head}{self.outer}{dsr} | {inner[len(head):]}"
        return inner

    def _summary(self) -> str:
        if self.icmp_type is not None:
            q = (f" quoting {self.quoted[2]} {self.quoted[0]}:{self.quoted[3]} > "
                 f"{self.quoted[1]}:{self.quoted[4]}" if self.quoted else "")
            mtu = f" mtu={self.icmp_mtu}" if self.icmp_mtu is not None else ""
            return (f"frame {self.frame}: icmp {self.src} > {self.dst} type={self.icmp_type}/"
                    f"{self.icmp_code}{mtu}{q} len={self.ip_len} ttl={self.ttl}")
        opt = f" opt={self.options.hex()}" if self.options else ""
        fl = f" [{self.flags}]" if self.proto == "tcp" else ""
        if self.is_fragment:
            opt += f" frag={self.frag_offset}{'+MF' if self.more_fragments else ''}"
        if self.family == 6:
            dsr = f" dsr={self.carrier}" if self.carrier and self.outer is None else ""
            return (f"frame {self.frame}: {self.proto} {self.endpoint('src')} > "
                    f"{self.endpoint('dst')}{fl} len={self.ip_len} hlim={self.ttl}{dsr}"
                    f" payload={self.payload_len}")
        return (f"frame {self.frame}: {self.proto} {self.src}:{self.sport} > "
                f"{self.dst}:{self.dport}{fl} ihl={self.ihl} len={self.ip_len} ttl={self.ttl}{opt}"
                f" payload={self.payload_len}")


def tcp_flag_string(bits: int) -> str:
    order = "SFRPAUEC"  # print SYN first, like "SA" for SYN+ACK
    bit_of = {name: 1 << i for i, name in enumerate(TCP_FLAG_NAMES)}
    return "".join(ch for ch in order if bits & bit_of[ch])


def from_scapy(frame: Packet, number: int) -> Pkt | None:
    """A record for an IPv4 or IPv6 frame, ``number`` its frame number in its file
    (1-based, as Wireshark's); ``None`` for anything else. A Geneve frame is its inner
    packet's record, with the outer headers."""
    layer = frame.getlayer(IP)
    if layer is not None and (encap := _geneve(cast(IP, layer), frame, number)) is not None:
        return encap
    if layer is None or (isinstance(frame, Ether) and isinstance(frame.payload, IPv6)):
        six = frame.getlayer(IPv6)
        return _from_ipv6(cast(IPv6, six), frame, number) if six is not None else None
    ip = cast(IP, layer)
    raw_ip = bytes(ip)
    ihl = int(ip.ihl)
    hdr = raw_ip[: ihl * 4]
    ip_ok = len(hdr) >= 20 and checksum(hdr) == 0
    options = hdr[20:]
    proto_num = int(ip.proto)
    sport = dport = None
    flags = ""
    payload = b""
    l4_ok: bool | None = None
    seq = ack = None
    l4_bytes = raw_ip[ihl * 4 : int(ip.len)]
    frag_offset, more = int(ip.frag) * 8, bool(int(ip.flags) & 1)
    if frag_offset:  # a later fragment: no L4 header, only the datagram's bytes
        payload = l4_bytes
    elif proto_num == 6 and isinstance(ip.payload, TCP):
        tcp = ip[TCP]
        sport, dport = int(tcp.sport), int(tcp.dport)
        flags = tcp_flag_string(int(tcp.flags))
        seq, ack = int(tcp.seq), int(tcp.ack)
        payload = l4_bytes[int(tcp.dataofs or 5) * 4:]  # within tot_len: no Ethernet padding
        l4_ok = len(l4_bytes) >= 20 and in4_chksum(6, ip, l4_bytes) == 0
    elif proto_num == 17 and isinstance(ip.payload, UDP):
        udp = ip[UDP]
        sport, dport = int(udp.sport), int(udp.dport)
        payload = l4_bytes[8:]
        l4_ok = len(l4_bytes) >= 8 and (int(udp.chksum) == 0 or in4_chksum(17, ip, l4_bytes) == 0)
    icmp = _icmp_fields(l4_bytes) if proto_num == 1 and not frag_offset else {}
    if icmp:
        l4_ok = checksum(l4_bytes) == 0
    if frag_offset or more:
        l4_ok = None  # the checksum covers the whole datagram, not this piece
    return Pkt(
        frame=number,
        time=float(frame.time),
        src=str(ip.src),
        dst=str(ip.dst),
        proto={1: "icmp", 6: "tcp", 17: "udp"}.get(proto_num, str(proto_num)),
        sport=sport,
        dport=dport,
        flags=flags,
        ttl=int(ip.ttl),
        ip_id=int(ip.id),
        ihl=ihl,
        ip_len=int(ip.len),
        options=options,
        payload_len=len(payload),
        ip_csum_ok=ip_ok,
        l4_csum_ok=l4_ok,
        payload=payload[:256],
        seq=seq,
        ack=ack,
        mac_src=str(frame.src) if isinstance(frame, Ether) else "",
        mac_dst=str(frame.dst) if isinstance(frame, Ether) else "",
        frag_offset=frag_offset,
        more_fragments=more,
        **icmp,
    )


def _geneve(ip: IP, frame: Packet, number: int) -> Pkt | None:
    """The inner packet of a Geneve frame (IPv4 outer, UDP port 6081, Ethernet inside),
    with its outer headers and DSR option; None if the frame is not one."""
    raw = bytes(ip)
    ihl = (raw[0] & 0x0F) * 4
    udp = raw[ihl:]
    if raw[9] != 17 or len(udp) < 16 or int.from_bytes(udp[2:4], "big") != dsropt.GENEVE_PORT:
        return None
    gen = udp[8:]
    opt_len = (gen[0] & 0x3F) * 4
    if gen[0] >> 6 or gen[2:4] != b"\x65\x58" or len(gen) < 8 + opt_len + 14:
        return None  # another version, or not Ethernet inside
    inner = from_scapy(Ether(gen[8 + opt_len:]), number)
    if inner is None or inner.outer is not None:
        return None
    outer = Outer(str(ip.src), str(ip.dst), int.from_bytes(udp[0:2], "big"),
                  dsropt.GENEVE_PORT, int.from_bytes(gen[4:7], "big"), int(ip.ttl))
    carrier = dsropt.find_in_geneve_options(gen[8:8 + opt_len]) or inner.carrier
    return replace(inner, time=float(frame.time), outer=outer, carrier=carrier,
                   mac_src=str(frame.src) if isinstance(frame, Ether) else "",
                   mac_dst=str(frame.dst) if isinstance(frame, Ether) else "")


def _from_ipv6(ip6: IPv6, frame: Packet, number: int) -> Pkt | None:
    """A record for an IPv6 packet: its extension headers walked over, a DSR
    Destination Option decoded; ``ip_len`` is the whole packet (40 + payload length),
    ``ttl`` the hop limit. Neighbour discovery and MLD make no record."""
    raw = bytes(ip6)
    plen = int.from_bytes(raw[4:6], "big")
    end = min(len(raw), 40 + plen)
    nh, off, carrier = raw[6], 40, None
    while nh in _EXT6 and off + 8 <= end:
        ext_end = off + (raw[off + 1] + 1) * 8
        if nh == dsropt.NEXTHDR_DEST and carrier is None:
            carrier = dsropt.find_in_dest_opts(raw[off:min(ext_end, end)])
        nh, off = raw[off], ext_end
    l4 = raw[off:end]
    sport = dport = seq = ack = icmp_type = icmp_code = icmp_mtu = quoted = None
    flags, payload, l4_ok = "", b"", None
    pseudo = raw[8:40] + len(l4).to_bytes(4, "big") + bytes((0, 0, 0, nh))
    if nh == 6 and len(l4) >= 20:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        seq, ack = int.from_bytes(l4[4:8], "big"), int.from_bytes(l4[8:12], "big")
        flags = tcp_flag_string(l4[13])
        payload = l4[(l4[12] >> 4) * 4:]
        l4_ok = checksum(pseudo + l4) == 0
    elif nh == 17 and len(l4) >= 8:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        payload = l4[8:]
        l4_ok = checksum(pseudo + l4) == 0
    elif nh == 58 and len(l4) >= 4:
        if 130 <= l4[0] <= 143:  # neighbour discovery, MLD: the link's, no flow's
            return None
        icmp_type, icmp_code = l4[0], l4[1]
        l4_ok = checksum(pseudo + l4) == 0
        if icmp_type == ICMP6_PACKET_TOO_BIG and len(l4) >= 8:
            icmp_mtu = int.from_bytes(l4[4:8], "big")
        if icmp_type in ICMP6_ERRORS:
            quoted = _quoted_ipv6(l4[8:])
    return Pkt(
        frame=number, time=float(frame.time), src=str(ip6.src), dst=str(ip6.dst),
        proto=_PROTO_NAMES.get(nh, str(nh)), sport=sport, dport=dport, flags=flags,
        ttl=raw[7], ip_id=0, ihl=0, ip_len=end, options=b"", payload_len=len(payload),
        ip_csum_ok=True, l4_csum_ok=l4_ok, payload=payload[:256], seq=seq, ack=ack,
        mac_src=str(frame.src) if isinstance(frame, Ether) else "",
        mac_dst=str(frame.dst) if isinstance(frame, Ether) else "",
        icmp_type=icmp_type, icmp_code=icmp_code, icmp_mtu=icmp_mtu, quoted=quoted,
        family=6, carrier=carrier)


def _quoted_ipv6(packet: bytes) -> tuple[str, str, str, int | None, int | None] | None:
    """The addresses, protocol and ports of the IPv6 packet an ICMPv6 error quotes
    (its extension headers walked over, as far as the quote goes)."""
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    nh, off = packet[6], 40
    while nh in _EXT6 and off + 8 <= len(packet):
        nh, off = packet[off], off + (packet[off + 1] + 1) * 8
    sp = dp = None
    if nh in (6, 17) and off + 4 <= len(packet):
        sp = int.from_bytes(packet[off:off + 2], "big")
        dp = int.from_bytes(packet[off + 2:off + 4], "big")
    return (str(IPv6Address(packet[8:24])), str(IPv6Address(packet[24:40])),
            _PROTO_NAMES.get(nh, str(nh)), sp, dp)


ICMP_ERRORS = (3, 4, 5, 11, 12)  # unreachable, source quench, redirect, time exceeded, ...


def _icmp_fields(message: bytes) -> dict[str, Any]:
    """An ICMP message's type, code, next-hop MTU (3/4) and, for an error, the packet
    it quotes (scapy parses the quoted header)."""
    if len(message) < 8:
        return {}
    icmp = ICMP(message)
    out: dict[str, Any] = {"icmp_type": int(icmp.type), "icmp_code": int(icmp.code)}
    if (icmp.type, icmp.code) == (3, 4):
        out["icmp_mtu"] = int(icmp.nexthopmtu)
    quoted = icmp.payload
    if int(icmp.type) in ICMP_ERRORS and isinstance(quoted, IPerror):
        sp = dp = None
        l4 = quoted.payload
        if isinstance(l4, TCPerror | UDPerror):
            sp, dp = int(l4.sport), int(l4.dport)
        out["quoted"] = (str(quoted.src), str(quoted.dst),
                         {1: "icmp", 6: "tcp", 17: "udp"}.get(int(quoted.proto),
                                                              str(quoted.proto)), sp, dp)
    return out


def iter_pcap(path: str | Path) -> Iterator[Pkt]:
    """Stream the IPv4 and IPv6 packets of a pcap/pcapng file as records."""
    with PcapReader(str(path)) as reader:
        for number, frame in enumerate(reader, start=1):  # Wireshark's frame numbers
            if not isinstance(frame, Ether) and frame.getlayer(IP) is None \
                    and frame.getlayer(IPv6) is None:
                continue
            rec = from_scapy(frame, number)
            if rec is not None:
                yield rec


def read_pcap(path: str | Path) -> list[Pkt]:
    return list(iter_pcap(path))


def crafted_ipv4(*, src: str, dst: str, dport: int, sport: int, flags: str = "S",
                 seq: int = 1000, ack: int = 0, ip_options: Sequence[str] = (),
                 payload: bytes = b"") -> bytes:
    """An IPv4/TCP packet (no Ethernet) built with scapy, checksums filled in.

    ``ip_options`` by name: ``timestamp`` (an 8-byte timestamp option, room for one
    stamp), ``record_route`` (3 slots, 15 bytes padded to 16), ``record_route_full``
    (9 slots, 39 bytes, padded to 40: with the DSR option the header would pass 60),
    ``nop``.
    """
    made: dict[str, Callable[[], Any]] = {
        "timestamp": lambda: IPOption_Timestamp(flg=0, timestamp=[0, 0]),
        "record_route": lambda: IPOption_RR(routers=["0.0.0.0"] * 3),
        "record_route_full": lambda: IPOption_RR(routers=["0.0.0.0"] * 9),
        "nop": IPOption_NOP,
    }
    try:
        options = [made[name]() for name in ip_options]
    except KeyError as exc:
        raise ValueError(f"unknown IP option {exc.args[0]!r} (known: {', '.join(made)})") \
            from None
    pkt = IP(src=src, dst=dst, ttl=64, options=options) / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    if payload:
        pkt = pkt / payload
    return bytes(pkt)
