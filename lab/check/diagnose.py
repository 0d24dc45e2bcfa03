"""Why DSR failed, in one sentence: rules over a capture set (which hop saw what).

:func:`diagnose` follows every TCP connection the client opened to the
service through the capture points the manifest names (client, the node it
addressed, the backends' nodes) and says, for each one that broke, where and
why, in the terms a network engineer would use:

* the SYN never reached the node the client addressed;
* that node received it and sent nothing on (it dropped it there);
* the DNATed SYN left with the client's source address and never reached
  the backend's node: the fabric dropped it (a source/destination check);
  in IPv6, one that left carrying the DSR Destination Options header and
  never arrived: the fabric dropped the packet for its extension header
  (as many networks do, RFC 7872/9098);
* the SYN left with the DSR option and arrived without it: the option was
  stripped between the two nodes, and the backend's node then answers from
  the pod's own address instead of the service's;
* the backend's node replied from the pod's address although the option
  arrived (its datapath did not translate the reply);
* the pod refused the connection (an RST to the SYN).

Once a connection is established, its byte stream is followed hop by hop
along the path its data takes (for a download: the pod, the backend's node,
the client; for an upload the other way), by TCP sequence numbers:

* it reset: where the RST came from (the pod, a node, no capture point);
* the sender closed it early: its FIN came before the body its HTTP
  response announced (Content-Length);
* it stalled (no FIN or RST from the sender reached the receiver): how far
  it got (the receiver's highest acknowledgement), and where its packets
  were last seen: the hop that saw the sender's segments go on after the
  stall and the next hop that saw none of them; or, when the data kept
  arriving, where the receiver's acknowledgements stopped; or that both
  ends went quiet;
* it completed, but data segments seen at one hop never reached the next
  and were sent again: the loss, counted, and between which hops.

Times are seconds from the client's SYN, as the client's capture saw it.

Connections that worked give no line (one that completed only by sending lost
segments again does). Identical lines from several
connections are one :class:`~lab.check.diagnosis.Diagnosis` with their count. The same rules run
on a live run's capture set (``results.json``, the report, pytest's failure
message) and on any capture directory with a manifest (``dsrlab review``).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from lab.capture.capdir import CaptureDir, PointFile
from lab.capture.manifest import ManifestBackend
from lab.check.datapath_drops import diagnose_counted_drops, diagnose_flow_drops, read_events
from lab.check.diagnosis import Diagnosis
from lab.check.fragments import diagnose_fragments
from lab.check.too_big import diagnose_too_big
from lab.wire import dsropt
from lab.wire.dsropt import hostport
from lab.wire.packets import Pkt

IPV4_MAX_HLEN = 60
# a receiver that closes within this of the sender's last segment reaching it closed
# a flow that was still moving (it gave up), not one that had stopped
STILL_SENDING_S = 0.25
SEQ_SPACE = 1 << 32
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*\r?$", re.I | re.M)


@dataclass(frozen=True)
class _Hops:
    client: PointFile | None
    lb: PointFile | None
    backend_nodes: dict[str, PointFile]  # node name -> its capture point


def _hops(cd: CaptureDir) -> _Hops:
    clients = list(cd.by_role("client"))
    lbs = list(cd.by_role("lb-node"))
    return _Hops(clients[0] if clients else None, lbs[0] if lbs else None,
                 {p.host: p for p in cd.by_role("backend-node")})


def diagnose(cd: CaptureDir) -> list[Diagnosis]:
    """Every broken connection's cause, most connections first."""
    # packets too big for the option (TCP SYNs and UDP datagrams): lab.check.too_big
    # and fragmented answers whose later pieces left untranslated: lab.check.fragments
    # and the datapath's own drop reasons (datapath-events.json): lab.check.datapath_drops
    by_rules = diagnose_too_big(cd) + diagnose_fragments(cd)
    explained = {f for d in by_rules for f in d.flows}
    # a drop the datapath names says why its connection stopped: it takes the place
    # of the vague "dropped it there" (a rule that knows more, e.g. no room for the
    # option, is said beside it)
    events = read_events(cd)  # the datapath's drops, read once for both rules
    by_dp = [d for d in diagnose_flow_drops(cd, events) if not explained.issuperset(d.flows)]
    by_rules += by_dp
    named = {f for d in by_dp for f in d.flows}
    svc, client_ip = cd.service, cd.client_ip
    if not svc.ip or svc.protocol.upper() != "TCP":
        unanswered = bool(by_rules) or _datagrams_unanswered(cd)
        return by_rules + (diagnose_counted_drops(cd, events) if unanswered else [])
    hops = _hops(cd)
    packets = {p.name: cd.packets(p) for p in cd.points}
    found: dict[str, Diagnosis] = {}
    lb_name = hops.lb.host if hops.lb else "the node addressed"
    flows = _by_client_port(packets, client_ip)
    start = packets.get(hops.client.name, []) if hops.client else []
    seen: set[int] = set()
    for syn in start:
        if not (syn.syn and syn.src == client_ip and syn.dst == svc.ip
                and syn.dport == svc.port) or syn.sport in seen or syn.sport is None:
            continue
        seen.add(syn.sport)
        if hostport(client_ip, syn.sport) in explained:
            continue
        got = _diagnose_flow(cd, hops, packets, syn.sport, lb_name, flows=flows)
        if got is not None and got[0] == "dropped-at-lb" and \
                hostport(client_ip, syn.sport) in named:
            continue
        if got is not None:
            cause, line = got
            found.setdefault(line, Diagnosis(cause, line)).flows.append(
                hostport(client_ip, syn.sport))
    broken = sorted([*by_rules, *found.values()], key=lambda d: -len(d.flows))
    return broken + (diagnose_counted_drops(cd, events) if broken else [])


