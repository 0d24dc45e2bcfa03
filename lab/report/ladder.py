"""From captures alone to ladders: flows, each packet's trail across hops, and its hops.

How a ladder is derived:

1. A *flow* is one client connection: the client's address and ephemeral
   port, found as the SYNs (any datagram for UDP) from the client to the
   service. Its packets at every hop are those from or to that client
   address and port (DSR keeps the client address end to end), plus any
   packet that shares an identity with one of them (a translated copy).
2. A packet's *identity* across hops is ``(proto, ip_id, seq, flags)``: the
   IP id and TCP sequence number survive DNAT, forwarding and the DSR reply
   rewrite, which change only addresses, ports, TTL and options.
3. The sightings of one identity, in time order, are its *trail*; a second
   sighting at the same point with the same addresses and direction starts
   a new trail (a retransmission). Consecutive sightings on one host form a
   *visit* (the LB node sees the SYN twice: in, then out DNATed).
4. Between consecutive visits there is a *hop*: an arrow from one host to
   the next. Its label is the packet as captured where it arrived (or, when
   that side was not captured, where it left), and its change is what
   differs from the previous hop's label: the DNAT at the LB node, the
   option it added, the reply's source rewritten on the backend node.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

from lab.capture.layout import Role
from lab.capture.manifest import ManifestBackend
from lab.report.capset import ROLE_LABEL, ROLE_RANK, CaptureView, Sighting
from lab.wire.dsropt import hostport
from lab.wire.packets import Pkt

DatagramKey = tuple[str, int, int | None, str]
Key = tuple[str, int, int | None, str, int]
FLAG_NAMES = {"S": "SYN", "SA": "SYN+ACK", "A": "ACK", "PA": "PSH+ACK", "FA": "FIN+ACK",
              "F": "FIN", "R": "RST", "RA": "RST+ACK", "FPA": "FIN+PSH+ACK"}


def datagram_key(p: Pkt) -> DatagramKey:
    """What a packet keeps through every translation: all of a datagram's fragments
    share it (the flow a later fragment belongs to is its first fragment's)."""
    return (p.proto, p.ip_id, p.seq, p.flags)


def packet_key(p: Pkt) -> Key:
    """One packet's identity across hops: its datagram's, and which piece it is."""
    return (*datagram_key(p), p.frag_offset)


def flag_name(p: Pkt) -> str:
    if (p.icmp_type, p.icmp_code) == (3, 4):
        return f"ICMP frag-needed mtu {p.icmp_mtu}"
    if p.is_fragment:  # a datagram's piece: where it starts, "+" when more follow
        return f"{p.proto.upper()} frag {p.frag_offset}{'+' if p.more_fragments else ''}"
    if p.proto != "tcp":
        return p.proto.upper()
    return FLAG_NAMES.get(p.flags, p.flags or "-")


@dataclass
class Visit:
    """Consecutive sightings of one packet on one host."""

    host: str
    role: Role
    sightings: list[Sighting]

    def arrival(self) -> Sighting | None:
        """Where the packet came in (None when only its way out was captured)."""
        for want in ("in", "?"):
            hit = next((s for s in self.sightings if s.direction == want), None)
            if hit is not None:
                return hit
        return None

    def departure(self) -> Sighting | None:
        """Where the packet left (None when only its way in was captured)."""
        for want in ("out", "?"):
            hit = next((s for s in reversed(self.sightings) if s.direction == want), None)
            if hit is not None:
                return hit
        return None


@dataclass
class Hop:
    """One arrow: the packet moving from one host to the next."""

    src: str
    dst: str
    departure: Sighting | None
    arrival: Sighting | None
    view: Sighting  # what the label shows
    before: Sighting  # the previous hop's view (or where the trail began)

    @property
    def sightings(self) -> list[Sighting]:
        return [s for s in (self.departure, self.arrival) if s is not None]

    def changes(self) -> list[str]:
        """What differs from the previous hop: addresses, ports, the DSR option."""
        a, b = self.before, self.view
        out = []
        if a.dst != b.dst:
            out.append(f"dst was {a.dst}")
        if a.src != b.src:
            out.append(f"src was {a.src}")
        if b.pkt.outer is not None and a.pkt.outer is None:
            out.append(f"encapsulated ({b.pkt.outer.proto} to {b.pkt.outer.dst})")
        elif a.pkt.outer is not None and b.pkt.outer is None:
            out.append(f"decapsulated ({a.pkt.outer.proto})")
        if b.pkt.has_dsr and not a.pkt.has_dsr:
            out.append("+ DSR option")
        elif a.pkt.has_dsr and not b.pkt.has_dsr:
            out.append("DSR option removed")
        elif a.pkt.options != b.pkt.options:
            out.append("IP options changed")
        return out


@dataclass
class Trail:
    """One packet followed across every hop that captured it."""

    key: Key
    sightings: list[Sighting]
    reply: bool
    visits: list[Visit] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)

    @property
    def first(self) -> Sighting:
        return self.sightings[0]

    @property
    def time(self) -> float:
        return self.first.pkt.time

    @property
    def name(self) -> str:
        return flag_name(self.first.pkt)

    @property
    def payload_len(self) -> int:
        return max(s.pkt.payload_len for s in self.sightings)

    @property
    def hosts(self) -> list[str]:
        return [v.host for v in self.visits]


@dataclass(frozen=True)
class Column:
    """One host of a ladder: a lifeline with its name, role and address."""

    host: str
    role: Role
    points: tuple[str, ...]  # capture point names on this host
    files: tuple[str, ...]
    address: str

    @property
    def role_label(self) -> str:
        return ROLE_LABEL[self.role]


