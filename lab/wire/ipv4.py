"""Ethernet/IPv4 frames as bytes: the fields a checker looks at, and whether they parse."""

from __future__ import annotations

from dataclasses import dataclass

ETH_HLEN = 14
IP_MF = 0x2000
IP_OFFSET = 0x1FFF
TCP, UDP = 6, 17


@dataclass(frozen=True)
class Ipv4View:
    """The fields of an Ethernet/IPv4 frame the invariant looks at."""

    hlen: int
    tot: int
    proto: int
    frag: int
    ttl: int

    @property
    def is_fragment(self) -> bool:
        return bool(self.frag & (IP_MF | IP_OFFSET))


def parse_ipv4(frame: bytes) -> tuple[Ipv4View | None, str | None]:
    """(view, None) for a structurally sound Ethernet/IPv4 frame, else (None, why)."""
    if len(frame) < ETH_HLEN + 20:
        return None, f"{len(frame)} bytes: no room for an IPv4 header"
    if frame[12:14] != b"\x08\x00":
        return None, f"ethertype {frame[12:14].hex()} is not IPv4"
    b0 = frame[ETH_HLEN]
    if b0 >> 4 != 4:
        return None, f"IP version {b0 >> 4}"
    hlen = (b0 & 0x0F) * 4
    if hlen < 20:
        return None, f"IHL {hlen // 4} < 5"
    tot = int.from_bytes(frame[16:18], "big")
    if hlen > tot:
        return None, f"IHL {hlen // 4} ({hlen} bytes) beyond tot_len {tot}"
    if ETH_HLEN + tot > len(frame):
        return None, f"tot_len {tot} beyond the {len(frame) - ETH_HLEN} bytes after Ethernet"
    frag = int.from_bytes(frame[20:22], "big")
    proto = frame[23]
    view = Ipv4View(hlen, tot, proto, frag, frame[22])
    if not view.is_fragment and proto in (TCP, UDP):
        need = 20 if proto == TCP else 8
        if tot < hlen + need:
            return None, f"tot_len {tot} leaves no room for the {need}-byte L4 header"
    return view, None
