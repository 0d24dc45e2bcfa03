"""Geneve frames for the datapath fuzzer, and the invariant for Geneve dispatch.

:class:`GeneveFrames` makes seeded Geneve frames from the LB node to the
backend's node (plain bytes): sound ones (with or without the DSR TLV, with
optional options around it, a TCP or UDP inner packet) and broken ones: bytes
flipped in the outer, Geneve, option or inner headers, length fields set at
random (IPv4 total length, UDP length, options length, inner total length),
the frame cut anywhere, option soups of random class, type and length.

The invariant, per frame and the program's answer:

* :func:`check_decap` (the backend node's ingress, Geneve to it): a drop
  has a known reason; a frame let through is either untouched or exactly the
  input's outer Ethernet header followed by the input's inner IPv4 packet
  (the bytes behind the inner Ethernet header, unchanged), and that inner
  packet parses (version 4, IHL >= 5, its total length inside the frame);
* :func:`check_encap` (the LB node's ingress with Geneve dispatch, on the
  generic fuzzer's frames): a frame grown by Geneve has a sound outer IPv4
  header (checksum, IHL 5, total length), UDP to 6081 with a consistent
  length and checksum 0, Geneve version 0 carrying Ethernet with either no
  option or exactly the DSR TLV of the service; the inner frame it carries
  meets the generic invariant (:func:`~tests.datapath.fuzzgen.check_result`)
  as the option path's output would; any other answer meets it directly.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import ClassVar

from lab.datapath.testrun import TestRunResult
from lab.wire.checksum import checksum
from lab.wire.ipv4 import parse_ipv4
from tests import seed
from tests.datapath.fuzzgen import KNOWN_REASONS, check_result

ETH_HLEN = 14
GENEVE_PORT = 6081
OUTER_FIXED = 20 + 8 + 8  # outer IPv4 (IHL 5), UDP, Geneve base header
TLV_HEAD = bytes.fromhex("014b8102")


def _ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def dsr_tlv(addr: str = seed.VIP, port: int = seed.NODE_PORT) -> bytes:
    return TLV_HEAD + _ip(addr) + struct.pack("!H", port) + b"\0\0"


def _csum_fixed(ip: bytearray) -> bytearray:
    ip[10:12] = b"\0\0"
    ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
    return ip


class GeneveFrames:
    """Seeded Geneve frames from the LB node (VIP) to the backend's node."""

    FAMILIES: ClassVar[dict[str, int]] = {"sound": 2, "flip": 4, "lengths": 3, "cut": 2,
                                          "soup": 2}

    def __init__(self, seed_: int = 0, *, node: str = seed.WORKER_IP) -> None:
        self.rnd = random.Random(seed_)
        self._node = _ip(node)
        self._lb = _ip(seed.VIP)
        self._names = list(self.FAMILIES)
        self._weights = [self.FAMILIES[n] for n in self._names]

    def _inner(self) -> bytes:
        r = self.rnd
        proto = r.choice((6, 17))
        payload = r.randbytes(r.randrange(0, 64))
        if proto == 6:
            flags = r.choice((0x02, 0x10, 0x18, 0x12, 0x11))
            l4 = struct.pack("!HHIIBBHHH", seed.CLIENT_PORT + r.randrange(4), seed.POD_PORT,
                             r.getrandbits(32), 0, 0x50, flags, 512, 0, 0) + payload
        else:
            l4 = struct.pack("!HHHH", seed.CLIENT_PORT, seed.POD_PORT, 8 + len(payload),
                             0) + payload
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), r.getrandbits(16),
                                   0, 63, proto, 0, _ip(seed.CLIENT_IP), _ip(seed.POD_IP)))
        return bytes(_csum_fixed(ip)) + l4

    def _options(self) -> bytes:
        r = self.rnd
        opts = [dsr_tlv()] if r.random() < 0.7 else []
        for _ in range(r.randrange(0, 3)):
            words = r.randrange(0, 4)
            opts.insert(r.randrange(len(opts) + 1),
                        struct.pack("!HBB", r.choice((0x0102, 0x0000, 0xFFFF)),
                                    r.randrange(0, 0x80), words) + r.randbytes(4 * words))
        return b"".join(opts)

    def sound(self, options: bytes | None = None) -> bytes:
        opts = self._options() if options is None else options
        inner = (b"\x02\x42" + self._lb + b"\x02\x42" + _ip(seed.CLIENT_IP) + b"\x08\x00"
                 + self._inner())
        gen = bytes([len(opts) // 4, 0]) + b"\x65\x58" + b"\x00\x00\x02\x00" + opts
        udp_len = 8 + len(gen) + len(inner)
        udp = struct.pack("!HHHH", self.rnd.randrange(1, 65536), GENEVE_PORT, udp_len, 0)
        ip = _csum_fixed(bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0,
                                               64, 17, 0, self._lb, self._node)))
        eth = b"\x02\x42" + self._node + b"\x02\x42" + self._lb + b"\x08\x00"
        return eth + bytes(ip) + udp + gen + inner

    def _f_sound(self) -> bytes:
        return self.sound()

    def _f_flip(self) -> bytes:
        f = bytearray(self.sound())
        end = min(len(f), ETH_HLEN + OUTER_FIXED + 64 + 34)
        for _ in range(self.rnd.randrange(1, 5)):
            f[self.rnd.randrange(ETH_HLEN + 20, end)] ^= 1 << self.rnd.randrange(8)
        return bytes(f)

    def _f_lengths(self) -> bytes:
        f = bytearray(self.sound())
        which = self.rnd.randrange(4)
        if which == 0:  # outer total length
            f[16:18] = self.rnd.randrange(0, 0x10000).to_bytes(2, "big")
            f[14:34] = _csum_fixed(bytearray(f[14:34]))
        elif which == 1:  # UDP length
            f[38:40] = self.rnd.randrange(0, 0x10000).to_bytes(2, "big")
        elif which == 2:  # Geneve options length (6 bits), version kept
            f[42] = self.rnd.randrange(0, 64)
        else:  # inner total length
            at = ETH_HLEN + OUTER_FIXED + (f[42] & 0x3F) * 4 + ETH_HLEN + 2
            if at + 2 <= len(f):
                f[at : at + 2] = self.rnd.randrange(0, 0x10000).to_bytes(2, "big")
        return bytes(f)

    def _f_cut(self) -> bytes:
        f = self.sound()
        cut = self.rnd.randrange(ETH_HLEN + 28, len(f))
        if self.rnd.random() < 0.5:  # the lengths say so too
            g = bytearray(f[:cut])
            g[16:18] = (cut - ETH_HLEN).to_bytes(2, "big")
            g[14:34] = _csum_fixed(bytearray(g[14:34]))
            g[38:40] = (cut - ETH_HLEN - 20).to_bytes(2, "big")
            return bytes(g)
        return f[:cut]

    def _f_soup(self) -> bytes:
        r = self.rnd
        soup = b"".join(struct.pack("!HBB", r.choice((0x014B, r.getrandbits(16))),
                                    r.getrandbits(8), r.getrandbits(8))
                        + r.randbytes(4 * r.randrange(0, 3)) for _ in range(r.randrange(1, 9)))
        return self.sound(soup[: 252 - 252 % 4] if len(soup) > 252 else soup)

    def frame(self) -> tuple[str, bytes]:
        name = self.rnd.choices(self._names, self._weights)[0]
        return name, getattr(self, f"_f_{name}")()

    def frames(self, n: int) -> Iterator[tuple[str, bytes]]:
        for _ in range(n):
            yield self.frame()


