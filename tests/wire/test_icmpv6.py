"""ICMPv6 errors in the capture records (lab/wire/packets.py): a Packet Too Big's
MTU and the packet it quotes, as the IPv6 MTU scenarios' traces compare them."""

from __future__ import annotations

from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6PacketTooBig, IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab.wire.packets import from_scapy

CLIENT, SERVICE, POD = "fc00:f853:ccd:e793::1", "fc00:f853:ccd:e793::2", "fd00:10:244::d8"


def _error(quoted: bytes, icmp: object) -> Ether:
    return Ether(bytes(Ether() / IPv6(src=POD, dst=CLIENT) / icmp / Raw(quoted)))


def test_packet_too_big_gives_its_mtu_and_the_quoted_packet() -> None:
    syn = bytes(IPv6(src=CLIENT, dst=SERVICE) / TCP(sport=40078, dport=32000, flags="S")
                / Raw(b"x" * 100))
    p = from_scapy(_error(syn, ICMPv6PacketTooBig(mtu=1456)), 1)
    assert p is not None
    assert (p.proto, p.icmp_type, p.icmp_code, p.icmp_mtu) == ("icmpv6", 2, 0, 1456)
    assert p.quoted == (CLIENT, SERVICE, "tcp", 40078, 32000)
    assert p.l4_csum_ok


def test_a_quoted_packet_s_extension_headers_are_walked_over() -> None:
    dgram = bytes(IPv6(src=CLIENT, dst=POD) / IPv6ExtHdrDestOpt()
                  / UDP(sport=44003, dport=80) / Raw(b"y" * 8))
    p = from_scapy(_error(dgram, ICMPv6DestUnreach(code=4)), 1)
    assert p is not None
    assert (p.icmp_type, p.icmp_code, p.icmp_mtu) == (1, 4, None)  # no MTU but PTB's
    assert p.quoted == (CLIENT, POD, "udp", 44003, 80)


def test_a_quote_too_short_for_an_ipv6_header_quotes_nothing() -> None:
    p = from_scapy(_error(b"\x60" + bytes(20), ICMPv6PacketTooBig(mtu=1280)), 1)
    assert p is not None
    assert (p.icmp_mtu, p.quoted) == (1280, None)
