"""Malformed input for the datapath, and the invariant its output must meet.

:class:`FrameGenerator` makes frames fast (plain bytes, no scapy), seeded
and reproducible, from families (:data:`FAMILIES`): well-formed TCP/UDP to
the service, DSR SYNs to a backend, replies from a backend (so the rewriting
code runs on the odd cases too), and the malformed kinds: truncated
Ethernet/IP/TCP/UDP, IHL below 5 or beyond the packet, tot_len larger or
smaller than the buffer, fragments, up to 40 bytes of IP options of every
kind, non-IP ethertypes, VLAN and QinQ tags, IPv6, buffers from zero bytes
to beyond what a test run accepts, broken L4 headers, random protocols and
random byte flips. About one frame in ten keeps a wrong IP header checksum.
With ``ipv6=True`` (:data:`FAMILIES6`) IPv6 joins in: TCP/UDP to an IPv6
service, to a backend with the DSR Destination Options extension (or a
near miss of it), replies, chains of extension headers, payload lengths
that lie, other versions and next headers, cut frames and bit flips.

:func:`check_result` is the invariant, for one frame and what the program
did with it:

* the verdict is one the datapath returns (ok, redirect, shot); a drop has
  a known reason; a redirect names its target;
* a frame neither IPv4 nor IPv6 leaves untouched;
* an IPv6 frame leaves untouched, or translated (:func:`check_ipv6`): it
  parses, grew by 0 or 24 bytes in frame and payload length alike, a growth
  is the DSR extension (its next header the packet's, padding zero) right
  after the IPv6 header, version, class and flow label kept, hop limit kept
  or lowered by one, the L4 payload and the trailer kept, the TCP/UDP
  checksum right whenever the input's was; with ``validating=True`` an IPv6
  frame let through unchanged has a usable fixed header;
* a frame the program changed is IPv4 and parses: version 4, IHL >= 5,
  header and tot_len inside the buffer, L4 header inside tot_len; its IP
  header checksum is right whenever the input's was, and so is its TCP/UDP
  checksum (a zero UDP checksum stays zero); lengths are consistent: it grew
  by 0 or 8 bytes, tot_len and IHL by the same, the trailer behind tot_len is
  kept, a growth is a DSR option right after the base header followed by the
  input's own options; version, TOS, id, fragment field and protocol are
  kept, TTL is kept or lowered by one, the L4 payload is unchanged;
* with ``validating=True`` (the ingress program, which drops malformed
  IPv4) every IPv4 frame it lets through parses, changed or not.

:func:`fuzz` drives a program over many frames and collects a
:class:`FuzzReport`.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from lab.datapath.errors import TestRunRefused
from lab.datapath.loader import DatapathObject
from lab.datapath.maps import EVENT_NAMES
from lab.datapath.testrun import TestRunResult
from lab.wire import dsropt
from lab.wire.checksum import checksum, csum_ok, l4_csum_ok, pseudo_header
from lab.wire.ipv4 import Ipv4View, parse_ipv4
from tests import seed

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
IP_MF = 0x2000
IP_OFFSET = 0x1FFF
TCP, UDP = 6, 17
MAX_TEST_RUN_FRAME = 3712  # what this kernel's BPF_PROG_TEST_RUN takes for skb programs
VERDICTS = frozenset({"ok", "redirect", "shot"})
KNOWN_REASONS = frozenset(
    name.removeprefix("drop_") for name in EVENT_NAMES.values() if name.startswith("drop_")
)

# --- the invariant -----------------------------------------------------------------


def check_result(frame: bytes, res: TestRunResult, *, validating: bool = False) -> list[str]:
    """What is wrong with ``res`` as the program's answer to ``frame`` (empty: nothing)."""
    problems: list[str] = []
    if res.verdict not in VERDICTS:
        return [f"verdict {res.verdict} (retval {res.retval}) is not one the datapath returns"]
    if res.verdict == "shot":
        if res.drop_reason not in KNOWN_REASONS:
            problems.append(f"drop without a known reason (cb[0] = {res.cb[0]})")
        return problems
    if res.verdict == "redirect" and not res.redirect_ifindex:
        problems.append("redirect without a target ifindex")
    out = res.data
    if frame[12:14] == b"\x86\xdd":
        return problems + check_ipv6(frame, out, validating=validating)
    if frame[12:14] != b"\x08\x00":
        if out != frame:
            problems.append("a non-IP frame was changed")
        return problems
    if out == frame and not validating:
        return problems
    view, why = parse_ipv4(out)
    if view is None:
        problems.append(f"emitted frame does not parse: {why}")
        return problems
    if out == frame:
        return problems
    return problems + _check_changed(frame, out, view)


