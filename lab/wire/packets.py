"""Captured packets as flat, comparable records.

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

from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv6Address
from pathlib import Path
from socket import inet_ntoa
from typing import Any

from lab.wire import dsropt
from lab.wire.checksum import checksum
from lab.wire.dsropt import DsrValue, hostport
from lab.wire.pcapread import LINKTYPE_ETHERNET, LINKTYPE_RAW, l3_offset, open_capture

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


def from_frame(data: bytes, number: int, time: float = 0.0,
               linktype: int = LINKTYPE_ETHERNET) -> Pkt | None:
    """A record for the frame ``data`` of link type ``linktype`` if it carries IPv4 or
    IPv6 (behind Ethernet and VLAN tags, Linux cooked headers, BSD loopback, or bare),
    ``number`` its frame number in its file (1-based, as Wireshark's); ``None`` for
    anything else: ARP, neighbour discovery, a header cut short. A Geneve frame is its
    inner packet's record, with the outer headers."""
    l3 = l3_offset(data, linktype, 0, len(data), {})
    if not 0 <= l3 < len(data):
        return None
    macs = (_mac(data[6:12]), _mac(data[0:6])) if linktype == LINKTYPE_ETHERNET else ("", "")
    version = data[l3] >> 4  # as the review decides it
    if version == 4:
        return _from_ipv4(data[l3:], number, time, macs)
    if version == 6:
        return _from_ipv6(data[l3:], number, time, macs)
    return None


def from_scapy(frame: Any, number: int) -> Pkt | None:
    """:func:`from_frame` for a scapy packet (an ``Ether`` frame, or a bare ``IP`` or
    ``IPv6`` packet), its time the packet's."""
    from scapy.layers.l2 import Ether  # noqa: PLC0415 (scapy only for callers that use it)

    linktype = LINKTYPE_ETHERNET if isinstance(frame, Ether) else LINKTYPE_RAW
    return from_frame(bytes(frame), number, float(frame.time), linktype)


def _mac(b: bytes) -> str:
    return b.hex(":")


_IP4_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}


def _from_ipv4(raw: bytes, number: int, time: float,
               macs: tuple[str, str]) -> Pkt | None:
    """A record for the IPv4 packet ``raw`` (bytes after it, Ethernet padding, are
    left out by its total length); None when not even the fixed header is there."""
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return None
    proto_num = raw[9]
    if proto_num == 17 and (encap := _geneve(raw, number, time, macs)) is not None:
        return encap
    ihl = raw[0] & 0x0F
    hlen = ihl * 4
    hdr = raw[:hlen]
    ip_ok = ihl >= 5 and len(hdr) == hlen and checksum(hdr) == 0
    options = hdr[20:]
    tot = int.from_bytes(raw[2:4], "big")
    frag = int.from_bytes(raw[6:8], "big")
    frag_offset, more = (frag & 0x1FFF) * 8, bool(frag & 0x2000)
    l4 = raw[hlen:tot] if ihl >= 5 else b""
    sport = dport = seq = ack = None
    flags, payload = "", b""
    l4_ok: bool | None = None
    icmp: dict[str, Any] = {}
    l4_head = 0  # the L4 header's bytes, before the payload
    pseudo = raw[12:20] + bytes((0, proto_num)) + len(l4).to_bytes(2, "big")
    if frag_offset:  # a later fragment: no L4 header, only the datagram's bytes
        payload = l4
    elif proto_num == 6 and len(l4) >= 20:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        seq, ack = int.from_bytes(l4[4:8], "big"), int.from_bytes(l4[8:12], "big")
        flags = tcp_flag_string(l4[13])
        l4_head = ((l4[12] >> 4) or 5) * 4
        payload = l4[l4_head:]
        l4_ok = checksum(pseudo + l4) == 0
    elif proto_num == 17 and len(l4) >= 8:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        l4_head, payload = 8, l4[8:]
        l4_ok = l4[6:8] == b"\0\0" or checksum(pseudo + l4) == 0
    elif proto_num == 1 and len(l4) >= 8:
        icmp = _icmp_fields(l4)
        l4_ok = checksum(l4) == 0
    if frag_offset or more or len(l4) < tot - hlen:
        l4_ok = None  # it covers the whole datagram, or bytes the capture cut off
    # the payload's length on the wire, as the headers give it (a frame the snap length
    # cut, a GSO super-frame, still counts all its bytes); ``payload``: what was captured
    payload_len = max(0, tot - hlen - l4_head) if payload or l4_head else 0
    return Pkt(
        frame=number, time=time, src=inet_ntoa(raw[12:16]), dst=inet_ntoa(raw[16:20]),
        proto=_IP4_PROTO_NAMES.get(proto_num, str(proto_num)), sport=sport, dport=dport,
        flags=flags, ttl=raw[8], ip_id=int.from_bytes(raw[4:6], "big"), ihl=ihl,
        ip_len=tot, options=options, payload_len=payload_len, ip_csum_ok=ip_ok,
        l4_csum_ok=l4_ok, payload=payload[:256], seq=seq, ack=ack,
        mac_src=macs[0], mac_dst=macs[1], frag_offset=frag_offset, more_fragments=more,
        **icmp,
    )


