"""Two frames compared field by field, each field named as scapy names it.

:func:`frame_fields` decodes a frame with scapy and lists its header fields
as ``[Layer].field`` -> printable value (``[IP].ttl`` -> ``63``), a layer met
twice numbered from its second (``[Dot1Q#2].vlan``). The IPv4 options are
split: the DSR option (the first option, type 0x9a length 8, as the backend
reads it) becomes ``[DSR].service`` (``ip:port`` in Cilium's host byte
order), the others stay ``[IP].options`` in hex. Payload bytes are ``[Raw].load``
and ``[Padding].load``; the frame's length is ``[frame].length``.

:func:`field_diffs` lists the fields whose values differ between two frames
(in the order of the first frame's layers, then the second's). A checksum
difference whose both sides are right for their own bytes (or wrong by the
same amount: an input checksum that was wrong, updated incrementally on both),
while another field differs, *follows* from that field (``FieldDiff.follows``): lowering the
TTL changes the IPv4 header checksum, and the checksum says nothing more.
When scapy's fields agree but the bytes do not, ``[bytes]`` names the first
differing offset, so no difference goes unnamed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import NoPayload, Packet

from lab.wire import dsropt
from lab.wire.checksum import ones_sum, pseudo_header

CHECKSUMS = frozenset({"[IP].chksum", "[TCP].chksum", "[UDP].chksum"})


@dataclass(frozen=True)
class FieldDiff:
    """One field that differs: its name and both values (``None``: the frame has no
    such field); ``follows``: a checksum as right (or as wrong) on both sides, changed
    by another field."""

    field: str
    a: str | None
    b: str | None
    follows: bool = False

    @property
    def short(self) -> str:
        """The field's own name without the layer: ``ttl`` for ``[IP].ttl``."""
        return self.field.rsplit("]", 1)[-1].lstrip(".") or self.field

    def matches(self, name: str) -> bool:
        """``name`` is this field's full name (``[IP].ttl``), its own name (``ttl``) or
        its layer (``[DSR]``, ``IP``)."""
        layer = self.field.split("]", 1)[0] + "]"
        return name in (self.field, self.short, layer, layer.strip("[]"))


def _value(name: str, value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if name.endswith("chksum") and isinstance(value, int):
        return f"0x{value:04x}"
    return str(value)


def _layer_fields(layer: Packet, tag: str, out: dict[str, str]) -> None:
    for fdesc in layer.fields_desc:
        name = fdesc.name
        if isinstance(layer, IP) and name == "options":
            _ip_options(layer, out)
            continue
        with contextlib.suppress(Exception):  # a field scapy cannot render: left out
            out[f"[{tag}].{name}"] = _value(name, layer.getfieldval(name))


def _ip_options(layer: IP, out: dict[str, str]) -> None:
    raw = bytes(layer.original or b"")
    hlen = (raw[0] & 0x0F) * 4 if raw else 20
    opts = raw[20:hlen]
    found = dsropt.find_in_ip_header(raw[:hlen])
    if found is not None:
        ip, port = dsropt.decode(found, "host")
        out["[DSR].service"] = f"{ip}:{port}"
        opts = opts[dsropt.OPT_LEN:]
    out["[IP].options"] = opts.hex()


def frame_fields(frame: bytes) -> dict[str, str]:
    """Every named field of ``frame`` as scapy decodes it (see the module doc)."""
    out: dict[str, str] = {"[frame].length": str(len(frame))}
    try:
        pkt: Packet = Ether(frame)
    except Exception:  # scapy gave up on the frame: its bytes stand for it
        out["[frame].bytes"] = frame.hex()
        return out
    seen: dict[str, int] = {}
    layer: Packet = pkt
    while not isinstance(layer, NoPayload):
        name = type(layer).__name__
        seen[name] = seen.get(name, 0) + 1
        tag = name if seen[name] == 1 else f"{name}#{seen[name]}"
        _layer_fields(layer, tag, out)
        layer = layer.payload
    return out


def _checksum_errors(frame: bytes) -> dict[str, int]:
    """How far each checksum of ``frame``'s (first) IPv4 header and TCP/UDP segment is
    from right (one's complement sum of the covered bytes: 0xffff or 0 when right; a
    UDP zero checksum counts as right)."""
    errors: dict[str, int] = {}
    try:
        pkt = Ether(frame)
    except Exception:
        return errors
    ip = pkt.getlayer(IP)
    if ip is None or not ip.original:
        return errors
    raw = bytes(ip.original)
    hlen = (raw[0] & 0x0F) * 4
    if hlen >= 20 and len(raw) >= hlen:
        errors["[IP].chksum"] = ones_sum(raw[:hlen]) % 0xFFFF
    tot = min(int(ip.len or 0), len(raw))
    for proto, name, layer in ((6, "[TCP].chksum", TCP), (17, "[UDP].chksum", UDP)):
        if ip.proto == proto and pkt.haslayer(layer) and hlen <= tot:
            seg = raw[hlen:tot]
            if proto == 17 and seg[6:8] == b"\0\0":
                errors[name] = 0
            else:
                errors[name] = ones_sum(pseudo_header(raw[12:16], raw[16:20], proto,
                                                      len(seg)) + seg) % 0xFFFF
    return errors


def field_diffs(a: bytes, b: bytes) -> list[FieldDiff]:
    """The fields of frames ``a`` and ``b`` whose values differ (see the module doc)."""
    if a == b:
        return []
    fa, fb = frame_fields(a), frame_fields(b)
    names = list(fa) + [n for n in fb if n not in fa]
    diffs = [FieldDiff(n, fa.get(n), fb.get(n)) for n in names if fa.get(n) != fb.get(n)]
    if not diffs:
        at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                  min(len(a), len(b)))
        return [FieldDiff("[bytes]", f"offset {at}: {a[at:at + 16].hex()}",
                          f"offset {at}: {b[at:at + 16].hex()}")]
    others = [d for d in diffs if d.field not in CHECKSUMS]
    if others:
        ea, eb = _checksum_errors(a), _checksum_errors(b)
        same = {n for n in ea if n in eb and ea[n] == eb[n]}
        diffs = [FieldDiff(d.field, d.a, d.b, True) if d.field in same and d.field in CHECKSUMS
                 else d for d in diffs]
    return diffs


def diff_text(d: FieldDiff, a_name: str, b_name: str) -> str:
    """``[IP].ttl lab 63 cilium 64`` (``-`` for a field a frame does not have)."""
    tail = " (follows)" if d.follows else ""
    return f"{d.field} {a_name} {d.a if d.a is not None else '-'} " \
           f"{b_name} {d.b if d.b is not None else '-'}{tail}"