def _check_changed(frame: bytes, out: bytes, v_out: Ipv4View) -> list[str]:
    problems: list[str] = []
    v_in, why = parse_ipv4(frame)
    if v_in is None:
        return [f"the program rewrote a frame that does not parse ({why})"]
    ip_in, ip_out = frame[ETH_HLEN:], out[ETH_HLEN:]
    if csum_ok(ip_in[: v_in.hlen]) and not csum_ok(ip_out[: v_out.hlen]):
        problems.append("IP header checksum wrong after the program (it was right before)")
    grow = len(out) - len(frame)
    if grow not in (0, 8):
        problems.append(f"frame grew by {grow} bytes (0 or 8 expected)")
    if v_out.tot - v_in.tot != grow:
        problems.append(f"tot_len changed by {v_out.tot - v_in.tot}, the frame by {grow}")
    if v_out.hlen - v_in.hlen != grow:
        problems.append(f"IHL changed by {v_out.hlen - v_in.hlen} bytes, the frame by {grow}")
    if len(out) - ETH_HLEN - v_out.tot != len(frame) - ETH_HLEN - v_in.tot:
        problems.append("the trailer behind tot_len changed length")
    elif out[ETH_HLEN + v_out.tot :] != frame[ETH_HLEN + v_in.tot :]:
        problems.append("the trailer behind tot_len changed")
    if grow == 8:
        if (ip_out[20], ip_out[21]) != (dsropt.OPT_TYPE, dsropt.OPT_LEN):
            problems.append(f"grown header does not start with a DSR option: {ip_out[20:28].hex()}")
        if ip_out[28 : v_out.hlen] != ip_in[20 : v_in.hlen]:
            problems.append("the input's own IP options are not kept behind the DSR option")
    for name, sl in (("version", slice(0, 1)), ("TOS", slice(1, 2)), ("id", slice(4, 6)),
                     ("fragment field", slice(6, 8)), ("protocol", slice(9, 10))):
        a, b = ip_in[sl], ip_out[sl]
        if name == "version":
            a, b = bytes([a[0] >> 4]), bytes([b[0] >> 4])
        if a != b:
            problems.append(f"IP {name} changed: {a.hex()} -> {b.hex()}")
    if v_out.ttl not in (v_in.ttl, (v_in.ttl - 1) & 0xFF):
        problems.append(f"TTL {v_in.ttl} -> {v_out.ttl}")
    if v_in.proto in (TCP, UDP) and not v_in.is_fragment and v_in.proto == v_out.proto:
        hdr = 20 if v_in.proto == TCP else 8
        if ip_in[v_in.hlen + hdr : v_in.tot] != ip_out[v_out.hlen + hdr : v_out.tot]:
            problems.append("the L4 payload changed")
        before = l4_csum_ok(ip_in, v_in.hlen, v_in.tot, v_in.proto)
        after = l4_csum_ok(ip_out, v_out.hlen, v_out.tot, v_out.proto)
        if before is None and after is not None:
            problems.append("a zero (absent) UDP checksum became non-zero")
        elif before and not after:
            name = "TCP" if v_in.proto == TCP else "UDP"
            problems.append(f"{name} checksum wrong after the program (it was right before)")
    return problems


# --- the invariant for IPv6 -----------------------------------------------------------

IPV6_HLEN = 40
DSR6_LEN = 24


def ipv6_fixed_ok(frame: bytes) -> str | None:
    """Why ``frame``'s fixed IPv6 header is unusable (None: version 6, payload inside)."""
    if len(frame) < ETH_HLEN + IPV6_HLEN:
        return "shorter than the IPv6 header"
    if frame[ETH_HLEN] >> 4 != 6:
        return f"version {frame[ETH_HLEN] >> 4}"
    plen = int.from_bytes(frame[ETH_HLEN + 4 : ETH_HLEN + 6], "big")
    if ETH_HLEN + IPV6_HLEN + plen > len(frame):
        return f"payload length {plen} beyond the frame"
    return None


def l6_csum_ok(frame: bytes, l4_off: int, proto: int) -> bool | None:
    """TCP/UDP checksum of the Ethernet/IPv6 frame's segment at ``l4_off`` (from the IPv6
    header) right? None when a UDP datagram carries none or the segment is cut short."""
    ip = frame[ETH_HLEN:]
    end = IPV6_HLEN + int.from_bytes(ip[4:6], "big")
    seg = ip[l4_off:end]
    if len(seg) < (20 if proto == TCP else 8) or (proto == UDP and seg[6:8] == b"\0\0"):
        return None
    pseudo = ip[8:40] + struct.pack("!I3xB", len(seg), proto)
    return csum_ok(pseudo + seg)


