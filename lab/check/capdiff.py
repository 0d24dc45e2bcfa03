"""Two capture sets of one scenario compared hop by hop (``dsrlab diff A B``).

How the comparison goes:

1. *Flows* are the client's connections, in the order of their first SYN (any
   datagram for UDP) from the client to the service: the Nth flow of A is
   paired with the Nth of B. A flow's packets at a point are those from or to
   the client's address and port, those an ICMP error quotes, and any packet
   sharing a datagram's identity (protocol, IP id, TCP seq, flags) with one of
   them anywhere (a translated copy that no longer names the client).
2. Each flow is compared per *role*: the client's points, the LB node's, and
   the backend node's and pod's points of *that flow's* backend (chosen at
   random: "the flow's backend pod", never a fixed host). The flow's backend
   is the pod whose capture point saw the flow.
3. Each packet is *normalised* before the comparison: addresses and ports
   become symbols (``$client``, ``$service``, ``$backend``, ``$eph`` for the
   client's port...); what legitimately differs between runs is masked (the
   client's port, IP ids, the random ISN: seq and ack are compared relative to
   it; checksums are compared as valid or not; times and frame numbers). All
   else is kept: direction, protocol, flags, IHL, IP length, TTL, IP options
   with the DSR option decoded to the service it names (the IPv6 option and
   the Geneve option too), payload length, ICMP type, code, MTU and quoted
   packet, fragment fields; an encapsulated frame is its inner packet with its
   outer headers (``encap``: addresses as symbols, the outer UDP source port,
   a hash, masked). IPv6 has no IHL and no header checksum: both are left out.

The first differing packet per role is kept with its fields side by side
(A's as ``expected``, B's as ``got``), like a trace failure. Only capture
sets and their pcaps are read: no lab is needed.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.atomic import write_text
from lab.capture.capdir import CaptureDir, PointFile
from lab.capture.layout import COMPARED, MANIFEST, ROLES, STEPS, CaptureError, Role
from lab.check.trace.results import FieldDiff, field_table
from lab.errors import LabError
from lab.model.topology import load_topology
from lab.wire import dsropt
from lab.wire.packets import Pkt


class DiffError(LabError, ValueError):
    """Two folders that cannot be compared (one line, naming the folder)."""


# -- flows -----------------------------------------------------------------------------

DatagramKey = tuple[str, int, int | None, str]


def _datagram_key(p: Pkt) -> DatagramKey:
    return (p.proto, p.ip_id, p.seq, p.flags)


@dataclass
class Flow:
    """One client connection of a capture set: its packets at every point."""

    number: int  # 1-based, in the order of the client's first packets
    port: int  # the client's ephemeral port
    backend: str  # the pod's name ("" when no pod point saw it)
    backend_ip: str
    backend_node: str
    packets: dict[str, list[Pkt]] = field(default_factory=dict)  # point name -> packets
    # its symbols and ISNs, worked out on first use (lab.check.capdiff.normalise)
    context: tuple[_Symbols, _Isns] | None = field(default=None, repr=False)


def _is_start(cd: CaptureDir, p: Pkt) -> bool:
    svc = cd.service
    return (p.proto == svc.proto and p.src == cd.client_ip and p.dst == svc.ip
            and p.dport == svc.port and p.sport is not None and (p.proto != "tcp" or p.syn))


def _client_port(cd: CaptureDir, p: Pkt) -> int | None:
    if p.quoted is not None and p.quoted[0] == cd.client_ip:
        return p.quoted[3]  # an ICMP error about a packet of the flow
    if p.proto != cd.service.proto:
        return None
    if p.src == cd.client_ip:
        return p.sport
    if p.dst == cd.client_ip:
        return p.dport
    return None


def find_flows(cd: CaptureDir) -> list[Flow]:
    """The capture set's flows in the order of the client's first packets (the client's
    points first: that is where the order is made)."""
    every = {pt.name: cd.packets(pt) for pt in cd.points}
    ordered = sorted(cd.points, key=lambda pt: pt.role != "client")
    firsts: dict[int, float] = {}
    for pt in ordered:
        for p in every[pt.name]:
            if _is_start(cd, p) and p.sport is not None and p.sport not in firsts:
                firsts[p.sport] = p.time
        if firsts and pt.role == "client":
            break  # the client saw them: its order is the one
    ports = sorted(firsts, key=lambda port: (firsts[port], port))
    members: dict[int, dict[str, list[Pkt]]] = {port: {} for port in ports}
    keys: dict[DatagramKey, int] = {}
    claimed: set[tuple[str, int]] = set()
    for pt in cd.points:
        for p in every[pt.name]:
            port = _client_port(cd, p)
            if port in members:
                members[port].setdefault(pt.name, []).append(p)
                claimed.add((pt.name, p.frame))
                keys.setdefault(_datagram_key(p), port)
    for pt in cd.points:  # translated copies, later fragments
        for p in every[pt.name]:
            port_of = keys.get(_datagram_key(p))
            if port_of is not None and (pt.name, p.frame) not in claimed:
                members[port_of].setdefault(pt.name, []).append(p)
    flows = []
    for n, port in enumerate(ports, start=1):
        pkts = {name: sorted(ps, key=lambda p: p.frame) for name, ps in members[port].items()}
        backend = next((b for b in cd.backends for pt in cd.by_role("pod")
                        if pt.host == b.name and pkts.get(pt.name)), None)
        if backend is None:  # no pod point saw it: the address the client's packet went to
            backend = next((b for ps in pkts.values() for p in ps for b in cd.backends
                            if p.dst == b.ip and p.src == cd.client_ip), None)
        flows.append(Flow(n, port, backend.name if backend else "",
                          backend.ip if backend else "", backend.node if backend else "",
                          pkts))
    return flows


def flow_points(cd: CaptureDir, flow: Flow, role: Role) -> list[PointFile]:
    """The points of ``role`` that belong to the flow: every client and LB-node point;
    the backend-node and pod points of the flow's own backend."""
    points = list(cd.by_role(role))
    if role == "backend-node":
        return [pt for pt in points if pt.host == flow.backend_node]
    if role == "pod":
        return [pt for pt in points if pt.host == flow.backend]
    return points


