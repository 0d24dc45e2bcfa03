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


_ETHERTYPES = {0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "VLAN", 0x88A8: "QinQ"}
_TCP_FLAGS = "FSRPAUEC"  # bit 0 .. bit 7


def _tcp_flags(bits: int) -> str:
    names = [ch for i, ch in enumerate(_TCP_FLAGS) if bits & (1 << i)]
    return "".join(sorted(names, key="SFRPAUEC".index))  # SYN first: "SA" for SYN+ACK


def frame_summary(frame: bytes) -> str:
    """One line for people about an Ethernet frame, from its bytes alone (no scapy):
    ``tcp 172.18.0.1:40000 > 172.18.0.2:32000 [S] ihl=5 len=40 ttl=64``, with
    ``opt=dsr,timestamp`` and ``frag=1480+MF`` when present; a frame that is not
    IPv4, or whose headers do not parse, says what it is."""
    if len(frame) < ETH_HLEN:
        return f"{len(frame)} bytes, shorter than an Ethernet header"
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype != 0x0800:
        name = _ETHERTYPES.get(ethertype, "not IPv4")
        return f"ethertype 0x{ethertype:04x} ({name}), {len(frame)} bytes"
    view, why = parse_ipv4(frame)
    if view is None:
        return f"IPv4, not parsed: {why}"
    ip = frame[ETH_HLEN:ETH_HLEN + view.tot]
    src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    l4 = ip[view.hlen:]
    name = {1: "icmp", TCP: "tcp", UDP: "udp"}.get(view.proto, f"proto {view.proto}")
    offset, more = (view.frag & IP_OFFSET) * 8, bool(view.frag & IP_MF)
    if view.proto in (TCP, UDP) and not offset:
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        line = f"{name} {src}:{sport} > {dst}:{dport}"
        if view.proto == TCP:
            line += f" [{_tcp_flags(l4[13])}]"
    elif view.proto == 1 and not offset and len(l4) >= 2:
        line = f"icmp {src} > {dst} type={l4[0]}/{l4[1]}"
    else:
        line = f"{name} {src} > {dst}"
    line += f" ihl={view.hlen // 4} len={view.tot} ttl={view.ttl}"
    if view.hlen > 20:
        line += f" opt={option_names(ip[20:view.hlen]) or 'nop'}"
    if offset or more:
        line += f" frag={offset}{'+MF' if more else ''}"
    return line
