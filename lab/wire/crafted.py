"""Packets the crafted-traffic steps send, built with scapy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from scapy.layers.inet import IP, TCP, IPOption_NOP, IPOption_RR, IPOption_Timestamp


def crafted_ipv4(*, src: str, dst: str, dport: int, sport: int, flags: str = "S",
                 seq: int = 1000, ack: int = 0, ip_options: Sequence[str] = (),
                 payload: bytes = b"") -> bytes:
    """An IPv4/TCP packet (no Ethernet) built with scapy, checksums filled in.

    ``ip_options`` by name: ``timestamp`` (an 8-byte timestamp option, room for one
    stamp), ``record_route`` (3 slots, 15 bytes padded to 16), ``record_route_full``
    (9 slots, 39 bytes, padded to 40: with the DSR option the header would pass 60),
    ``nop``.
    """
    made: dict[str, Callable[[], Any]] = {
        "timestamp": lambda: IPOption_Timestamp(flg=0, timestamp=[0, 0]),
        "record_route": lambda: IPOption_RR(routers=["0.0.0.0"] * 3),
        "record_route_full": lambda: IPOption_RR(routers=["0.0.0.0"] * 9),
        "nop": IPOption_NOP,
    }
    try:
        options = [made[name]() for name in ip_options]
    except KeyError as exc:
        raise ValueError(f"unknown IP option {exc.args[0]!r} (known: {', '.join(made)})") \
            from None
    pkt = IP(src=src, dst=dst, ttl=64, options=options) / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    if payload:
        pkt = pkt / payload
    return bytes(pkt)