# -- normalising -----------------------------------------------------------------------

# the fields compared, in the order a table shows them
FIELDS = ("encap", "direction", "proto", "flags", "seq", "ack", "ihl", "ip_len", "ttl",
          "options", "dsr_option", "payload_len", "icmp", "quoted", "fragment", "ip_checksum",
          "l4_checksum")


@dataclass(frozen=True)
class _Symbols:
    """How one flow's addresses and ports are named in its normalised packets."""

    names: dict[str, str]
    ports: dict[int, str]

    def addr(self, ip: str) -> str:
        return self.names.get(ip, ip)

    def endpoint(self, ip: str, port: int | None) -> str:
        where = self.addr(ip)
        if port is None:
            return where
        if ":" in where:  # an IPv6 address no symbol names: [addr]:port
            where = f"[{where}]"
        return f"{where}:{self.ports.get(port, str(port))}"


@functools.lru_cache(maxsize=16)
def _node_addresses(topology: str) -> dict[str, tuple[str, str]]:
    """Each node's address and router address (its pod CIDR's first), from the
    topology file the manifest names; none when it cannot be read (a capture set
    brought from elsewhere): then they are compared as they are."""
    if not topology:
        return {}
    try:
        topo = load_topology(topology)
    except (LabError, OSError, ValueError):
        return {}
    return {n.name: (str(n.ip), str(n.router_ip)) for n in topo.nodes}


EPHEMERAL_FROM = 1024  # ports from here on, when nothing else names them, are a run's own