def check_ipv6(frame: bytes, out: bytes, *, validating: bool) -> list[str]:
    """What is wrong with ``out`` as a program's answer to the IPv6 ``frame`` (a frame let
    through; drops are judged by :func:`check_result`): unchanged, or a translated
    packet that parses, its lengths, extension, hop limit, payload and checksum sound."""
    if out == frame:
        why = ipv6_fixed_ok(frame) if validating else None
        return [f"malformed IPv6 let through: {why}"] if why else []
    why_in, why_out = ipv6_fixed_ok(frame), ipv6_fixed_ok(out)
    if why_in:
        return [f"the program rewrote an IPv6 frame that does not parse ({why_in})"]
    if why_out:
        return [f"emitted IPv6 frame does not parse: {why_out}"]
    problems: list[str] = []
    ip_in, ip_out = frame[ETH_HLEN:], out[ETH_HLEN:]
    plen_in, plen_out = (int.from_bytes(x[4:6], "big") for x in (ip_in, ip_out))
    grow = len(out) - len(frame)
    if grow not in (0, DSR6_LEN):
        problems.append(f"frame grew by {grow} bytes (0 or 24 expected)")
        return problems
    if plen_out - plen_in != grow:
        problems.append(f"payload length changed by {plen_out - plen_in}, the frame by {grow}")
    if ip_out[IPV6_HLEN + plen_out :] != ip_in[IPV6_HLEN + plen_in :]:
        problems.append("the trailer behind the payload changed")
    if ip_out[:4] != ip_in[:4]:
        problems.append(f"version/class/flow label changed: {ip_in[:4].hex()} -> "
                        f"{ip_out[:4].hex()}")
    if ip_out[7] not in (ip_in[7], (ip_in[7] - 1) & 0xFF):
        problems.append(f"hop limit {ip_in[7]} -> {ip_out[7]}")
    proto = ip_in[6]
    if grow:
        ext = ip_out[IPV6_HLEN : IPV6_HLEN + DSR6_LEN]
        if ip_out[6] != 60 or ext[:4] != bytes([proto, 2, 0x1B, 20]):
            problems.append(f"grown packet does not start with the DSR extension: "
                            f"nh {ip_out[6]}, {ext[:4].hex()}")
        if ext[22:24] != b"\0\0":
            problems.append(f"the extension's padding is {ext[22:24].hex()}")
    elif ip_out[6] != proto:
        problems.append(f"next header changed: {proto} -> {ip_out[6]}")
    if proto in (TCP, UDP):
        hdr = 20 if proto == TCP else 8
        a = ip_in[IPV6_HLEN + hdr : IPV6_HLEN + plen_in]
        b = ip_out[IPV6_HLEN + grow + hdr : IPV6_HLEN + plen_out]
        if a != b:
            problems.append("the L4 payload changed")
        before = l6_csum_ok(frame, IPV6_HLEN, proto)
        after = l6_csum_ok(out, IPV6_HLEN + grow, proto)
        if before is None and after is not None and proto == UDP:
            problems.append("a zero (absent) UDP checksum became non-zero")
        elif before and not after:
            name = "TCP" if proto == TCP else "UDP"
            problems.append(f"{name} checksum wrong after the program (it was right before)")
    else:
        problems.append(f"a packet with next header {proto} was rewritten")
    return problems


# --- generation --------------------------------------------------------------------


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


@dataclass(frozen=True)
class Targets:
    """Addresses the generated frames aim at (so they reach the interesting paths):
    by default the seed's client, service and backends (tests/seed.py)."""

    client: str = seed.CLIENT_IP
    service: tuple[str, int] = (seed.VIP, seed.NODE_PORT)
    backends: tuple[tuple[str, int], ...] = tuple((ip, seed.POD_PORT) for ip in seed.POD_IPS)
    client_ports: tuple[int, ...] = tuple(range(seed.CLIENT_PORT, seed.CLIENT_PORT + 4))
    client6: str = "fd00:c::1"
    service6: tuple[str, int] = ("fd00:5::10", seed.NODE_PORT)
    backends6: tuple[tuple[str, int], ...] = (("fd00:b::5", seed.POD_PORT),
                                              ("fd00:b::6", seed.POD_PORT))


OPTION_KINDS: tuple[int, ...] = (
    0x00,  # end of options
    0x01,  # no-op
    0x07,  # record route
    0x44,  # timestamp
    0x83,  # loose source route
    0x89,  # strict source route
    0x82,  # security
    0x85,  # extended security
    0x94,  # router alert
    0x88,  # stream id
    0x9A,  # the DSR option itself
    0x19,  # quick-start
    0x1E,  # experimental
)