def check_decap(frame: bytes, res: TestRunResult) -> list[str]:
    """What is wrong with the backend node's answer ``res`` to ``frame`` (empty: nothing)."""
    if res.verdict == "shot":
        return [] if res.drop_reason in KNOWN_REASONS else [f"drop without a known reason "
                                                            f"(cb[0] = {res.cb[0]})"]
    if res.verdict != "ok":
        return [f"verdict {res.verdict} at the backend node"]
    out = res.data
    if out == frame:
        return []
    ihl = (frame[14] & 0x0F) * 4
    optlen = (frame[ETH_HLEN + ihl + 8] & 0x3F) * 4
    inner_at = ETH_HLEN + ihl + 16 + optlen + ETH_HLEN
    problems = []
    if out != frame[:ETH_HLEN] + frame[inner_at:]:
        problems.append("changed, but not to the outer Ethernet header + the inner packet")
    view, why = parse_ipv4(out)
    if view is None:
        problems.append(f"the delivered inner packet does not parse: {why}")
    return problems


def check_encap(frame: bytes, res: TestRunResult, tlv: bytes) -> list[str]:
    """What is wrong with the LB node's answer ``res`` to ``frame`` with Geneve dispatch."""
    out = res.data
    if res.verdict != "redirect" or len(out) < len(frame) + OUTER_FIXED + ETH_HLEN:
        return check_result(frame, res, validating=True)
    problems = []
    outer = out[ETH_HLEN : ETH_HLEN + 20]
    in_tot = int.from_bytes(frame[16:18], "big")
    trailer = len(frame) - ETH_HLEN - in_tot
    tot = int.from_bytes(outer[2:4], "big")
    if out[12:14] != b"\x08\x00" or outer[0] != 0x45 or checksum(outer) != 0:
        problems.append(f"outer IPv4 header unsound: {outer.hex()}")
    if tot != len(out) - ETH_HLEN - trailer:
        problems.append(f"outer total length {tot} for {len(out) - ETH_HLEN - trailer} bytes")
    sport, dport, ulen, ucsum = struct.unpack("!HHHH", out[34:42])
    if (dport, ulen, ucsum) != (GENEVE_PORT, tot - 20, 0) or sport == 0:
        problems.append(f"UDP {sport} -> {dport} len {ulen} csum {ucsum}")
    gen = out[42:50]
    optlen = (gen[0] & 0x3F) * 4
    if gen[0] >> 6 != 0 or gen[2:4] != b"\x65\x58" or optlen not in (0, len(tlv)):
        problems.append(f"Geneve header {gen.hex()}")
    if optlen and out[50 : 50 + optlen] != tlv:
        problems.append(f"Geneve option {out[50 : 50 + optlen].hex()} is not the DSR TLV")
    inner = out[50 + optlen :]
    if inner[:ETH_HLEN] != frame[:ETH_HLEN]:
        problems.append("the inner Ethernet header is not the received one")
    problems += [f"inner: {p}" for p in check_result(frame, replace(res, data=inner),
                                                     validating=True)]
    return problems


@dataclass
class GeneveReport:
    ran: int = 0
    rejected: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    changed: int = 0
    findings: list[tuple[str, list[str], bytes]] = field(default_factory=list)


def run_checked(frames: Iterable[tuple[str, bytes]],
                run: Callable[[bytes], TestRunResult | None],
                check: Callable[[bytes, TestRunResult], list[str]]) -> GeneveReport:
    rep = GeneveReport()
    for family, frame in frames:
        res = run(frame)
        if res is None:
            rep.rejected += 1
            continue
        rep.ran += 1
        rep.verdicts[res.verdict] += 1
        if res.drop_reason:
            rep.reasons[res.drop_reason] += 1
        if res.verdict != "shot" and res.data != frame:
            rep.changed += 1
        problems = check(frame, res)
        if problems and len(rep.findings) < 20:
            rep.findings.append((family, problems, frame))
    return rep