def _symbols(cd: CaptureDir, flow: Flow) -> _Symbols:
    names = {b.ip: "$other-backend" for b in cd.backends if b.ip}
    if flow.backend_ip:
        names[flow.backend_ip] = "$backend"
    names[cd.service.ip] = "$service"
    names[cd.client_ip] = "$client"
    ports: dict[int, str] = {}
    backend_port = next((b.port for b in cd.backends if b.name == flow.backend), 0)
    if backend_port:
        ports[backend_port] = "$backend-port"
    if cd.service.port:
        ports[cd.service.port] = "$service-port"
    nodes = _node_addresses(cd.manifest.topology)
    node = nodes.get(flow.backend_node)
    if node is not None:
        names.setdefault(node[0], "$backend-node")
        names.setdefault(node[1], "$backend-node-router")
    ports[flow.port] = "$eph"
    # other ephemeral ports of the flow (the port an SNAT picked) in the order they
    # first appear, the points in the manifest's order: $eph2, $eph3...
    for pt in cd.points:
        for p in flow.packets.get(pt.name, []):
            for port in (p.sport, p.dport):
                if port is not None and port >= EPHEMERAL_FROM and port not in ports:
                    ports[port] = f"$eph{sum(v.startswith('$eph') for v in ports.values()) + 1}"
    return _Symbols(names, ports)


@dataclass(frozen=True)
class _Isns:
    """A flow's initial sequence numbers: each sender's (by its symbolic endpoint: a
    pod's own SYN+ACK apart from the one the client gets, when they are not one), and
    the client's and the server's side's first, for an endpoint that sent no SYN."""

    by_endpoint: dict[str, int]
    client: int | None
    server: int | None

    def of(self, endpoint: str, client_side: bool) -> int | None:
        found = self.by_endpoint.get(endpoint)
        if found is not None:
            return found
        return self.client if client_side else self.server


def _isns(cd: CaptureDir, flow: Flow, sym: _Symbols) -> _Isns:
    by_endpoint: dict[str, int] = {}
    client = server = None
    for pt in cd.points:
        for p in flow.packets.get(pt.name, []):
            if p.proto != "tcp" or p.seq is None or "S" not in p.flags:
                continue
            by_endpoint.setdefault(sym.endpoint(p.src, p.sport), p.seq)
            if client is None and p.syn and p.src == cd.client_ip:
                client = p.seq
            if server is None and p.synack and p.dst == cd.client_ip:
                server = p.seq
    return _Isns(by_endpoint, client, server)


def _rel(value: int | None, base: int | None) -> str:
    if value is None:
        return ""
    if base is None:
        return "?"  # no SYN seen to count from: masked
    return str((value - base) % (1 << 32))


_ROUTE_OPTIONS = {7: "rr", 0x83: "lsrr", 0x89: "ssrr"}