class FrameGenerator:
    """Seeded frames of every family in :data:`FAMILIES` (see the module doc)."""

    def __init__(self, seed: int = 0, targets: Targets | None = None, *,
                 ipv6: bool = False) -> None:
        self.rnd = random.Random(seed)
        self.t = targets or Targets()
        self._client6 = ipaddress.IPv6Address(self.t.client6).packed
        self._svc6 = (ipaddress.IPv6Address(self.t.service6[0]).packed, self.t.service6[1])
        self._backends6 = [(ipaddress.IPv6Address(ip).packed, port)
                           for ip, port in self.t.backends6]
        self._client = _ip(self.t.client)
        self._svc = (_ip(self.t.service[0]), self.t.service[1])
        self._backends = [(_ip(ip), port) for ip, port in self.t.backends]
        # dst: the service's node, src: the client (Docker's MACs, 02:42 + the address)
        self._macs = b"\x02\x42" + self._svc[0] + b"\x02\x42" + self._client
        families = {**FAMILIES, **(FAMILIES6 if ipv6 else {})}
        self._families: list[tuple[str, Callable[[], bytes]]] = [
            (name, getattr(self, f"_f_{name}")) for name in families
        ]
        self._weights = [families[name] for name in families]

    # -- building blocks ---------------------------------------------------------

    def _eth(self, ethertype: int = ETH_P_IP) -> bytes:
        return self._macs + ethertype.to_bytes(2, "big")

    def _payload(self, n: int | None = None) -> bytes:
        if n is None:
            n = self.rnd.choice((0, 0, 1, 4, 17, 64, 200))
        return self.rnd.randbytes(n)

    def _options(self, size: int) -> bytes:
        """``size`` bytes (a multiple of 4) of IP options of assorted kinds."""
        out = bytearray()
        rnd = self.rnd
        while len(out) < size:
            room = size - len(out)
            kind = rnd.choice(OPTION_KINDS)
            if kind in (0x00, 0x01) or room < 2:
                out.append(kind if room >= 1 else 0)
                continue
            if rnd.random() < 0.2:
                length = rnd.choice((0, 1, 2, room, room + 1, 255))  # nonsense lengths
            elif kind == dsropt.OPT_TYPE:
                length = 8 if rnd.random() < 0.8 else rnd.choice((6, 10))
            else:
                length = rnd.randint(2, min(room, 40))
            body = bytearray(rnd.randbytes(max(0, min(length, room) - 2)))
            if kind in (0x07, 0x83, 0x89) and body:
                body[0] = rnd.choice((4, 8, length & 0xFF))  # pointer
            out += bytes([kind, length & 0xFF]) + body
        return bytes(out[:size])

    def _ipv4(self, src: bytes, dst: bytes, proto: int, l4: bytes, *, opts: bytes = b"",
              ttl: int | None = None, frag: int = 0) -> bytes:
        hlen = 20 + len(opts)
        tot = (hlen + len(l4)) & 0xFFFF
        ttl = self.rnd.choice((64, 63, 1, 2, 255)) if ttl is None else ttl
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | (hlen // 4), self.rnd.choice((0, 0,
                        0x10, 0xB8)), tot, self.rnd.getrandbits(16), frag, ttl, proto, 0, src,
                        dst) + opts)
        hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
        return bytes(hdr) + l4

    def _tcp(self, src: bytes, dst: bytes, ports: tuple[int, int], *, flags: int,
             payload: bytes = b"", opts: bytes = b"") -> bytes:
        sport, dport = ports
        doff = (20 + len(opts)) // 4
        seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, self.rnd.getrandbits(32),
                                    self.rnd.getrandbits(32), doff << 4, flags, 64240, 0, 0)
                        + opts + payload)
        seg[16:18] = checksum(pseudo_header(src, dst, TCP, len(seg)) + seg).to_bytes(2, "big")
        return bytes(seg)

    def _udp(self, src: bytes, dst: bytes, ports: tuple[int, int], payload: bytes, *,
             zero_csum: bool = False) -> bytes:
        sport, dport = ports
        seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
        if not zero_csum:
            c = checksum(pseudo_header(src, dst, UDP, len(seg)) + seg) or 0xFFFF
            seg[6:8] = c.to_bytes(2, "big")
        return bytes(seg)

    def _flags(self) -> int:
        return self.rnd.choice((0x02, 0x02, 0x10, 0x18, 0x11, 0x12, 0x04, 0x14, 0x00, 0xFF,
                                self.rnd.getrandbits(8)))

    def _client_port(self) -> int:
        if self.rnd.random() < 0.7:
            return self.rnd.choice(self.t.client_ports)
        return self.rnd.randint(1, 65535)

    def _to_service(self, opts: bytes = b"", payload: bytes | None = None) -> bytes:
        """A TCP or UDP packet client -> service (the LB path), IPv4 bytes only."""
        vip, port = self._svc
        dport = port if self.rnd.random() < 0.9 else self.rnd.randint(0, 65535)
        pl = self._payload() if payload is None else payload
        sport = self._client_port()
        if self.rnd.random() < 0.7:
            l4 = self._tcp(self._client, vip, (sport, dport), flags=self._flags(), payload=pl)
            return self._ipv4(self._client, vip, TCP, l4, opts=opts)
        l4 = self._udp(self._client, vip, (sport, dport), pl,
                       zero_csum=self.rnd.random() < 0.2)
        return self._ipv4(self._client, vip, UDP, l4, opts=opts)

    def _dsr_option(self) -> bytes:
        vip, port = self._svc
        return dsropt.encode(str(ipaddress.IPv4Address(vip)), port, "host")

    def _to_backend(self, opts: bytes | None = None) -> bytes:
        """A DNATed SYN (or datagram) client -> backend, usually with the DSR option."""
        be, bport = self.rnd.choice(self._backends)
        if opts is None:
            opts = self._dsr_option() if self.rnd.random() < 0.8 else b""
            extra = self.rnd.choice((0, 0, 4, 8, 12, 32))
            if len(opts) + extra <= 40:
                opts += self._options(extra)
        sport = self._client_port()
        if self.rnd.random() < 0.75:
            flags = 0x02 if self.rnd.random() < 0.7 else self._flags()
            l4 = self._tcp(self._client, be, (sport, bport), flags=flags,
                           payload=self._payload())
            return self._ipv4(self._client, be, TCP, l4, opts=opts, ttl=63)
        l4 = self._udp(self._client, be, (sport, bport), self._payload())
        return self._ipv4(self._client, be, UDP, l4, opts=opts, ttl=63)

    def _from_backend(self) -> bytes:
        """A reply backend -> client (the reply path)."""
        be, bport = self.rnd.choice(self._backends)
        dport = self._client_port()
        if self.rnd.random() < 0.75:
            l4 = self._tcp(be, self._client, (bport, dport), flags=self._flags(),
                           payload=self._payload())
            return self._ipv4(be, self._client, TCP, l4, ttl=64)
        l4 = self._udp(be, self._client, (bport, dport), self._payload(),
                       zero_csum=self.rnd.random() < 0.2)
        return self._ipv4(be, self._client, UDP, l4, ttl=64)

    def _any_valid(self) -> bytes:
        return self.rnd.choice((self._to_service, self._to_backend, self._from_backend))()

    def _with_eth(self, ip: bytes) -> bytes:
        frame = self._eth() + ip
        if self.rnd.random() < 0.1:  # Ethernet padding behind the IP packet
            frame += bytes(self.rnd.randint(1, 30))
        return frame

    @staticmethod
    def _refix_csum(frame: bytearray) -> None:
        hlen = (frame[ETH_HLEN] & 0x0F) * 4
        if hlen < 20 or ETH_HLEN + hlen > len(frame):
            return
        frame[24:26] = b"\0\0"
        frame[24:26] = checksum(bytes(frame[ETH_HLEN : ETH_HLEN + hlen])).to_bytes(2, "big")

    # -- families ----------------------------------------------------------------

    def _f_service(self) -> bytes:
        return self._with_eth(self._to_service())

    def _f_backend(self) -> bytes:
        return self._with_eth(self._to_backend())

    def _f_reply(self) -> bytes:
        return self._with_eth(self._from_backend())

    def _f_truncated(self) -> bytes:
        frame = self._with_eth(self._any_valid())
        return frame[: self.rnd.randint(0, len(frame) - 1)]

    def _f_bad_ihl(self) -> bytes:
        frame = bytearray(self._with_eth(self._any_valid()))
        frame[ETH_HLEN] = 0x40 | self.rnd.randint(0, 15)
        if self.rnd.random() < 0.8:
            self._refix_csum(frame)
        return bytes(frame)

    def _f_tot_len(self) -> bytes:
        frame = bytearray(self._with_eth(self._any_valid()))
        tot = int.from_bytes(frame[16:18], "big")
        new = self.rnd.choice((0, 1, 19, 20, 27, 28, 39, 40, tot - 1, tot + 1, tot + 8,
                               len(frame), 1500, 0xFFFF, self.rnd.randint(0, 0xFFFF)))
        frame[16:18] = (new & 0xFFFF).to_bytes(2, "big")
        if self.rnd.random() < 0.8:
            self._refix_csum(frame)
        return bytes(frame)

    def _f_fragment(self) -> bytes:
        frame = bytearray(self._with_eth(self._any_valid()))
        frag = self.rnd.choice((IP_MF, IP_MF | 1, 1, 185, IP_OFFSET, 0x4000 | IP_MF,
                                self.rnd.getrandbits(16)))
        frame[20:22] = frag.to_bytes(2, "big")
        self._refix_csum(frame)
        return bytes(frame)

    def _f_options(self) -> bytes:
        size = self.rnd.choice((4, 8, 12, 16, 20, 28, 32, 36, 40, 40, 40))
        opts = self._options(size)
        if self.rnd.random() < 0.5:
            return self._with_eth(self._to_service(opts=opts))
        return self._with_eth(self._to_backend(opts=opts))

    def _f_non_ip(self) -> bytes:
        ethertype = self.rnd.choice((0x0806, 0x88CC, 0x8847, 0x8863, 0x0842, 0x88B5, 0x9000,
                                     self.rnd.getrandbits(16)))
        if ethertype == ETH_P_IP:
            ethertype = 0x0806
        return self._eth(ethertype) + self._payload(self.rnd.choice((0, 28, 46, 100)))

    def _f_vlan(self) -> bytes:
        inner = self._any_valid()
        tag = struct.pack("!HH", self.rnd.getrandbits(12), ETH_P_IP)
        if self.rnd.random() < 0.3:  # QinQ
            tag = struct.pack("!HH", self.rnd.getrandbits(12), ETH_P_8021Q) + tag
            return self._eth(ETH_P_8021AD) + tag + inner
        return self._eth(ETH_P_8021Q) + tag + inner

    def _f_ipv6(self) -> bytes:
        nh = self.rnd.choice((TCP, UDP, 0, 43, 44, 60, 58, 59))
        payload = self._payload(self.rnd.choice((0, 8, 20, 40, 64)))
        plen = len(payload) if self.rnd.random() < 0.8 else self.rnd.getrandbits(16)
        hdr = struct.pack("!IHBB", 0x60000000, plen, nh, 64)
        hdr += bytes.fromhex("fd000000000000000000000000000001")
        hdr += bytes.fromhex("fd000000000000000000000000000002")
        frame = self._eth(ETH_P_IPV6) + hdr + payload
        if self.rnd.random() < 0.3:
            frame = frame[: self.rnd.randint(ETH_HLEN, len(frame))]
        return frame

    def _f_tiny(self) -> bytes:
        n = self.rnd.randint(0, ETH_HLEN + 20)
        frame = self._eth(self.rnd.choice((ETH_P_IP, ETH_P_IP, ETH_P_IPV6, 0x0806)))
        return (frame + self.rnd.randbytes(40))[:n]

    def _f_jumbo(self) -> bytes:
        size = self.rnd.choice((1400, 1500, 2000, 3000, MAX_TEST_RUN_FRAME - 100, 9000))
        if self.rnd.random() < 0.5:
            ip = self._to_service(payload=self._payload(size))
        else:
            ip = self._to_backend()
            ip += bytes(size)
            frame = bytearray(self._eth() + ip)
            frame[16:18] = min(len(ip), 0xFFFF).to_bytes(2, "big")
            self._refix_csum(frame)
            return bytes(frame)
        return self._eth() + ip

    def _f_l4_garbage(self) -> bytes:
        frame = bytearray(self._with_eth(self._any_valid()))
        hlen = (frame[ETH_HLEN] & 0x0F) * 4
        l4 = ETH_HLEN + hlen
        if frame[23] == TCP and len(frame) > l4 + 13:
            frame[l4 + 12] = self.rnd.getrandbits(8)  # data offset and reserved bits
            frame[l4 + 13] = self.rnd.getrandbits(8)
        elif len(frame) > l4 + 6:
            frame[l4 + 4 : l4 + 6] = self.rnd.getrandbits(16).to_bytes(2, "big")  # UDP length
        return bytes(frame)

    def _f_proto(self) -> bytes:
        frame = bytearray(self._with_eth(self._any_valid()))
        frame[23] = self.rnd.choice((0, 1, 2, 4, 41, 47, 50, 132, 255, self.rnd.getrandbits(8)))
        self._refix_csum(frame)
        return bytes(frame)

    def _f_flip(self) -> bytes:
        frame = bytearray(self._with_eth(self._any_valid()))
        for _ in range(self.rnd.randint(1, 4)):
            i = self.rnd.randrange(min(len(frame), 80))
            frame[i] ^= 1 << self.rnd.randrange(8)
        if self.rnd.random() < 0.5:
            self._refix_csum(frame)
        return bytes(frame)

    # -- IPv6 (with ipv6=True) ------------------------------------------------------

    def _ipv6(self, src: bytes, dst: bytes, nh: int, payload: bytes, *,
              hlim: int | None = None) -> bytes:
        hlim = self.rnd.choice((64, 63, 1, 2, 255)) if hlim is None else hlim
        word0 = (6 << 28) | (self.rnd.choice((0, 0, 0x28, 0xB8)) << 20) | \
            self.rnd.choice((0, 0, self.rnd.getrandbits(20)))
        return struct.pack("!IHBB", word0, len(payload) & 0xFFFF, nh, hlim) + src + dst + payload

    def _l4_6(self, src: bytes, dst: bytes, ports: tuple[int, int], proto: int, *,
              flags: int = 0x02, payload: bytes = b"", zero_csum: bool = False) -> bytes:
        sport, dport = ports
        if proto == TCP:
            seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, self.rnd.getrandbits(32),
                                        self.rnd.getrandbits(32), 5 << 4, flags, 64240, 0, 0)
                            + payload)
            off = 16
        else:
            seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
            off = 6
        if not (proto == UDP and zero_csum):
            pseudo = src + dst + struct.pack("!I3xB", len(seg), proto)
            c = checksum(pseudo + bytes(seg)) or (0xFFFF if proto == UDP else 0)
            seg[off : off + 2] = c.to_bytes(2, "big")
        return bytes(seg)

    def _to_service6(self, ext: bytes = b"", ext_nh: int | None = None) -> bytes:
        vip, port = self._svc6
        dport = port if self.rnd.random() < 0.9 else self.rnd.randint(0, 65535)
        proto = TCP if self.rnd.random() < 0.7 else UDP
        l4 = self._l4_6(self._client6, vip, (self._client_port(), dport), proto,
                        flags=self._flags(), payload=self._payload(),
                        zero_csum=self.rnd.random() < 0.2)
        return self._ipv6(self._client6, vip, proto if ext_nh is None else ext_nh, ext + l4)

    def _dsr_ext6(self, nh: int) -> bytes:
        vip, port = self._svc6
        ext = bytearray(bytes([nh, 2, 0x1B, 20]) + vip + port.to_bytes(2, "big") + b"\0\0")
        if self.rnd.random() < 0.15:  # a near miss: another type, length or size
            ext[self.rnd.choice((1, 2, 3))] = self.rnd.getrandbits(8)
        return bytes(ext)

    def _to_backend6(self) -> bytes:
        be, bport = self.rnd.choice(self._backends6)
        proto = TCP if self.rnd.random() < 0.75 else UDP
        flags = 0x02 if self.rnd.random() < 0.7 else self._flags()
        l4 = self._l4_6(self._client6, be, (self._client_port(), bport), proto, flags=flags,
                        payload=self._payload())
        if self.rnd.random() < 0.8:
            return self._ipv6(self._client6, be, 60, self._dsr_ext6(proto) + l4, hlim=63)
        return self._ipv6(self._client6, be, proto, l4, hlim=63)

    def _from_backend6(self) -> bytes:
        be, bport = self.rnd.choice(self._backends6)
        proto = TCP if self.rnd.random() < 0.75 else UDP
        l4 = self._l4_6(be, self._client6, (bport, self._client_port()), proto,
                        flags=self._flags(), payload=self._payload(),
                        zero_csum=self.rnd.random() < 0.2)
        return self._ipv6(be, self._client6, proto, l4, hlim=64)

    def _any_valid6(self) -> bytes:
        return self.rnd.choice((self._to_service6, self._to_backend6, self._from_backend6))()

    def _with_eth6(self, ip: bytes) -> bytes:
        frame = self._eth(ETH_P_IPV6) + ip
        if self.rnd.random() < 0.1:
            frame += bytes(self.rnd.randint(1, 30))
        return frame

    def _ext_chain(self, last: int) -> tuple[int, bytes]:
        """1 to 5 extension headers of assorted kinds ending in ``last``: (first, bytes)."""
        kinds = [self.rnd.choice((0, 43, 60, 44, 51)) for _ in range(self.rnd.randint(1, 5))]
        out = b""
        nxt = last
        for kind in reversed(kinds):
            if kind == 44:
                frag = self.rnd.choice((0, 1, 8 | 1, 0xFFF8, self.rnd.getrandbits(16)))
                hdr = bytes([nxt, 0]) + frag.to_bytes(2, "big") + self.rnd.randbytes(4)
            elif kind == 51:
                n = self.rnd.choice((1, 2, 4))
                hdr = bytes([nxt, n]) + self.rnd.randbytes((n + 2) * 4 - 2)
            else:
                n = self.rnd.choice((0, 0, 1, 2))
                hdr = bytes([nxt, n]) + self.rnd.randbytes((n + 1) * 8 - 2)
            out = hdr + out
            nxt = kind
        return nxt, out

    def _f_service6(self) -> bytes:
        return self._with_eth6(self._to_service6())

    def _f_backend6(self) -> bytes:
        return self._with_eth6(self._to_backend6())

    def _f_reply6(self) -> bytes:
        return self._with_eth6(self._from_backend6())

    def _f_exthdr6(self) -> bytes:
        proto = TCP if self.rnd.random() < 0.7 else UDP
        first, chain = self._ext_chain(proto)
        if self.rnd.random() < 0.7:
            return self._with_eth6(self._to_service6(chain, first))
        be, bport = self.rnd.choice(self._backends6)
        l4 = self._l4_6(self._client6, be, (self._client_port(), bport), proto)
        return self._with_eth6(self._ipv6(self._client6, be, first, chain + l4))

    def _f_malformed6(self) -> bytes:
        frame = bytearray(self._with_eth6(self._any_valid6()))
        what = self.rnd.randrange(5)
        if what == 0:  # payload length lies
            plen = int.from_bytes(frame[18:20], "big")
            new = self.rnd.choice((0, 1, 7, 8, 19, 20, 23, 24, plen - 1, plen + 1, plen + 24,
                                   0xFFFF, self.rnd.getrandbits(16)))
            frame[18:20] = (new & 0xFFFF).to_bytes(2, "big")
        elif what == 1:  # the version
            frame[14] = (self.rnd.choice((0, 4, 5, 7, 15)) << 4) | (frame[14] & 0x0F)
        elif what == 2:  # cut short
            return bytes(frame[: self.rnd.randint(0, len(frame) - 1)])
        elif what == 3:  # another next header
            frame[20] = self.rnd.choice((0, 43, 44, 58, 59, 60, 51, 50, 255,
                                         self.rnd.getrandbits(8)))
        elif len(frame) > ETH_HLEN + IPV6_HLEN + 13:  # TCP data offset or UDP length garbage
            frame[ETH_HLEN + IPV6_HLEN + self.rnd.choice((4, 5, 12, 13))] = \
                self.rnd.getrandbits(8)
        return bytes(frame)

    def _f_flip6(self) -> bytes:
        frame = bytearray(self._with_eth6(self._any_valid6()))
        for _ in range(self.rnd.randint(1, 4)):
            i = self.rnd.randrange(ETH_HLEN, min(len(frame), 110))
            frame[i] ^= 1 << self.rnd.randrange(8)
        return bytes(frame)

    # -- output ------------------------------------------------------------------

    def frame(self) -> tuple[str, bytes]:
        """One (family, frame); about one IPv4 frame in ten keeps a broken IP header
        checksum (its family then ends in ``+bad_csum``)."""
        name, make = self.rnd.choices(self._families, self._weights)[0]
        data = make()
        if name in FAMILIES6:
            return name, data
        if len(data) >= ETH_HLEN + 20 and self.rnd.random() < 0.1:
            broken = bytearray(data)
            broken[24] ^= 0x5A
            data = bytes(broken)
            name += BAD_CSUM
        return name, data

    def frames(self, count: int) -> Iterator[tuple[str, bytes]]:
        for _ in range(count):
            yield self.frame()


