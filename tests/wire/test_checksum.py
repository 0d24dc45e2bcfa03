"""The Internet checksum (lab.wire.checksum) against scapy's, on random bytes."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, in4_chksum
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from lab.wire.checksum import checksum, csum_ok, l4_csum_ok, ones_sum, pseudo_header
from tests.seed import CLIENT_IP, NODE_PORT, VIP


@given(data=st.binary(max_size=3000))
def test_checksum_is_scapys_on_random_bytes(data: bytes) -> None:
    assert checksum(data) == scapy_checksum(data)


def test_checksum_on_random_bytes_of_every_small_length() -> None:
    rnd = random.Random(7)
    for n in range(0, 130):
        for _ in range(20):
            data = rnd.randbytes(n)
            assert checksum(data) == scapy_checksum(data), data.hex()


def test_known_values() -> None:
    assert checksum(b"") == 0xFFFF
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\x00\x01\xff\xff") == 0x0001  # the carry folds back in
    assert ones_sum(b"\x12") == 0x1200  # an odd byte is the high half of a last word
    # RFC 1071's example words 0001 f203 f4f5 f6f7: sum ddf2, checksum 220d
    assert ones_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@given(data=st.binary(min_size=2, max_size=200).map(lambda b: b + bytes(len(b) % 2)))
def test_data_with_its_checksum_in_place_is_ok(data: bytes) -> None:
    field = checksum(data[2:]).to_bytes(2, "big")
    whole = field + data[2:]
    assert csum_ok(whole)
    flipped = bytes([whole[0] ^ 0x01]) + whole[1:]
    assert not csum_ok(flipped)


def test_ipv4_header_checksum_matches_scapys() -> None:
    hdr = bytes(IP(src=CLIENT_IP, dst=VIP, ttl=64, id=4242, options=[]))
    assert csum_ok(hdr)
    zeroed = hdr[:10] + b"\0\0" + hdr[12:]
    assert checksum(zeroed) == int.from_bytes(hdr[10:12], "big")


def test_pseudo_header_layout() -> None:
    src, dst = bytes([172, 18, 0, 1]), bytes([172, 18, 0, 2])
    assert pseudo_header(src, dst, 6, 0x1234) == src + dst + b"\x00\x06\x12\x34"


@given(payload=st.binary(max_size=600), proto=st.sampled_from(["tcp", "udp"]),
       sport=st.integers(1, 0xFFFF))
def test_l4_checksum_agrees_with_scapy(payload: bytes, proto: str, sport: int) -> None:
    l4 = TCP(sport=sport, dport=NODE_PORT, flags="PA") if proto == "tcp" \
        else UDP(sport=sport, dport=NODE_PORT)
    ip = bytes(IP(src=CLIENT_IP, dst=VIP) / l4 / Raw(payload))
    hlen, tot, num = 20, len(ip), 6 if proto == "tcp" else 17
    assert in4_chksum(num, IP(ip), ip[hlen:]) == 0  # scapy: right
    assert l4_csum_ok(ip, hlen, tot, num) is True
    off = hlen + (16 if proto == "tcp" else 6)
    bad = bytearray(ip)
    bad[off] ^= 0x40
    if proto == "udp" and bad[off:off + 2] == b"\0\0":
        return  # a zero UDP checksum means "none"
    assert in4_chksum(num, IP(bytes(bad)), bytes(bad[hlen:])) != 0
    assert l4_csum_ok(bytes(bad), hlen, tot, num) is False


def test_udp_without_checksum_is_none() -> None:
    ip = bytearray(bytes(IP(src=CLIENT_IP, dst=VIP) / UDP(sport=5353, dport=53) / Raw(b"q")))
    ip[26:28] = b"\0\0"
    assert l4_csum_ok(bytes(ip), 20, len(ip), 17) is None