def _datagrams_unanswered(cd: CaptureDir) -> bool:
    """A client port that sent the service datagrams and got nothing back (as the
    client's capture saw it)."""
    clients = list(cd.by_role("client"))
    if not clients:
        return False
    svc, client_ip = cd.service, cd.client_ip
    asked: set[int | None] = set()
    answered: set[int | None] = set()
    for p in cd.packets(clients[0]):
        if p.src == client_ip and p.dst == svc.ip and p.dport == svc.port:
            asked.add(p.sport)
        elif p.dst == client_ip and p.src == svc.ip:
            answered.add(p.dport)
    return bool(asked - answered)


def _diagnose_flow(cd: CaptureDir, hops: _Hops, packets: dict[str, list[Pkt]], eph: int,
                   lb_name: str, *, flows: _Flows) -> tuple[str, str] | None:
    svc, client_ip = cd.service, cd.client_ip
    service = hostport(svc.ip, svc.port)
    client_pkts = packets.get(hops.client.name, []) if hops.client else []
    answered = any(p.src == svc.ip and p.sport == svc.port and p.dport == eph
                   and p.synack for p in client_pkts)
    if hops.lb is None:
        return None
    lb = packets[hops.lb.name]
    syn_in = [p for p in lb if p.syn and p.src == client_ip and p.sport == eph
              and p.dst == svc.ip]
    if not syn_in:
        return ("syn-lost", f"the client's SYN to {service} never reached {lb_name}: lost "
                            f"between the client and the node")
    by_ip = {b.ip: b for b in cd.backends}
    isn = syn_in[0].seq
    out = [p for p in lb if p.syn and p.dst in by_ip and (
        (p.src == client_ip and p.sport == eph) or (isn is not None and p.seq == isn))]
    if not out:
        if answered:  # served on the node itself (a local backend)
            return _stream(_legs(cd, hops, flows, eph, _local_backend(cd, flows, eph)))
        hlen = syn_in[0].ihl * 4
        if hlen + dsropt.OPT_LEN > IPV4_MAX_HLEN:
            return ("options-too-long",
                    f"{lb_name} dropped the SYN to {service}: its own IP options "
                    f"({hlen - 20} bytes) leave no room for the 8-byte DSR option "
                    f"(20 + {hlen - 20} + 8 > 60; Cilium's rule since 1.14)")
        return ("dropped-at-lb", f"{lb_name} received the SYN to {service} and sent nothing "
                                 f"on: it dropped it there (no backend it may use?)")
    fwd = out[0]
    backend = by_ip[fwd.dst]
    broken = _at_backend(cd, hops, packets, fwd=fwd, backend=backend, lb_name=lb_name,
                         answered=answered)
    if broken is not None or not answered:
        return broken
    # a SNATed flow leaves the node addressed with the node's own address: its path
    # past that node is not the client's to follow
    return _stream(_legs(cd, hops, flows, eph, backend if fwd.src == client_ip else None))