def _options(raw: bytes, sym: _Symbols) -> str:
    """IP options (the DSR option aside) as text: the route options' addresses as
    symbols, the timestamp option's times masked (its pointer and flags kept)."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:  # end of options: the rest is padding
            out.append(f"eol+{len(raw) - i - 1}")
            break
        if kind == 1:
            out.append("nop")
            i += 1
            continue
        size = raw[i + 1] if i + 1 < len(raw) else 0
        if size < 2 or i + size > len(raw):
            out.append("bad:" + raw[i:].hex())
            break
        body = raw[i + 2:i + size]
        if kind in _ROUTE_OPTIONS and body:
            addrs = [sym.addr(str(ipaddress.IPv4Address(body[j:j + 4])))
                     for j in range(1, len(body) - 3, 4)]
            out.append(f"{_ROUTE_OPTIONS[kind]} ptr={body[0]} [{' '.join(addrs)}]")
        elif kind == 0x44 and len(body) >= 2:
            out.append(f"ts ptr={body[0]} oflw={body[1] >> 4} flg={body[1] & 15} "
                       f"len={size}")
        else:
            out.append(raw[i:i + size].hex())
        i += size
    return " ".join(out)


def _from_client(cd: CaptureDir, p: Pkt) -> bool:
    """Whether a packet goes the client's way (to the service or a backend, however
    translated), not the server's (to the client, or to an SNAT's port)."""
    return p.src == cd.client_ip or (p.dst != cd.client_ip and p.dport in (
        cd.service.port, *(b.port for b in cd.backends)))


def normalise(cd: CaptureDir, flow: Flow, p: Pkt) -> dict[str, str]:
    """A packet as the fields compared, every value as text."""
    if flow.context is None:
        symbols = _symbols(cd, flow)
        flow.context = (symbols, _isns(cd, flow, symbols))
    sym, isns = flow.context
    from_client = _from_client(cd, p)
    seq_base = isns.of(sym.endpoint(p.src, p.sport), from_client)
    ack_base = isns.of(sym.endpoint(p.dst, p.dport), not from_client)
    options = p.options
    dsr = ""
    if p.has_dsr:
        try:
            value = p.dsr(cd.option_order)
            dsr = "" if value is None else sym.endpoint(value.ip, value.port) + {
                ("opt", 4): "", ("opt", 6): " (IPv6 option)",
                ("geneve", 4): " (Geneve)", ("geneve", 6): " (Geneve)"}[
                    (value.dispatch, value.family)]
        except dsropt.DsrOptionError as exc:
            dsr = f"undecodable ({exc})"
        if p.has_dsr_option:
            options = options[dsropt.OPT_LEN:]
    options_text = _options(options, sym)
    icmp = "" if p.icmp_type is None else (
        f"{p.icmp_type}/{p.icmp_code}" + (f" mtu {p.icmp_mtu}" if p.icmp_mtu is not None
                                          else ""))
    quoted = ""
    if p.quoted is not None:
        qs, qd, qp, qsp, qdp = p.quoted
        quoted = f"{qp} {sym.endpoint(qs, qsp)} > {sym.endpoint(qd, qdp)}"
    tcp = p.proto == "tcp" and not p.is_fragment
    six = p.family == 6
    # an encapsulated frame: its outer headers, the outer UDP source port masked (a
    # hash of the inner flow, each run its own)
    encap = "" if p.outer is None else (
        f"{p.outer.proto} {sym.addr(p.outer.src)} > {sym.addr(p.outer.dst)}:{p.outer.dport} "
        f"vni={p.outer.vni} ttl={p.outer.ttl}")
    return {
        "encap": encap,
        "direction": f"{sym.endpoint(p.src, p.sport)} > {sym.endpoint(p.dst, p.dport)}",
        "proto": p.proto,
        "flags": p.flags if tcp else "",
        # a SYN's seq is its sender's ISN (a SYN sent again after a reset picks anew)
        "seq": ("isn" if "S" in p.flags else _rel(p.seq, seq_base)) if tcp else "",
        "ack": (_rel(p.ack, ack_base) if "A" in p.flags else "") if tcp else "",
        "ihl": "" if six else str(p.ihl),
        "ip_len": str(p.ip_len),
        "ttl": str(p.ttl),
        "options": options_text,
        "dsr_option": dsr,
        "payload_len": str(p.payload_len),
        "icmp": icmp,
        "quoted": quoted,
        "fragment": (f"offset {p.frag_offset}{' +MF' if p.more_fragments else ''}"
                     if p.is_fragment else ""),
        "ip_checksum": "" if six else "valid" if p.ip_csum_ok else "invalid",
        "l4_checksum": {True: "valid", False: "invalid", None: ""}[p.l4_csum_ok],
    }


def describe(values: dict[str, str]) -> str:
    """A normalised packet in one line: ``tcp $client:$eph > $service:$service-port [S]
    ttl=64 len=60``."""
    flags = f" [{values['flags']}]" if values["flags"] else ""
    extra = "".join(f" {k}={values[k]}" for k in ("dsr_option", "options", "icmp", "quoted",
                                                  "fragment") if values[k])
    outer = f"{values['encap']} | " if values.get("encap") else ""
    return (f"{outer}{values['proto']} {values['direction']}{flags} ttl={values['ttl']} "
            f"len={values['ip_len']} payload={values['payload_len']}{extra}")


# -- the comparison --------------------------------------------------------------------

@dataclass
class Difference:
    """The first place one role differs: which flow, which packet of it there, why."""

    flow: int
    packet: int  # 1-based, among the flow's packets at the role's points
    message: str
    point_a: str = ""
    point_b: str = ""
    frame_a: int | None = None  # Wireshark's frame numbers in each pcap
    frame_b: int | None = None
    summary_a: str = ""
    summary_b: str = ""
    fields: list[FieldDiff] = field(default_factory=list)


@dataclass
class RoleDiff:
    role: str
    packets_a: int = 0
    packets_b: int = 0
    difference: Difference | None = None
    differing_flows: int = 0

    @property
    def same(self) -> bool:
        return self.difference is None

    def summary(self) -> str:
        """``lb-node: 44 packets, same`` or where it first differs."""
        if self.difference is None:
            return f"{self.role}: {self.packets_a} packets, same"
        d = self.difference
        more = (f" (and {self.differing_flows - 1} more flow"
                f"{'s' * (self.differing_flows != 2)})" if self.differing_flows > 1 else "")
        return f"{self.role}: first difference at packet {d.packet} of flow {d.flow}: " \
               f"{d.message}{more}"


@dataclass
class CaptureDiff:
    """Two capture sets compared: one entry per role, and any flow-level difference."""

    a: str  # the folders
    b: str
    scenario: str
    datapath_a: str
    datapath_b: str
    flows_a: int
    flows_b: int
    roles: list[RoleDiff]
    run_a: str = ""
    run_b: str = ""
    # the clients' requests sent (steps.json), when both sets say: a scenario that sends
    # requests until every backend answered sends as many as chance needs
    sent_a: int | None = None
    sent_b: int | None = None

    @property
    def flows_explained(self) -> bool:
        """The flow counts differ exactly as the requests the clients chose to send."""
        return (self.sent_a is not None and self.sent_b is not None
                and self.flows_a - self.flows_b == self.sent_a - self.sent_b)

    @property
    def flows_same(self) -> bool:
        return self.flows_a == self.flows_b or self.flows_explained

    @property
    def same(self) -> bool:
        return self.flows_same and all(r.same for r in self.roles)

    def summary_lines(self) -> list[str]:
        lines = []
        first = min(self.flows_a, self.flows_b)
        if self.flows_a != self.flows_b and self.flows_explained:
            lines.append(f"flows: A has {self.flows_a}, B has {self.flows_b}, as their "
                         f"clients sent {self.sent_a} and {self.sent_b} requests (until "
                         f"every backend answered): the first {first} compared")
        elif self.flows_a != self.flows_b:
            lines.append(f"flows: A has {self.flows_a}, B has {self.flows_b} "
                         f"(the first {first} compared)")
        return lines + [r.summary() for r in self.roles]

    def details(self) -> list[str]:
        """Each role's first differing packet as an expected (A) / got (B) table."""
        out = []
        for r in self.roles:
            d = r.difference
            if d is None:
                continue
            lines = [f"{r.role}, flow {d.flow}, packet {d.packet}: {d.message}"]
            if d.summary_a:
                lines.append(f"  A {d.point_a} frame {d.frame_a}: {d.summary_a}")
            if d.summary_b:
                lines.append(f"  B {d.point_b} frame {d.frame_b}: {d.summary_b}")
            lines += field_table(d.fields)
            out.append("\n".join(lines))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same": self.same, "flows_same": self.flows_same,
                "summary": self.summary_lines()}


