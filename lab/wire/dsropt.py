"""The IPv4 DSR option, encoded and decoded in one place.

Layout (8 bytes): type 0x9a (copy=1, class 0, number 26), length 8, a
16-bit port, a 32-bit address. Cilium byte-swaps the already network-order
values on little-endian nodes, so "host" order (the default, what Cilium
puts on the wire) is each field's network bytes reversed: 172.18.0.2:32000
is ``9a 08 00 7d 02 00 12 ac``. "network" order keeps network bytes:
``9a 08 7d 00 ac 12 00 02``.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from lab.errors import LabError

OptionOrder = Literal["host", "network"]

OPT_TYPE = 0x9A
OPT_LEN = 8
ORDERS: tuple[OptionOrder, ...] = ("host", "network")


class DsrOptionError(LabError, ValueError):
    """Bytes that are not an 8-byte IPv4 DSR option."""


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"option byte order must be host or network, not {order!r}")


def encode(ip: str, port: int, order: OptionOrder = "host") -> bytes:
    """The 8 option bytes carrying service ``ip``:``port``."""
    _check_order(order)
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    addr = ipaddress.IPv4Address(ip).packed
    port_b = port.to_bytes(2, "big")
    if order == "host":
        addr, port_b = addr[::-1], port_b[::-1]
    return bytes((OPT_TYPE, OPT_LEN)) + port_b + addr


def _check_header(opt: bytes) -> bytes:
    if len(opt) < OPT_LEN:
        raise DsrOptionError(f"a DSR option is {OPT_LEN} bytes, got {len(opt)}")
    if opt[0] != OPT_TYPE or opt[1] != OPT_LEN:
        raise DsrOptionError(
            f"not a DSR option: type {opt[0]:#04x} length {opt[1]} "
            f"(want {OPT_TYPE:#04x} length {OPT_LEN})"
        )
    return opt[:OPT_LEN]


def decode(opt: bytes, order: OptionOrder = "host") -> tuple[str, int]:
    """(service ip, port) from the option bytes read in ``order``.

    Only the first 8 bytes are looked at (trailing bytes, e.g. the rest of
    the options area, are ignored).
    """
    _check_order(order)
    raw = _check_header(opt)
    port_b, addr = raw[2:4], raw[4:8]
    if order == "host":
        port_b, addr = port_b[::-1], addr[::-1]
    return str(ipaddress.IPv4Address(addr)), int.from_bytes(port_b, "big")


def decode_any(opt: bytes) -> list[tuple[str, int, OptionOrder]]:
    """Both readings, host order first: [(ip, port, "host"), (ip, port, "network")]."""
    return [(*decode(opt, order), order) for order in ORDERS]


def find_in_ip_header(header: bytes) -> bytes | None:
    """The DSR option if it is the FIRST option of this IPv4 header, else None.

    ``header`` starts at the IPv4 header; this is the rule the backend uses
    (IHL >= 7, first option type 0x9a length 8).
    """
    if len(header) < 20 or header[0] >> 4 != 4:
        return None
    ihl = (header[0] & 0x0F) * 4
    if ihl < 20 + OPT_LEN or len(header) < 20 + OPT_LEN:
        return None
    first = header[20 : 20 + OPT_LEN]
    if first[0] == OPT_TYPE and first[1] == OPT_LEN:
        return bytes(first)
    return None