def _at_backend(cd: CaptureDir, hops: _Hops, packets: dict[str, list[Pkt]], *, fwd: Pkt,
                backend: ManifestBackend, lb_name: str,
                answered: bool) -> tuple[str, str] | None:
    svc = cd.service
    service = hostport(svc.ip, svc.port)
    pod = hostport(backend.ip, backend.port)
    point = hops.backend_nodes.get(backend.node)
    if point is None:
        return None  # no capture on that node: nothing to say
    at = packets[point.name]
    arrived = [p for p in at if p.syn and p.dst == backend.ip and p.src == fwd.src
               and p.sport == fwd.sport]
    if not arrived:
        carried = fwd.dsr(cd.option_order)
        if fwd.family == 6 and carried is not None and carried.dispatch == "opt":
            return ("ext-header-dropped",
                    f"the DNATed SYN left {lb_name} for {pod} with the DSR Destination "
                    f"Options header (an IPv6 extension header) and {backend.node} saw none "
                    f"of its SYNs: the fabric between them dropped it for the extension "
                    f"header (many networks drop IPv6 packets carrying them, RFC 7872/9098)")
        if fwd.src != svc.ip:  # not the node's own address (a NodePort's service address)
            return ("fabric-dropped",
                    f"the DNATed SYN left {lb_name} for {pod} with the client's source "
                    f"{fwd.src} and never reached {backend.node}: the fabric between them "
                    f"dropped it (a source/destination check, as AWS's, drops frames whose "
                    f"source is not the sending node's)")
        return ("lost-between-nodes", f"the SYN left {lb_name} for {pod} and never reached "
                                      f"{backend.node}: lost between the nodes")
    syn = arrived[0]
    replies = [p for p in at if p.dst == fwd.src and p.dport == fwd.sport and p.synack]
    from_pod = [p for p in replies if p.src == backend.ip]
    sent = fwd.dsr(cd.option_order)
    option = "the DSR Geneve option" if sent and sent.dispatch == "geneve" else "the DSR option"
    if fwd.has_dsr and not syn.has_dsr:
        if from_pod:
            return ("option-stripped",
                    f"backend node {backend.node} replied from {pod} instead of {service}: "
                    f"{option} did not reach it (stripped between {lb_name} and "
                    f"{backend.node})")
        return ("option-stripped", f"{option} did not reach {backend.node} (stripped "
                                   f"between {lb_name} and {backend.node})")
    if fwd.has_dsr and from_pod and not answered:
        opt = syn.dsr(cd.option_order)
        said = f" (the option said {opt})" if opt else ""
        return ("reply-not-translated",
                f"backend node {backend.node} replied from {pod} instead of {service} "
                f"although {option} reached it{said}: its datapath did not translate "
                f"the reply")
    if not answered:
        resets = [p for p in at if p.dst == fwd.src and p.dport == fwd.sport and "R" in p.flags]
        if resets:
            return ("connection-refused",
                    f"{backend.node} answered the SYN for {pod} with an RST: the pod refused "
                    f"the connection (nothing listening on port {backend.port}?)")
    return None



# -- after the handshake: the byte stream, hop by hop ---------------------------------

@dataclass(frozen=True)
class _Leg:
    """The flow's TCP packets in one direction as one capture point saw them."""

    where: str  # "cilium-dsr-worker eth0"
    pkts: list[Pkt]
    complete: bool = True  # tcpdump kept every packet there

    def data(self) -> list[Pkt]:
        """Segments carrying bytes of the stream or its FIN."""
        return [p for p in self.pkts if p.payload_len or "F" in p.flags]