def requests_sent(directory: Path) -> int | None:
    """The requests the client sent in the run (``steps.json``'s figures), None when the
    set does not say."""
    try:
        steps = json.loads((directory / STEPS).read_text(encoding="utf-8"))
        sent = [s["figures"]["sent"] for s in steps if s.get("kind") == "requests"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    counts = [n for n in sent if isinstance(n, int) and not isinstance(n, bool)]
    if not counts or len(counts) != len(sent):
        return None
    return sum(counts)


def _load(folder: Path, label: str) -> CaptureDir:
    if not folder.is_dir():
        raise DiffError(f"{label} {folder}: not a folder")
    if not (folder / MANIFEST).is_file():
        raise DiffError(f"{label} {folder}: not a capture set (no {MANIFEST})")
    try:
        return CaptureDir.load(folder)
    except CaptureError as exc:
        raise DiffError(f"{label} {folder}: not a capture set ({exc})") from None


def _read_packets(cd: CaptureDir, label: str) -> None:
    for pt in cd.points:
        try:
            cd.packets(pt)
        except Exception as exc:  # scapy's errors are of every kind: one line, named
            raise DiffError(f"{label} {cd.directory}: cannot read {pt.file.name} "
                            f"({type(exc).__name__}: {exc})") from None


def _packet_diff(va: dict[str, str], vb: dict[str, str]) -> list[FieldDiff]:
    return [FieldDiff(f, va[f], vb[f], va[f] == vb[f]) for f in FIELDS
            if va[f] or vb[f] or f in ("direction", "proto", "ttl", "ip_len")]


def _teardown_order(cd: CaptureDir, pkts: list[Pkt]) -> list[tuple[Pkt, bool]]:
    """A point's packets of a TCP flow in the order compared, each with whether its ack
    is masked: up to the first FIN as captured; after it, which side closes first is
    timing (the client's FIN and the server's cross or not), so the FIN-carrying
    packets follow in a fixed order (the client's side first), their acks masked, and
    the pure ACKs of the teardown are left out."""
    first_fin = next((i for i, p in enumerate(pkts) if p.proto == "tcp" and "F" in p.flags),
                     None)
    if first_fin is None:
        return [(p, False) for p in pkts]
    tail = [p for p in pkts[first_fin:] if not (p.flags == "A" and p.payload_len == 0)]
    tail.sort(key=lambda p: not _from_client(cd, p))  # stable: the client's side first
    return [(p, False) for p in pkts[:first_fin]] + [(p, True) for p in tail]


def _role_sequence(cd: CaptureDir, flow: Flow,
                   role: Role) -> list[list[tuple[str, Pkt, bool]]]:
    """The flow's packets at each of the role's points (in the order compared, with
    whether the ack is masked), one list per point."""
    return [[(pt.name, p, masked) for p, masked in
             _teardown_order(cd, flow.packets.get(pt.name, []))]
            for pt in flow_points(cd, flow, role)]


def _values(cd: CaptureDir, flow: Flow, p: Pkt, masked: bool) -> dict[str, str]:
    values = normalise(cd, flow, p)
    if masked and values["ack"]:
        values["ack"] = "(teardown)"
    return values


def _compare_role(a: CaptureDir, b: CaptureDir, fa: Flow, fb: Flow,
                  role: Role) -> tuple[int, int, Difference | None]:
    seq_a, seq_b = _role_sequence(a, fa, role), _role_sequence(b, fb, role)
    count_a = sum(len(s) for s in seq_a)
    count_b = sum(len(s) for s in seq_b)
    if len(seq_a) != len(seq_b):
        return count_a, count_b, Difference(
            fa.number, 1, f"A has {len(seq_a)} capture point(s) for this role, "
                          f"B has {len(seq_b)}")
    offset = 0
    for pa, pb in zip(seq_a, seq_b, strict=True):
        for i in range(max(len(pa), len(pb))):
            n = offset + i + 1
            if i >= len(pa) or i >= len(pb):
                longer, (name, p, masked), who = (("B", pb[i], "b") if i >= len(pa)
                                                   else ("A", pa[i], "a"))
                extra = abs(len(pa) - len(pb))
                cd, fl = (b, fb) if who == "b" else (a, fa)
                text = describe(_values(cd, fl, p, masked))
                d = Difference(fa.number, n, f"{longer} has {extra} more packet"
                               f"{'s' * (extra != 1)} at {role}: {text}")
                if who == "a":
                    d.point_a, d.frame_a, d.summary_a = name, p.frame, text
                else:
                    d.point_b, d.frame_b, d.summary_b = name, p.frame, text
                return count_a, count_b, d
            (name_a, ka, ma), (name_b, kb, mb) = pa[i], pb[i]
            va, vb = _values(a, fa, ka, ma), _values(b, fb, kb, mb)
            # a number a crafted or replayed packet carries as it is: the same in both
            for name, x, y in (("seq", ka.seq, kb.seq), ("ack", ka.ack, kb.ack)):
                if x is not None and x == y and va[name] != vb[name]:
                    vb[name] = va[name] = f"{x} (absolute)"
            if va != vb:
                fields = _packet_diff(va, vb)
                differ = ", ".join(f"{f.field} {f.expected or '-'} vs {f.got or '-'}"
                                   for f in fields if not f.ok)
                return count_a, count_b, Difference(
                    fa.number, n, differ, name_a, name_b, ka.frame, kb.frame,
                    describe(va), describe(vb), fields)
        offset += len(pa)
    return count_a, count_b, None


def compare(a: CaptureDir, b: CaptureDir) -> CaptureDiff:
    """Compare two loaded capture sets of one scenario."""
    flows_a, flows_b = find_flows(a), find_flows(b)
    roles: list[RoleDiff] = []
    for role in ROLES:
        if not any(True for _ in a.by_role(role)) and not any(True for _ in b.by_role(role)):
            continue
        rd = RoleDiff(role)
        for fa, fb in zip(flows_a, flows_b, strict=False):
            na, nb, d = _compare_role(a, b, fa, fb, role)
            rd.packets_a += na
            rd.packets_b += nb
            if d is not None:
                rd.differing_flows += 1
                if rd.difference is None:
                    rd.difference = d
        roles.append(rd)
    return CaptureDiff(str(a.directory), str(b.directory), a.manifest.scenario,
                       a.manifest.datapath.describe(), b.manifest.datapath.describe(),
                       len(flows_a), len(flows_b), roles, a.manifest.run_id,
                       b.manifest.run_id, requests_sent(a.directory),
                       requests_sent(b.directory))


def diff_folders(a: str | Path, b: str | Path) -> CaptureDiff:
    """Load and compare two capture set folders; :class:`DiffError` (one line naming the
    folder) when one is not a capture set or they are of different scenarios."""
    ca, cb = _load(Path(a), "A"), _load(Path(b), "B")
    sa, sb = ca.manifest.scenario, cb.manifest.scenario
    if sa != sb:
        raise DiffError(f"B {cb.directory}: a capture set of scenario {sb or '(none)'!r}, "
                        f"A {ca.directory} is of {sa or '(none)'!r}: only capture sets of "
                        "one scenario compare")
    _read_packets(ca, "A")
    _read_packets(cb, "B")
    return compare(ca, cb)


# -- the comparison kept in a capture set (a ``both`` run) ---------------------------

def write_compared(directory: Path, diffs: Iterable[CaptureDiff]) -> Path:
    """``compared.json`` in ``directory``: each comparison this set was part of."""
    data = {"comparisons": [d.as_dict() for d in diffs]}
    return write_text(directory / COMPARED, json.dumps(data, indent=2) + "\n")
