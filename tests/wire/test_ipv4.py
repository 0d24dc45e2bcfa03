"""parse_ipv4: the fields of an Ethernet/IPv4 frame, or why it does not parse."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from lab.wire.ipv4 import Ipv4View, parse_ipv4
from tests.seed import OPTION, client_syn, dsr_syn


def _set(frame: bytes, offset: int, value: bytes) -> bytes:
    b = bytearray(frame)
    b[offset : offset + len(value)] = value
    return bytes(b)


def test_the_seed_syn_parses_as_scapy_reads_it() -> None:
    for pkt in (client_syn(), dsr_syn()):
        frame = bytes(pkt)
        view, why = parse_ipv4(frame)
        assert why is None
        assert view is not None
        ip = Ether(frame)[IP]
        assert (view.hlen, view.tot, view.proto, view.ttl) == (ip.ihl * 4, ip.len, 6, ip.ttl)
        assert not view.is_fragment
    view, _ = parse_ipv4(bytes(dsr_syn()))
    assert view is not None
    assert view.hlen == 20 + len(OPTION)


def test_trailing_bytes_behind_tot_len_are_allowed() -> None:
    frame = bytes(client_syn()) + bytes(6)  # Ethernet padding
    view, why = parse_ipv4(frame)
    assert why is None
    assert view == Ipv4View(20, 40, 6, 0, 64)


@pytest.mark.parametrize(("flags", "frag", "fragment"), [
    (0, 0, False), (2, 0, False), (1, 0, True), (0, 3, True)])  # DF, MF, an offset
def test_fragments(flags: int, frag: int, fragment: bool) -> None:
    frame = bytes(Ether() / IP(flags=flags, frag=frag, proto=6) / Raw(bytes(20)))
    view, _ = parse_ipv4(frame)
    assert view is not None
    assert view.is_fragment is fragment


def test_a_later_fragment_needs_no_l4_header() -> None:
    frame = bytes(Ether() / IP(frag=3, proto=6) / Raw(b"xy"))
    view, why = parse_ipv4(frame)
    assert (view is not None, why) == (True, None)


SYN = bytes(client_syn())


@pytest.mark.parametrize(("frame", "reason"), [
    (SYN[:33], "33 bytes: no room for an IPv4 header"),
    (bytes(Ether() / ARP()), "ethertype 0806 is not IPv4"),
    (_set(SYN, 14, b"\x65"), "IP version 6"),
    (_set(SYN, 14, b"\x43"), "IHL 3 < 5"),
    (_set(SYN, 16, b"\x00\x10"), "IHL 5 (20 bytes) beyond tot_len 16"),
    (_set(SYN, 16, b"\x05\xdc"), "tot_len 1500 beyond the 40 bytes after Ethernet"),
    (_set(SYN, 16, b"\x00\x1e"), "tot_len 30 leaves no room for the 20-byte L4 header"),
    (_set(bytes(Ether() / IP() / UDP()), 16, b"\x00\x18")[:38],
     "tot_len 24 leaves no room for the 8-byte L4 header"),
], ids=["short", "arp", "version-6", "ihl-3", "tot-below-ihl", "tot-beyond", "tcp-cut",
        "udp-cut"])
def test_each_reason(frame: bytes, reason: str) -> None:
    view, why = parse_ipv4(frame)
    assert view is None
    assert why == reason


def test_other_protocols_need_no_l4_room() -> None:
    frame = bytes(Ether() / IP() / ICMP())
    view, why = parse_ipv4(frame)
    assert why is None
    assert view is not None
    assert view.proto == 1