@dataclass
class Flow:
    id: str  # "<client ip>:<port>" ("[<client ip>]:<port>" for IPv6)
    client_ip: str
    port: int
    trails: list[Trail]
    columns: list[Column]
    backend: ManifestBackend | None

    @property
    def start(self) -> float:
        return self.trails[0].time if self.trails else 0.0

    @property
    def packets(self) -> int:
        return sum(len(t.sightings) for t in self.trails)

    @property
    def hops(self) -> list[Hop]:
        return [h for t in self.trails for h in t.hops]


def _visits(sightings: list[Sighting]) -> list[Visit]:
    visits: list[Visit] = []
    for s in sightings:
        if visits and visits[-1].host == s.host:
            visits[-1].sightings.append(s)
        else:
            visits.append(Visit(s.host, s.point.role, [s]))
    return visits


def _hops(visits: list[Visit]) -> list[Hop]:
    hops: list[Hop] = []
    before = visits[0].sightings[0]
    for a, b in pairwise(visits):
        dep, arr = a.departure(), b.arrival()
        view = arr or dep or b.sightings[0]
        hops.append(Hop(a.host, b.host, dep, arr, view, before))
        before = view
    return hops


def _split_retransmissions(sightings: list[Sighting]) -> list[list[Sighting]]:
    trails: list[list[Sighting]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for s in sightings:
        sig = (s.point.name, s.src, s.dst, s.direction)
        if not trails or sig in seen:
            trails.append([])
            seen = set()
        trails[-1].append(s)
        seen.add(sig)
    return trails


def build_trails(sightings: list[Sighting], client_ip: str) -> list[Trail]:
    """Group a flow's sightings by packet identity into trails, in time order."""
    by_key: dict[Key, list[Sighting]] = defaultdict(list)
    for s in sightings:
        by_key[packet_key(s.pkt)].append(s)
    trails = []
    for key, group in by_key.items():
        # captures have microsecond timestamps: on a tie, requests go client -> pod
        # (the manifest's order of points) and replies the other way
        reply = any(s.pkt.dst == client_ip for s in group)
        group.sort(key=lambda s: (s.pkt.time, -s.rank if reply else s.rank, s.pkt.frame))
        for part in _split_retransmissions(group):
            t = Trail(key, part, reply=reply)
            t.visits = _visits(part)
            t.hops = _hops(t.visits)
            trails.append(t)
    trails.sort(key=lambda t: (t.time, t.first.rank))
    return trails


def _column(view: CaptureView, host: str) -> Column:
    points = [p for p in view.capdir.points if p.host == host]
    role = min((p.role for p in points), key=lambda r: ROLE_RANK[r])
    if role == "client":
        address = view.client_ip
    elif role == "lb-node":
        address = f"{view.service.ip} · NodePort {view.service.port}"
    elif role == "pod":
        b = next((b for b in view.backends if b.name == host), None)
        address = hostport(b.ip, b.port) if b else ""
    else:
        pods = [b.name for b in view.backends if b.node == host]
        address = "runs " + ", ".join(pods) if pods else ""
    return Column(host, role, tuple(p.name for p in points), tuple(p.file.name for p in points),
                  address)


def columns_for(view: CaptureView, hosts: set[str]) -> list[Column]:
    """The flow's hosts, plus always the client and the LB node, in role order."""
    order: dict[str, int] = {}
    for i, p in enumerate(view.capdir.points):
        order.setdefault(p.host, i)
        if p.role in ("client", "lb-node"):
            hosts = hosts | {p.host}
    cols = [_column(view, h) for h in hosts if h in order]
    cols.sort(key=lambda c: (ROLE_RANK[c.role], order[c.host]))
    return cols


def _starts(view: CaptureView, sightings: list[Sighting]) -> list[int]:
    svc = view.service
    firsts: dict[int, float] = {}
    for s in sightings:
        p = s.pkt
        if (p.proto == svc.proto and p.src == view.client_ip and p.dst == svc.ip
                and p.dport == svc.port and p.sport is not None
                and (p.proto != "tcp" or p.syn)):
            firsts[p.sport] = min(firsts.get(p.sport, p.time), p.time)
    return sorted(firsts, key=lambda port: (firsts[port], port))


def find_flows(view: CaptureView) -> tuple[list[Flow], list[Sighting]]:
    """Every flow of the capture set with its trails, and the IPv4 packets (sightings)
    that belong to no flow."""
    sightings = view.all_sightings()
    ports = _starts(view, sightings)
    owner: dict[int, int] = {}  # id(sighting) -> port
    members: dict[int, list[Sighting]] = {port: [] for port in ports}
    keys: dict[DatagramKey, int] = {}
    for s in sightings:
        p = s.pkt
        port = (p.sport if p.src == view.client_ip else
                p.dport if p.dst == view.client_ip else None)
        about = False
        if p.quoted is not None and p.quoted[0] == view.client_ip:
            port, about = p.quoted[3], True  # an ICMP error about a packet of the flow
        if port in members and (p.proto == view.service.proto or about):
            members[port].append(s)
            owner[id(s)] = port
            keys.setdefault(datagram_key(p), port)
    # translated copies that no longer carry the client's address, and later fragments
    for s in sightings:
        port_of = keys.get(datagram_key(s.pkt))
        if id(s) not in owner and port_of is not None:
            members[port_of].append(s)
            owner[id(s)] = port_of
    flows = []
    for port in ports:
        trails = build_trails(members[port], view.client_ip)
        hosts = {s.host for s in members[port]}
        backend = next((b for s in members[port] for b in view.backends
                        if s.pkt.dst == b.ip and s.pkt.src == view.client_ip), None)
        flows.append(Flow(hostport(view.client_ip, port), view.client_ip, port, trails,
                          columns_for(view, hosts), backend))
    return flows, [s for s in sightings if id(s) not in owner]
