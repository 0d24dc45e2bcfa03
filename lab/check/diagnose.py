"""Why DSR failed, in one sentence: rules over a capture set (which hop saw what).

:func:`diagnose` follows every TCP connection the client opened to the
service through the capture points the manifest names (client, the node it
addressed, the backends' nodes) and says, for each one that broke, where and
why, in the terms a network engineer would use:

* the SYN never reached the node the client addressed;
* that node received it and sent nothing on (it dropped it there);
* the DNATed SYN left with the client's source address and never reached
  the backend's node: the fabric dropped it (a source/destination check);
* the SYN left with the DSR option and arrived without it: the option was
  stripped between the two nodes, and the backend's node then answers from
  the pod's own address instead of the service's;
* the backend's node replied from the pod's address although the option
  arrived (its datapath did not translate the reply).

Connections that worked give no line. Identical lines from several
connections are one :class:`Diagnosis` with their count. The same rules run
on a live run's capture set (``results.json``, the report, pytest's failure
message) and on any capture directory with a manifest (``dsrlab review``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.capture.capdir import CaptureDir, PointFile
from lab.capture.manifest import ManifestBackend
from lab.wire import dsropt
from lab.wire.packets import Pkt

IPV4_MAX_HLEN = 60


@dataclass
class Diagnosis:
    """One cause, said once, with the connections it explains."""

    cause: str  # a stable key: syn-lost, dropped-at-lb, fabric-dropped, option-stripped...
    line: str  # the sentence
    flows: list[str] = field(default_factory=list)  # client endpoints, "172.18.0.1:40000"

    def text(self) -> str:
        n = len(self.flows)
        return self.line + (f" ({n} connections)" if n > 1 else "")


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
    from lab.check.too_big import diagnose_too_big  # noqa: PLC0415  (it imports Diagnosis)

    too_big = diagnose_too_big(cd)
    explained = {f for d in too_big for f in d.flows}
    svc, client_ip = cd.service, cd.client_ip
    if not svc.ip or svc.protocol.upper() != "TCP":
        return too_big
    hops = _hops(cd)
    packets = {p.name: cd.packets(p) for p in cd.points}
    found: dict[str, Diagnosis] = {}
    lb_name = hops.lb.host if hops.lb else "the node addressed"
    start = packets.get(hops.client.name, []) if hops.client else []
    seen: set[int] = set()
    for syn in start:
        if not (syn.syn and syn.src == client_ip and syn.dst == svc.ip
                and syn.dport == svc.port) or syn.sport in seen or syn.sport is None:
            continue
        seen.add(syn.sport)
        if f"{client_ip}:{syn.sport}" in explained:
            continue
        got = _diagnose_flow(cd, hops, packets, syn.sport, lb_name)
        if got is not None:
            cause, line = got
            found.setdefault(line, Diagnosis(cause, line)).flows.append(
                f"{client_ip}:{syn.sport}")
    return sorted([*too_big, *found.values()], key=lambda d: -len(d.flows))


def _diagnose_flow(cd: CaptureDir, hops: _Hops, packets: dict[str, list[Pkt]], eph: int,
                   lb_name: str) -> tuple[str, str] | None:
    svc, client_ip = cd.service, cd.client_ip
    service = f"{svc.ip}:{svc.port}"
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
        if answered:
            return None  # served on the node itself (a local backend)
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
    return _at_backend(cd, hops, packets, fwd=fwd, backend=backend, lb_name=lb_name,
                       answered=answered)


def _at_backend(cd: CaptureDir, hops: _Hops, packets: dict[str, list[Pkt]], *, fwd: Pkt,
                backend: ManifestBackend, lb_name: str,
                answered: bool) -> tuple[str, str] | None:
    svc = cd.service
    service = f"{svc.ip}:{svc.port}"
    pod = f"{backend.ip}:{backend.port}"
    point = hops.backend_nodes.get(backend.node)
    if point is None:
        return None  # no capture on that node: nothing to say
    at = packets[point.name]
    arrived = [p for p in at if p.syn and p.dst == backend.ip and p.src == fwd.src
               and p.sport == fwd.sport]
    if not arrived:
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
    if fwd.has_dsr_option and not syn.has_dsr_option:
        if from_pod:
            return ("option-stripped",
                    f"backend node {backend.node} replied from {pod} instead of {service}: "
                    f"the DSR option did not reach it (stripped between {lb_name} and "
                    f"{backend.node})")
        return ("option-stripped", f"the DSR option did not reach {backend.node} (stripped "
                                   f"between {lb_name} and {backend.node})")
    if fwd.has_dsr_option and from_pod and not answered:
        opt = dsropt.decode(syn.options, cd.option_order) if syn.has_dsr_option else None
        said = f" (the option said {opt[0]}:{opt[1]})" if opt else ""
        return ("reply-not-translated",
                f"backend node {backend.node} replied from {pod} instead of {service} "
                f"although the DSR option reached it{said}: its datapath did not translate "
                f"the reply")
    return None

