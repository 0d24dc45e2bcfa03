"""The Internet checksum (RFC 1071) over bytes, for IPv4 headers and TCP/UDP.

Plain bytes, no scapy: the datapath fuzzer checks millions of frames with it.
"""

from __future__ import annotations

import struct
import sys

TCP, UDP = 6, 17
_LITTLE = sys.byteorder == "little"


def ones_sum(data: bytes) -> int:
    """16-bit one's complement sum of ``data`` (big-endian words), folded."""
    if len(data) % 2:
        data += b"\0"
    words = memoryview(data).cast("H")
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if _LITTLE:
        total = ((total & 0xFF) << 8) | (total >> 8)
    return total


def checksum(data: bytes) -> int:
    """The Internet checksum to store for ``data`` (with its checksum field zero)."""
    return (~ones_sum(data)) & 0xFFFF


def csum_ok(data: bytes) -> bool:
    """``data`` with its checksum field in place sums to 0xffff."""
    return ones_sum(data) == 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, proto, length)


def l4_csum_ok(ip: bytes, hlen: int, tot: int, proto: int) -> bool | None:
    """TCP/UDP checksum of the IPv4 packet ``ip`` right? None when UDP carries none."""
    seg = ip[hlen:tot]
    if proto == UDP and seg[6:8] == b"\0\0":
        return None
    return csum_ok(pseudo_header(ip[12:16], ip[16:20], proto, len(seg)) + seg)
