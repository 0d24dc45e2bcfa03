"""Signs, while a request runs, that it cannot succeed.

A request in a failure scenario used to run into its client's time limit
(curl's ``--max-time``, a datagram's timeout): 1 or 2 s of nothing each. The
outcome is known earlier, from what the run already records: the client's
capture (a SYN+ACK or a datagram to the client from an address it never
called, a reset from the service, an ICMP error other than "fragmentation
needed") and the counters of the lab's own datapath and fabric (a drop the
same packet meets again when it is sent again: no backend, no local backend,
an IPv6 extension header, the fabric's source/destination check; for TCP, once
the retransmission met it too). :class:`Doom`
reads them between polls; the request is then stopped and recorded as failed,
with the sign as its error. The time limits stay as the backstop, and the
trace and diagnoses read the same captures as before.

Random loss and "fragmentation needed" are not signs: TCP and path-MTU
discovery get past them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lab.datapath.maps import EVENT_NAMES
from lab.errors import LabError
from lab.wire.dsropt import hostport
from lab.wire.packets import from_frame
from lab.wire.pcaptail import PcapTail

# the datapath's drops that a packet sent again meets again (lab/datapath/maps.py)
FINAL_DROPS = frozenset({
    "drop_no_backend", "drop_no_local_backend", "drop_opt_too_long", "drop_ipv6_exthdr",
    "drop_frag_nosupport", "drop_no_node_addr", "drop_no_nat_port",
    "drop_no_tunnel_endpoint", "drop_tunnel_fib",
})
# the fabric's (lab/datapath/fabric.py): every frame of the kind, every time
FINAL_FABRIC = frozenset({"src_dst_dropped", "ipv6_ext_dropped"})
# a datagram nobody sends again ends at any drop, random loss included
ANY_DROP = frozenset(n for n in EVENT_NAMES.values() if n.startswith("drop_"))
ANY_FABRIC_DROP = FINAL_FABRIC | {"lost"}
ICMP_FRAG_NEEDED = (3, 4)
ICMP6_PACKET_TOO_BIG = 2


class _Counts:
    """Counters read now and again; what went up since the first reading."""

    def __init__(self, name: str, read: Any, final: frozenset[str]) -> None:
        self.name = name
        self._read = read
        self._final = final
        self._base: Mapping[str, int] = self._now()

    def _now(self) -> Mapping[str, int]:
        try:
            counters: Mapping[str, int] = self._read()
        except (LabError, OSError):  # a closed object, a map gone: no sign from it
            return {}
        return {k: v for k, v in counters.items() if k in self._final}

    def went_up(self, by: int) -> str | None:
        """The first counter up by ``by`` or more since the first reading."""
        for k, v in self._now().items():
            if v - self._base.get(k, 0) >= by:
                return f"{self.name} counted {k.removeprefix('drop_')} ({v - self._base.get(k, 0)})"
        return None


class Doom:
    """Watches one run's client capture and counters for a request's fate.

    ``service``: (address, port) the client calls; ``client_ip`` its address.
    ``counters``: ``(name, read, final)``, ``read()`` giving a mapping of counter
    names to values (a node's datapath, the fabric), ``final`` the ones that are
    signs. ``drops``: how many drops make a sign: 2 for TCP (the packet, then the
    same packet sent again: a trace may well claim the retransmission), 1 for a
    datagram nobody sends again. :meth:`arm` before each request, :meth:`reason`
    while it runs.
    """

    def __init__(self, client_pcap: Path, client_ip: str, service: tuple[str, int],
                 counters: Iterable[tuple[str, Any, frozenset[str]]], *,
                 drops: int = 1) -> None:
        self._tail = PcapTail(client_pcap)
        self._client = client_ip
        self._service = service
        self._sources = list(counters)
        self._drops = drops
        self._counts: list[_Counts] = []
        self.local_port: int | None = None  # the client's port of the request armed for

    def arm(self) -> None:
        """From now: the capture from its end, the counters from their values."""
        self._tail.skip_to_end()
        self._counts = [_Counts(name, read, final) for name, read, final in self._sources]
        self.local_port = None

    def reason(self) -> str | None:
        """Why the request now running cannot succeed, or None (no sign yet)."""
        for lt, frame in self._tail.frames():
            sign = self._sign(lt, frame)
            if sign is not None:
                return sign
        for c in self._counts:
            sign = c.went_up(self._drops)
            if sign is not None:
                return sign
        return None

    def _sign(self, linktype: int, frame: bytes) -> str | None:
        p = from_frame(frame, 0, 0.0, linktype)
        if p is None or p.outer is not None:
            return None
        if (p.src, p.dst, p.dport) == (self._client, *self._service) and p.sport is not None:
            self.local_port = p.sport  # the request leaving
            return None
        if p.dst != self._client:
            return None
        from_service = (p.src, p.sport) == self._service
        if p.icmp_type is not None:
            too_big = (p.icmp_type, p.icmp_code) == ICMP_FRAG_NEEDED if p.family == 4 \
                else p.icmp_type == ICMP6_PACKET_TOO_BIG
            if p.quoted is not None and not too_big:
                return f"ICMP error {p.icmp_type}/{p.icmp_code} from {p.src}"
            return None
        if p.proto == "tcp" and "R" in p.flags and from_service:
            return f"reset by the service {hostport(*self._service)}"
        if p.proto == "tcp" and p.synack and not from_service:
            return (f"SYN+ACK from {hostport(p.src, p.sport)}, not from the service "
                    f"{hostport(*self._service)}")
        if p.proto == "udp" and not from_service and not p.is_fragment:
            return (f"answer from {hostport(p.src, p.sport)}, not from the service "
                    f"{hostport(*self._service)}")
        return None


def counter_sources(lab: Any, *, any_drop: bool = False
                    ) -> list[tuple[str, Any, frozenset[str]]]:
    """The counters a lab offers: each node's datapath of the lab's own (``dsr.c``) and
    its fabric, when it has them (a kind cluster, Cilium's datapath: none). Their
    signs: the final drops, or with ``any_drop`` every drop (one datagram's)."""
    drops, fabric_drops = (ANY_DROP, ANY_FABRIC_DROP) if any_drop else \
        (FINAL_DROPS, FINAL_FABRIC)
    sources: list[tuple[str, Any, frozenset[str]]] = [
        (f"{node}'s datapath", dp.counters, drops)
        for node, dp in sorted(getattr(lab, "datapath", {}).items())]
    fabric = getattr(lab, "fabric", None)
    if fabric is not None:
        sources.append(("the fabric", fabric.counters, fabric_drops))
    return sources