@dataclass(frozen=True)
class _Legs:
    """Both directions of one flow along its path, each in path order."""

    down: list[_Leg]  # pod -> client: the pod, the backend's node, the client
    up: list[_Leg]  # client -> pod: the client, the node addressed (in, out), the backend's...
    pod: str  # "the pod 10.0.2.123:80" (the service when no backend is known)
    client: str  # "the client 172.18.0.1:40000"
    t0: float  # the client's SYN, as the client's capture saw it


# capture point -> the client's port -> the TCP packets from or to it there, in order
_Flows = dict[str, dict[int, list[Pkt]]]


def _by_client_port(packets: dict[str, list[Pkt]], client: str) -> _Flows:
    """Every point's TCP packets by the client's port they carry (one pass: a capture
    set of many flows is not read once per flow)."""
    out: _Flows = {}
    for name, pkts in packets.items():
        mine: dict[int, list[Pkt]] = out.setdefault(name, {})
        for p in pkts:
            if p.proto != "tcp":
                continue
            port = p.sport if p.src == client else p.dport if p.dst == client else None
            if port is not None:
                mine.setdefault(port, []).append(p)
    return out


def _local_backend(cd: CaptureDir, flows: _Flows, eph: int) -> ManifestBackend | None:
    """The backend whose pod saw the flow (no forwarded SYN shows it: a local backend)."""
    for b in cd.backends:
        for p in cd.points:
            if p.role == "pod" and p.host == b.name and flows[p.name].get(eph):
                return b
    return None


def _legs(cd: CaptureDir, hops: _Hops, flows: _Flows, eph: int,
          backend: ManifestBackend | None) -> _Legs:
    svc, client = cd.service, cd.client_ip
    incomplete = {p.name for p in cd.manifest.points if p.missing}

    def leg(point: PointFile, keep: Callable[[Pkt], bool], note: str = "") -> _Leg:
        return _Leg(f"{point.host} {point.ifname}{note}",
                    [p for p in flows[point.name].get(eph, []) if keep(p)],
                    point.name not in incomplete)

    def to_client(p: Pkt) -> bool:
        return p.dst == client and p.dport == eph and p.src != client

    def from_client(to: str) -> Callable[[Pkt], bool]:
        return lambda p: p.src == client and p.sport == eph and p.dst == to

    pod_point = next((p for p in cd.points if backend is not None and p.role == "pod"
                      and p.host == backend.name), None)
    local = backend is not None and hops.lb is not None and backend.node == hops.lb.host
    node_point = hops.lb if local else (
        hops.backend_nodes.get(backend.node) if backend is not None else None)
    down: list[_Leg] = []
    up: list[_Leg] = []
    if pod_point is not None:
        down.append(leg(pod_point, to_client))
    if node_point is not None:
        down.append(leg(node_point, to_client))
    if hops.client is not None:
        down.append(leg(hops.client, lambda p: to_client(p) and p.src == svc.ip
                        and p.sport == svc.port))
        up.append(leg(hops.client, from_client(svc.ip)))
    if hops.lb is not None:
        up.append(leg(hops.lb, from_client(svc.ip), " (in)"))
    if backend is not None and not local:
        if hops.lb is not None:
            up.append(leg(hops.lb, from_client(backend.ip), " (out)"))
        if node_point is not None:
            up.append(leg(node_point, from_client(backend.ip)))
    if backend is not None and pod_point is not None:
        up.append(leg(pod_point, from_client(backend.ip)))
    # a point that saw nothing of the flow in a direction is not on its path there
    down, up = [x for x in down if x.pkts], [x for x in up if x.pkts]
    syn = next((p for p in (up[0].pkts if up else []) if p.syn), None)
    pod = (f"the pod {hostport(backend.ip, backend.port)}" if backend is not None
           else f"the service {hostport(svc.ip, svc.port)}")
    return _Legs(down, up, pod, f"the client {hostport(client, eph)}",
                 syn.time if syn else 0.0)


def _rel(seq: int | None, base: int) -> int:
    return ((seq or 0) - base) % SEQ_SPACE


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.2f} MB"