def _geneve(raw: bytes, number: int, time: float, macs: tuple[str, str]) -> Pkt | None:
    """The inner packet of a Geneve frame (IPv4 outer, UDP port 6081, Ethernet inside),
    with its outer headers and DSR option; None if the frame is not one."""
    ihl = (raw[0] & 0x0F) * 4
    udp = raw[ihl:]
    if ihl < 20 or len(udp) < 16 or int.from_bytes(udp[2:4], "big") != dsropt.GENEVE_PORT:
        return None
    gen = udp[8:]
    opt_len = (gen[0] & 0x3F) * 4
    if gen[0] >> 6 or gen[2:4] != b"\x65\x58" or len(gen) < 8 + opt_len + 14:
        return None  # another version, or not Ethernet inside
    inner = from_frame(gen[8 + opt_len:], number, time)
    if inner is None or inner.outer is not None:
        return None
    outer = Outer(inet_ntoa(raw[12:16]), inet_ntoa(raw[16:20]),
                  int.from_bytes(udp[0:2], "big"), dsropt.GENEVE_PORT,
                  int.from_bytes(gen[4:7], "big"), raw[8])
    carrier = dsropt.find_in_geneve_options(gen[8:8 + opt_len]) or inner.carrier
    return replace(inner, outer=outer, carrier=carrier, mac_src=macs[0], mac_dst=macs[1])


def _from_ipv6(raw: bytes, number: int, time: float,
               macs: tuple[str, str]) -> Pkt | None:
    """A record for an IPv6 packet: its extension headers walked over, a DSR
    Destination Option decoded; ``ip_len`` is the whole packet (40 + payload length),
    ``ttl`` the hop limit. Neighbour discovery and MLD make no record, nor a packet
    cut short of its fixed header."""
    if len(raw) < 40 or raw[0] >> 4 != 6:
        return None
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
    flags, payload = "", b""
    l4_ok: bool | None = None
    l4_head = 0
    pseudo = raw[8:40] + len(l4).to_bytes(4, "big") + bytes((0, 0, 0, nh))
    if nh == 6 and len(l4) >= 20:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        seq, ack = int.from_bytes(l4[4:8], "big"), int.from_bytes(l4[8:12], "big")
        flags = tcp_flag_string(l4[13])
        l4_head = (l4[12] >> 4) * 4
        payload = l4[l4_head:]
        l4_ok = checksum(pseudo + l4) == 0
    elif nh == 17 and len(l4) >= 8:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        l4_head, payload = 8, l4[8:]
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
    if end < 40 + plen:
        l4_ok = None  # the capture cut off bytes the checksum covers
    payload_len = max(0, 40 + plen - off - l4_head) if payload or l4_head else 0
    return Pkt(
        frame=number, time=time, src=_ip6(raw[8:24]), dst=_ip6(raw[24:40]),
        proto=_PROTO_NAMES.get(nh, str(nh)), sport=sport, dport=dport, flags=flags,
        ttl=raw[7], ip_id=0, ihl=0, ip_len=40 + plen, options=b"", payload_len=payload_len,
        ip_csum_ok=True, l4_csum_ok=l4_ok, payload=payload[:256], seq=seq, ack=ack,
        mac_src=macs[0], mac_dst=macs[1],
        icmp_type=icmp_type, icmp_code=icmp_code, icmp_mtu=icmp_mtu, quoted=quoted,
        family=6, carrier=carrier)


def _ip6(b: bytes) -> str:
    return str(IPv6Address(b))


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
    return (_ip6(packet[8:24]), _ip6(packet[24:40]), _PROTO_NAMES.get(nh, str(nh)), sp, dp)


ICMP_ERRORS = (3, 4, 5, 11, 12)  # unreachable, source quench, redirect, time exceeded, ...


def _icmp_fields(message: bytes) -> dict[str, Any]:
    """An ICMP message's type, code, next-hop MTU (3/4) and, for an error, the packet
    it quotes (its addresses, protocol and, as far as the quote goes, ports)."""
    icmp_type, code = message[0], message[1]
    out: dict[str, Any] = {"icmp_type": icmp_type, "icmp_code": code}
    if (icmp_type, code) == (3, 4):
        out["icmp_mtu"] = int.from_bytes(message[6:8], "big")
    quoted = message[8:]
    if icmp_type in ICMP_ERRORS and len(quoted) >= 20 and quoted[0] >> 4 == 4:
        qhlen, qproto = (quoted[0] & 0x0F) * 4, quoted[9]
        sp = dp = None
        if qproto in (6, 17) and qhlen >= 20 and len(quoted) >= qhlen + 4:
            sp = int.from_bytes(quoted[qhlen:qhlen + 2], "big")
            dp = int.from_bytes(quoted[qhlen + 2:qhlen + 4], "big")
        out["quoted"] = (inet_ntoa(quoted[12:16]), inet_ntoa(quoted[16:20]),
                         _IP4_PROTO_NAMES.get(qproto, str(qproto)), sp, dp)
    return out


def iter_pcap(path: str | Path) -> Iterator[Pkt]:
    """Stream the IPv4 and IPv6 packets of a pcap/pcapng file as records (raises
    :class:`~lab.wire.pcapread.PcapError` for a file that is not a capture)."""
    with open_capture(path) as cap:
        buf = cap.buf
        for number, (lt, data, caplen, rec) in enumerate(cap.records(), start=1):
            pkt = from_frame(bytes(buf[data:data + caplen]), number, cap.timestamp(rec), lt)
            if pkt is not None:  # Wireshark's frame numbers count every frame
                yield pkt


def read_pcap(path: str | Path) -> list[Pkt]:
    return list(iter_pcap(path))
