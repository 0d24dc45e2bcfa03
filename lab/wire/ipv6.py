"""One line for people about an Ethernet/IPv6 frame, from its bytes alone (no scapy).

``dsrlab datapath run`` prints it for IPv6 frames, as :func:`lab.wire.ipv4.frame_summary`
for IPv4: ``tcp [fd00:c::1]:40000 > [fd00:b::5]:8080 [S] plen=44 hlim=63
ext=dsr([fd00:5::10]:80)``. The DSR Destination Options header (option 0x1B:
service address and port) is named; other extension headers are listed by
name and not followed.
"""

from __future__ import annotations

import ipaddress

from lab.wire import dsropt

ETH_HLEN = 14
IPV6_HLEN = 40
TCP, UDP, ICMPV6 = 6, 17, 58
EXT_NAMES = {0: "hop", 43: "routing", 44: "fragment", 50: "esp", 51: "auth", 60: "destopt"}
_TCP_FLAGS = "FSRPAUEC"


def _flags(bits: int) -> str:
    names = [ch for i, ch in enumerate(_TCP_FLAGS) if bits & (1 << i)]
    return "".join(sorted(names, key="SFRPAUEC".index))


def dsr_ext(ext: bytes) -> str | None:
    """``[addr]:port`` when ``ext`` (24 bytes or more) is the DSR Destination Options
    header, else None."""
    if len(ext) < dsropt.EXT6_LEN or ext[1] != 2:
        return None
    try:
        return dsropt.decode6(ext).service  # the one codec: lab.wire.dsropt
    except dsropt.DsrOptionError:
        return None


def frame_summary6(frame: bytes) -> str:
    """The line for an Ethernet/IPv6 frame (the caller checked the ethertype)."""
    ip = frame[ETH_HLEN:]
    if len(ip) < IPV6_HLEN:
        return f"IPv6, not parsed: {len(ip)} bytes, shorter than its header"
    if ip[0] >> 4 != 6:
        return f"IPv6, not parsed: version {ip[0] >> 4}"
    plen, nh, hlim = int.from_bytes(ip[4:6], "big"), ip[6], ip[7]
    src, dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
    tail = f" plen={plen} hlim={hlim}"
    if IPV6_HLEN + plen > len(ip):
        return f"IPv6 {src} > {dst}{tail}, not parsed: payload beyond the frame"
    off, ext = IPV6_HLEN, ""
    if nh == 60 and (target := dsr_ext(ip[off:off + 24])) is not None:
        ext, nh, off = f" ext=dsr({target})", ip[off], off + 24
    elif nh in EXT_NAMES:
        return f"IPv6 {src} > {dst}{tail} ext={EXT_NAMES[nh]}"
    l4 = ip[off:IPV6_HLEN + plen]
    if nh in (TCP, UDP) and len(l4) >= (20 if nh == TCP else 8):
        sport, dport = int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big")
        line = f"{'tcp' if nh == TCP else 'udp'} [{src}]:{sport} > [{dst}]:{dport}"
        if nh == TCP:
            line += f" [{_flags(l4[13])}]"
    elif nh == ICMPV6 and len(l4) >= 2:
        line = f"icmp6 {src} > {dst} type={l4[0]}/{l4[1]}"
    else:
        line = f"next header {nh} {src} > {dst}"
    return line + tail + ext