def _http_lengths(first_data: Pkt | None) -> tuple[int, int] | None:
    """(head length, body length) of the HTTP response or request whose first bytes
    ``first_data`` carries, from its Content-Length."""
    if first_data is None:
        return None
    head, sep, _ = first_data.payload.partition(b"\r\n\r\n")
    m = _CONTENT_LENGTH.search(head) if sep else None
    return (len(head) + len(sep), int(m[1])) if m else None


@dataclass(frozen=True)
class _Stream:
    """One established flow's byte stream: who sends it, along which legs, and how
    its receiver acknowledges it."""

    legs: _Legs
    data: list[_Leg]  # the sender's segments, sender first
    acks: list[_Leg]  # the receiver's, receiver first
    base: int  # the sequence number of the stream's first byte
    sender: str
    receiver: str
    http: tuple[int, int] | None  # (head, body) lengths its Content-Length announced

    @classmethod
    def of(cls, legs: _Legs) -> _Stream | None:
        if not legs.down or not legs.up:
            return None
        synack = next((p for p in legs.down[-1].pkts if p.synack), None)
        syn = next((p for p in legs.up[0].pkts if p.syn), None)
        if synack is None or syn is None or synack.seq is None or syn.seq is None:
            return None
        down_bytes = sum(p.payload_len for p in legs.down[-1].pkts)
        up_bytes = sum(p.payload_len for p in legs.up[0].pkts)
        if down_bytes >= up_bytes:  # a download (or a request and its answer)
            data, acks, base = legs.down, legs.up, synack.seq + 1
            sender, receiver = legs.pod, legs.client
        else:  # an upload
            data, acks, base = legs.up, legs.down, syn.seq + 1
            sender, receiver = legs.client, legs.pod
        first = next((p for leg in data for p in leg.pkts if p.payload_len and p.seq == base),
                     None)
        return cls(legs, data, acks, base, sender, receiver, _http_lengths(first))

    def t(self, p: Pkt | float) -> str:
        """A time, in seconds from the client's SYN."""
        return f"t={(p.time if isinstance(p, Pkt) else p) - self.legs.t0:.2f} s"

    def of_total(self) -> str:
        return f" of {_size(self.http[0] + self.http[1])}" if self.http else ""

    def first_seen(self, match: Callable[[Pkt], bool]) -> tuple[_Leg, Pkt] | None:
        """The first leg of the data's path with a packet matching, and that packet."""
        for leg in self.data:
            hit = next((p for p in leg.pkts if match(p)), None)
            if hit is not None:
                return leg, hit
        return None

    def progress(self) -> tuple[int, float | None]:
        """How many bytes the receiver acknowledged in order (at its own capture point)
        and when it first acknowledged that many."""
        best, when = 0, None
        for p in self.acks[0].pkts:
            if "A" not in p.flags or "R" in p.flags or p.ack is None:
                continue
            got = _rel(p.ack, self.base)
            if got < SEQ_SPACE // 2 and (got > best or when is None):
                best, when = got, p.time
        return best, when


