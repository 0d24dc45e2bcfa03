"""The DSR service carriers, encoded and decoded in one place.

Three carriers name the service a DSR backend answers from:

* the IPv4 option (below), in either byte order;
* the IPv6 Destination Option (:func:`encode6`): a Destination Options
  extension header (next header 60) right after the IPv6 header, 24 bytes:
  next header, hdr ext len 2, option type 0x1B, option length 20, the
  16-byte service address, the port in network order, 2 bytes of padding;
* the Geneve option (:func:`encode_geneve`, Cilium >= 1.14's Geneve
  dispatch): class 0x014B, type 0x81 (critical bit + 1), length in 4-byte
  words (2 for IPv4: address, port, 2 pad bytes; 5 for IPv6), everything in
  network order.

Each decodes to one :class:`DsrValue` (service address and port, family,
dispatch ``opt`` or ``geneve``, the byte order for the IPv4 option).

The IPv4 option:

Layout (8 bytes): type 0x9a (copy=1, class 0, number 26), length 8, a
16-bit port, a 32-bit address. Cilium byte-swaps the already network-order
values on little-endian nodes, so "host" order (the default, what Cilium
puts on the wire) is each field's network bytes reversed: 172.18.0.2:32000
is ``9a 08 00 7d 02 00 12 ac``. "network" order keeps network bytes:
``9a 08 7d 00 ac 12 00 02``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from lab.errors import LabError

OptionOrder = Literal["host", "network"]
Dispatch = Literal["opt", "geneve"]
Family = Literal[4, 6]

OPT_TYPE = 0x9A
OPT_LEN = 8
ORDERS: tuple[OptionOrder, ...] = ("host", "network")

NEXTHDR_DEST = 60  # IPv6 Destination Options extension header
OPT6_TYPE = 0x1B
OPT6_LEN = 20  # option data: 16-byte address, 2-byte port, 2 bytes of padding
EXT6_LEN = 24  # the whole extension header (hdr ext len 2: (2 + 1) * 8 bytes)

GENEVE_PORT = 6081
GENEVE_CLASS = 0x014B
GENEVE_TYPE = 0x81  # critical bit + type 1
GENEVE_WORDS = {4: 2, 6: 5}  # option data length, in 4-byte words, by family


class DsrOptionError(LabError, ValueError):
    """Bytes that are not a DSR option (IPv4, IPv6 or Geneve)."""


def hostport(ip: str, port: int | None) -> str:
    """``172.18.0.2:32000``, or ``[200::]:80`` for an IPv6 address (no port: the address)."""
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True, slots=True)
class DsrValue:
    """What a DSR carrier says: the service, its family, how it travelled.

    ``order`` is the IPv4 option's byte order as read (None for IPv6 and
    Geneve, always network order); ``raw`` the carrier's bytes.
    """

    ip: str
    port: int
    family: Family
    dispatch: Dispatch
    order: OptionOrder | None = None
    raw: bytes = b""

    @property
    def service(self) -> str:
        """``ip:port``, IPv6 as ``[ip]:port``."""
        return hostport(self.ip, self.port)

    def __str__(self) -> str:
        return self.service

    def describe(self) -> str:
        """``DSR option 9a 08 ... -> service 172.18.0.2:32000`` and kin, for people."""
        what = {("opt", 4): "DSR option", ("opt", 6): "DSR IPv6 option 0x1b",
                ("geneve", 4): "DSR Geneve option", ("geneve", 6): "DSR Geneve option"}
        return f"{what[(self.dispatch, self.family)]} {self.raw.hex(' ')} -> service {self}"


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


def value4(opt: bytes, order: OptionOrder = "host") -> DsrValue:
    """The IPv4 option read in ``order`` as a :class:`DsrValue`."""
    ip, port = decode(opt, order)
    return DsrValue(ip, port, 4, "opt", order, bytes(opt[:OPT_LEN]))


# -- IPv6: the Destination Option ----------------------------------------------------------


def encode6(ip: str, port: int, next_header: int = 6) -> bytes:
    """The 24-byte Destination Options header carrying ``[ip]:port`` (Cilium's bytes)."""
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    if not 0 <= next_header <= 0xFF:
        raise ValueError(f"next header {next_header} out of range")
    addr = ipaddress.IPv6Address(ip).packed
    return bytes((next_header, (EXT6_LEN - 8) // 8, OPT6_TYPE, OPT6_LEN)) + addr + \
        port.to_bytes(2, "big") + b"\0\0"


def decode6(ext: bytes) -> DsrValue:
    """The service of a Destination Options header whose first option is 0x1B length 20."""
    if len(ext) < EXT6_LEN:
        raise DsrOptionError(f"an IPv6 DSR header is {EXT6_LEN} bytes, got {len(ext)}")
    if ext[2] != OPT6_TYPE or ext[3] != OPT6_LEN:
        raise DsrOptionError(f"not an IPv6 DSR option: type {ext[2]:#04x} length {ext[3]} "
                             f"(want {OPT6_TYPE:#04x} length {OPT6_LEN})")
    ip = str(ipaddress.IPv6Address(bytes(ext[4:20])))
    return DsrValue(ip, int.from_bytes(ext[20:22], "big"), 6, "opt", None, bytes(ext[:EXT6_LEN]))


def find_in_dest_opts(ext: bytes) -> DsrValue | None:
    """The DSR option anywhere in one Destination Options header (Pad1/PadN skipped),
    or None. ``ext`` starts at the extension header (next header, hdr ext len)."""
    if len(ext) < 8:
        return None
    end = min(len(ext), (ext[1] + 1) * 8)
    p = 2
    while p + 2 <= end:
        t = ext[p]
        if t == 0:  # Pad1
            p += 1
            continue
        length = ext[p + 1]
        if t == OPT6_TYPE and length == OPT6_LEN and p + 2 + length <= end:
            data = bytes(ext[p + 2:p + 2 + length])
            ip = str(ipaddress.IPv6Address(data[:16]))
            return DsrValue(ip, int.from_bytes(data[16:18], "big"), 6, "opt", None,
                            bytes(ext[:end]))
        p += 2 + length
    return None


# -- Geneve: the option TLV ----------------------------------------------------------------


def encode_geneve(ip: str, port: int) -> bytes:
    """The Geneve option TLV (class 0x014B, type 0x81) carrying ``ip``:``port``: 12
    bytes for IPv4, 24 for IPv6."""
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    addr = ipaddress.ip_address(ip)
    words = GENEVE_WORDS[addr.version]
    return GENEVE_CLASS.to_bytes(2, "big") + bytes((GENEVE_TYPE, words)) + addr.packed + \
        port.to_bytes(2, "big") + b"\0\0"


def find_in_geneve_options(opts: bytes) -> DsrValue | None:
    """The DSR TLV among a Geneve header's options (``opts``: the options area), or None.

    Its length picks the family: 2 words IPv4, 5 words IPv6; other lengths are not
    Cilium's and are passed over.
    """
    p = 0
    while p + 4 <= len(opts):
        words = opts[p + 3] & 0x1F
        end = p + 4 + words * 4
        if end > len(opts):
            return None
        if int.from_bytes(opts[p:p + 2], "big") == GENEVE_CLASS and opts[p + 2] == GENEVE_TYPE:
            data = bytes(opts[p + 4:end])
            if words == GENEVE_WORDS[4]:
                ip = str(ipaddress.IPv4Address(data[:4]))
                return DsrValue(ip, int.from_bytes(data[4:6], "big"), 4, "geneve", None,
                                bytes(opts[p:end]))
            if words == GENEVE_WORDS[6]:
                ip = str(ipaddress.IPv6Address(data[:16]))
                return DsrValue(ip, int.from_bytes(data[16:18], "big"), 6, "geneve", None,
                                bytes(opts[p:end]))
        p = end
    return None


def geneve_header(vni: int, options: bytes, protocol: int = 0x6558) -> bytes:
    """An 8-byte Geneve header (version 0, no flags) with ``options`` after it."""
    if len(options) % 4 or len(options) > 63 * 4:
        raise ValueError(f"Geneve options are whole 4-byte words, at most 252 bytes; got "
                         f"{len(options)}")
    return bytes((len(options) // 4, 0)) + protocol.to_bytes(2, "big") + \
        vni.to_bytes(3, "big") + b"\0" + options
