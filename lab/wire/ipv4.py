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


# IPv4 option types by name (RFC 791, IANA), as traces and scenarios spell them
OPTION_NAMES: dict[int, str] = {0: "end", 1: "nop", 7: "record_route", 68: "timestamp",
                                130: "security", 131: "lsrr", 137: "ssrr",
                                148: "router_alert", 0x9A: "dsr"}


def option_types(options: bytes) -> list[int]:
    """The option types in an IPv4 header's options, in order (end and nop are one
    byte, the others type-length-value; a broken length ends the walk)."""
    out, i = [], 0
    while i < len(options):
        kind = options[i]
        out.append(kind)
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        i += options[i + 1]
    return out


def option_names(options: bytes) -> str:
    """``option_types`` as names, comma-separated, nop and end left out: ``dsr,timestamp``."""
    return ",".join(OPTION_NAMES.get(t, f"opt{t}") for t in option_types(options)
                    if t not in (0, 1))