def _stream(legs: _Legs) -> tuple[str, str] | None:
    """What became of an established flow, said hop by hop (None: it completed cleanly)."""
    st = _Stream.of(legs)
    if st is None:
        return None
    sender_side = "down" if st.data is legs.down else "up"
    # what ended the flow at the client: the first FIN or RST of either side
    ends = sorted(((p.time, side, flag, p)
                   for side, leg in (("down", legs.down[-1]), ("up", legs.up[0]))
                   for flag in "FR"
                   for p in [next((q for q in leg.pkts if flag in q.flags), None)]
                   if p is not None), key=lambda e: e[0])
    if ends and ends[0][1] == sender_side and ends[0][2] == "R":
        return _reset(st, ends[0][3])
    done, _ = st.progress()
    fin = next((e[3] for e in ends if e[1] == sender_side and e[2] == "F"), None)
    # the FIN comes after the segment's own bytes (a last segment may carry both)
    sent = _rel(fin.seq, st.base) + fin.payload_len if fin is not None else None
    whole = st.http[0] + st.http[1] if st.http else None
    if whole is not None and sent is not None and sent < whole:
        origin = st.first_seen(lambda p: "F" in p.flags)
        where = f": its FIN left {origin[0].where} at {st.t(origin[1])}" if origin else ""
        return ("closed-early",
                f"{st.sender} closed the connection after {_size(sent)} of the "
                f"{_size(whole)} its {'response' if sender_side == 'down' else 'request'} "
                f"announced (Content-Length){where}")
    if (whole is not None and done >= whole) or (whole is None and sent is not None):
        return _losses(st)
    end = ends[0] if ends else None
    gave_up = ""
    if end is not None:
        who = legs.client if end[1] == "up" else legs.pod
        gave_up = (f"; then {who} {'closed' if end[2] == 'F' else 'reset'} the connection "
                   f"at {st.t(end[0])}")
    until = end[0] if end else float("inf")
    # what the capture shows of the path comes first: a hop past which the flow's packets
    # never went explains the stall whenever the receiver then closed (its own time limit
    # may fire before or after a retransmission: that order is the machine's, not the path's)
    broken = _path_break(st, until, gave_up)
    if broken is not None:
        return broken
    arrived = st.data[-1].data()
    if end is not None and end[1] != sender_side and arrived and \
            end[0] - arrived[-1].time < _pause_allowed(arrived):
        # the receiver closed while the data still came: nothing on the path stopped it
        who = legs.client if end[1] == "up" else legs.pod
        return ("receiver-gave-up",
                f"{who} {'closed' if end[2] == 'F' else 'reset'} the connection at "
                f"{st.t(end[0])} after {_size(done)}{st.of_total()} while {st.sender} was "
                f"still sending (its last segment reached {st.data[-1].where} at "
                f"{st.t(arrived[-1])}): it gave up (a time limit of its own); nothing on "
                "the path stopped the flow")
    return _quiet(st, until, gave_up)


def _pause_allowed(arrived: list[Pkt]) -> float:
    """How long after the sender's last segment a receiver's close still counts as
    closing a flow that was moving: STILL_SENDING_S, or the longest pause the flow
    already had between two of its segments and came back from (a loaded machine
    pauses a paced sender for longer than a quiet one)."""
    gaps = (b.time - a.time for a, b in itertools.pairwise(arrived))
    return max(STILL_SENDING_S, *gaps) if len(arrived) > 1 else STILL_SENDING_S


def _reset(st: _Stream, rst: Pkt) -> tuple[str, str]:
    done = _rel(rst.seq, st.base)
    got = f" after {_size(done)}{st.of_total()}" if done < SEQ_SPACE // 2 else ""
    origin = st.first_seen(lambda p: "R" in p.flags)
    if origin is None or origin[0] is st.data[-1]:
        return ("connection-reset",
                f"an RST in the name of {st.sender} reset the connection{got}: it reached "
                f"{st.data[-1].where} at {st.t(rst)} and no capture point before it saw it")
    leg, pkt = origin
    if leg is st.data[0]:
        return ("connection-reset", f"{st.sender} reset the connection{got}: its RST left "
                                    f"{leg.where} at {st.t(pkt)}")
    return ("connection-reset",
            f"{leg.where.split(' ')[0]} reset the connection{got} in the name of {st.sender}: "
            f"its RST was first seen at {leg.where} at {st.t(pkt)} "
            f"({st.data[0].where} saw none)")


def _retransmissions(leg: _Leg, pkts: list[Pkt], base: int) -> int:
    """How many of ``pkts`` repeat bytes ``leg`` saw sent earlier."""
    spans = [(p.time, _rel(p.seq, base), _rel(p.seq, base) + p.payload_len)
             for p in leg.pkts if p.payload_len]
    return sum(1 for p in pkts if any(t < p.time and lo <= _rel(p.seq, base) < hi
                                      for t, lo, hi in spans))


def _identity(p: Pkt) -> tuple[int | None, int | None, int, int]:
    """One transmission of a segment, the same at every hop (the datapath rewrites
    addresses and ports, not these); a retransmission is another one (a new IP ID)."""
    return p.seq, p.ack, p.ip_id, p.payload_len


def _reached(pkts: list[Pkt], nxt: _Leg, since: float) -> bool:
    """Whether any of ``pkts`` was ever seen at ``nxt`` (after ``since``, at any time:
    a packet that crossed it just after the flow's end still crossed it)."""
    there = {_identity(p) for p in nxt.pkts if p.time > since}
    return any(_identity(p) in there for p in pkts)