# family -> weight; every family has a _f_<name> method
WELL_FORMED = frozenset({"service", "backend", "reply",  # the rest are malformed
                         "service6", "backend6", "reply6"})
BAD_CSUM = "+bad_csum"
FAMILIES: dict[str, int] = {
    "service": 12,
    "backend": 8,
    "reply": 8,
    "truncated": 8,
    "bad_ihl": 6,
    "tot_len": 6,
    "fragment": 5,
    "options": 10,
    "non_ip": 3,
    "vlan": 3,
    "ipv6": 3,
    "tiny": 3,
    "jumbo": 3,
    "l4_garbage": 6,
    "proto": 4,
    "flip": 8,
}
# with FrameGenerator(ipv6=True): IPv6 to the service, to a backend with the DSR
# extension, replies, extension header chains, malformed and bit-flipped IPv6
FAMILIES6: dict[str, int] = {
    "service6": 8,
    "backend6": 5,
    "reply6": 5,
    "exthdr6": 4,
    "malformed6": 6,
    "flip6": 4,
}


# --- driving -----------------------------------------------------------------------


@dataclass
class FuzzFailure:
    """One frame the invariant failed on."""

    index: int
    family: str
    problems: list[str]
    frame: bytes
    output: bytes


@dataclass
class FuzzReport:
    """What a fuzz run did: counts by family and verdict, and what failed."""

    program: str
    generated: int = 0
    ran: int = 0
    rejected: int = 0
    families: Counter[str] = field(default_factory=Counter)
    ran_by_family: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    changed: int = 0
    findings: list[FuzzFailure] = field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0

    @property
    def malformed_ran(self) -> int:
        """Malformed frames (not a well-formed family, or a broken header checksum) the
        program actually ran on."""
        return sum(n for fam, n in self.ran_by_family.items() if is_malformed(fam))

    def summary(self) -> str:
        v = ", ".join(f"{k} {n}" for k, n in sorted(self.verdicts.items()))
        return (f"{self.program}: {self.generated} frames, {self.ran} run ({v}; "
                f"{self.malformed_ran} of them malformed), "
                f"{self.changed} rewritten, {self.rejected} refused by the kernel, "
                f"{self.failures} failures, {self.seconds:.1f} s")