def _path_break(st: _Stream, end: float, gave_up: str) -> tuple[str, str] | None:
    """The stall read off the capture, hop by hop: the first hop that saw the sender's
    segments go on after the stall when the next hop saw none of those, or (the data
    kept arriving) the first hop that saw the receiver's acknowledgements when the next
    saw none of those. None: every packet seen went on along the path."""
    done, stopped = st.progress()
    if stopped is None:
        return None
    head = f"the transfer stopped after {_size(done)}{st.of_total()}"
    later = [[p for p in leg.data() if stopped < p.time < end] for leg in st.data]
    for i, (went_on, nxt) in enumerate(itertools.pairwise(st.data)):
        if later[i] and nxt.complete and not _reached(later[i], nxt, stopped):
            seen = [p for p in nxt.data() if p.time <= stopped]
            last = f"was at {st.t(seen[-1])}" if seen else "never came"
            n, again = len(later[i]), _retransmissions(went_on, later[i], st.base)
            kind = (", all retransmissions" if again == n else
                    f", {again} of them retransmissions" if again else "")
            return ("transfer-stalled",
                    f"{head}: the last segment from {st.sender} seen at {nxt.where} {last}; "
                    f"{went_on.where} saw {n} more after {st.t(stopped)} (until "
                    f"{st.t(later[i][-1])}{kind}), none of which reached {nxt.where}{gave_up}")
    if not later[-1]:
        return None
    acked = [[p for p in leg.pkts if stopped < p.time < end and "A" in p.flags]
             for leg in st.acks]
    # the data kept arriving: where did the acknowledgements stop?
    for i, (seen_at, nxt) in enumerate(itertools.pairwise(st.acks)):
        if acked[i] and nxt.complete and not _reached(acked[i], nxt, stopped):
            return ("transfer-stalled",
                    f"{head}: segments from {st.sender} kept reaching "
                    f"{st.data[-1].where} ({len(later[-1])} more after {st.t(stopped)}), "
                    f"but the acknowledgements of {st.receiver} seen at {seen_at.where} "
                    f"after that (until {st.t(acked[i][-1])}) never reached "
                    f"{nxt.where}{gave_up}")
    return None


def _quiet(st: _Stream, end: float, gave_up: str) -> tuple[str, str] | None:
    """A stall with no hop to blame: the sender went quiet (its data stopped coming
    while the path carried everything it sent)."""
    done, stopped = st.progress()
    if stopped is None or any(stopped < p.time < end for p in st.data[-1].data()):
        return None  # data still arriving and every hop passed it on
    head = f"the transfer stopped after {_size(done)}{st.of_total()}"
    quiet = f"{head}: nothing more from {st.sender} was seen after {st.t(stopped)}"
    if any(stopped < p.time < end and "A" in p.flags for p in st.acks[-1].pkts):
        return ("transfer-stalled",
                f"{quiet}, though the acknowledgements of {st.receiver} reached "
                f"{st.acks[-1].where}: {st.sender} went silent{gave_up}")
    return ("transfer-stalled", f"{quiet}, and {st.receiver} sent nothing either{gave_up}")


def _losses(st: _Stream) -> tuple[str, str] | None:
    """A completed stream whose data segments seen at one hop never reached the next
    and were sent again: the first such pair of hops, counted."""
    for a, b in itertools.pairwise(st.data):
        if not (a.complete and b.complete and b.pkts):
            continue
        sent = Counter(_rel(p.seq, st.base) for p in a.pkts if p.payload_len)
        got = Counter(_rel(p.seq, st.base) for p in b.pkts if p.payload_len)
        lost = sum(n - got[k] for k, n in sent.items() if n > 1 and n > got[k])
        if lost:
            total = sum(sent.values())
            return ("segments-lost",
                    f"the transfer completed, but {lost} of the {total} data segments from "
                    f"{st.sender} seen at {a.where} never reached {b.where} and were sent "
                    f"again ({100 * lost / total:.1f} %): lost between {a.where} and "
                    f"{b.where}")
    return None