RunFn = Callable[[bytes], TestRunResult | None]


def is_malformed(family: str) -> bool:
    """A frame of this family is malformed (see :data:`WELL_FORMED`, :data:`BAD_CSUM`)."""
    return family not in WELL_FORMED


def make_run_fn(dp: DatapathObject, program: str, ifindex: int = 0) -> RunFn:
    """``dp.test_run`` of ``program`` for :func:`fuzz`: None when the kernel refuses the
    frame (shorter than Ethernet, an IPv4 header it cannot pull, too large).

    Call the result inside the namespace the runs should resolve routes in.
    """

    def run(frame: bytes) -> TestRunResult | None:
        if len(frame) < ETH_HLEN:
            return None
        try:
            return dp.test_run(program, frame, ifindex=ifindex)
        except TestRunRefused:
            return None

    return run


def fuzz(
    program: str,
    run: RunFn,
    frames: Iterable[tuple[str, bytes]],
    *,
    validating: bool = False,
    keep: int = 20,
) -> FuzzReport:
    """Run every frame through ``run`` (None = the kernel refused it) and check each result.

    ``keep`` caps the findings kept in full; ``failures`` counts all.
    """
    report = FuzzReport(program)
    started = time.monotonic()
    for index, (family, frame) in enumerate(frames):
        report.generated += 1
        report.families[family] += 1
        res = run(frame)
        if res is None:
            report.rejected += 1
            continue
        report.ran += 1
        report.ran_by_family[family] += 1
        report.verdicts[res.verdict] += 1
        if res.verdict != "shot" and res.data != frame:
            report.changed += 1
        problems = check_result(frame, res, validating=validating)
        if problems:
            report.failures += 1
            if len(report.findings) < keep:
                report.findings.append(FuzzFailure(index, family, problems, frame, res.data))
    report.seconds = time.monotonic() - started
    return report
