"""From the walk's counts to flows and findings: the option's byte order, each flow's
status and note, and the findings a status brings."""

from __future__ import annotations

from lab.capture.layout import Role
from lab.check.review.model import (
    SEVERITY_RANK,
    DsrFlow,
    Finding,
    FlowStatus,
    OrderBasis,
    Proto,
)
from lab.check.review.order import plausible_order
from lab.check.review.walk import (
    FRONT_HOST,
    FRONT_NET,
    FWD,
    RAW_REPLY,
    REPLY_HOST,
    REPLY_NET,
    FlowState,
    WalkState,
    addr_str,
)
from lab.wire import dsropt
from lab.wire.dsropt import OptionOrder, hostport
from lab.wire.endpoint import Endpoint
from lab.wire.pcapread import CaptureFile

INITIAL_TTLS = frozenset((64, 128, 255))
_PROTO_NAMES: dict[int, Proto] = {6: "tcp", 17: "udp"}

Reading = tuple[int, OrderBasis]  # 0 host, 1 network (-1: no evidence), and why
Verdict = tuple[FlowStatus, str, "Finding | None"]  # status, note, the finding it brings
_CARRIER: Reading = (1, "carrier")  # IPv6 and Geneve carriers: network order, one reading


def flows_and_findings(w: WalkState, cap: CaptureFile, order: OptionOrder | None,
                       role: Role | None) -> tuple[list[DsrFlow], list[Finding]]:
    """The flows, in the order they started, and the findings, most severe first."""
    findings = [Finding(k, s, fr, m, fl) for (k, s, fr, m, fl) in w.raw]
    flows: list[DsrFlow] = []
    ts = cap.timestamp
    for f, (ri, basis) in zip(w.flows, _chosen_readings(w.flows, order), strict=True):
        status, note, finding = _verdict(f, ri, role)
        if finding is not None:
            findings.append(finding)
        flows.append(_dsr_flow(f, ri, basis, status, note, first_time=ts(f.first_rec)))
    findings.sort(key=lambda x: (SEVERITY_RANK[x.severity], x.frame))
    return flows, findings


# -- the byte order -------------------------------------------------------------------------


def _chosen_readings(flows: list[FlowState], order: OptionOrder | None) -> list[Reading]:
    """Per flow, the reading to use: forced, else the flow's own evidence, else the
    file's (the reading more flows' evidence backs), else the plausible one."""
    if order is not None:
        forced: Reading = (0 if order == "host" else 1, "forced")
        return [_CARRIER if f.single else forced for f in flows]
    seen = [_CARRIER if f.single else _evidence(f) for f in flows]
    votes = [0, 0]
    for ri, basis in seen:
        if ri >= 0 and basis != "carrier":
            votes[ri] += 1
    by_file = -1 if votes[0] == votes[1] else (0 if votes[0] > votes[1] else 1)
    return [(ri, basis) if ri >= 0 else _without_evidence(f, by_file)
            for f, (ri, basis) in zip(flows, seen, strict=True)]


def _evidence(f: FlowState) -> Reading:
    """The reading (0 host, 1 network) the file's packets back, or -1."""
    c = f.counts
    for a, b, basis in ((c[REPLY_HOST], c[REPLY_NET], "replies"),
                        (c[FRONT_HOST], c[FRONT_NET], "frontend")):
        if a and not b:
            return 0, basis  # type: ignore[return-value]
        if b and not a:
            return 1, basis  # type: ignore[return-value]
    return -1, "plausible"


def _without_evidence(f: FlowState, by_file: int) -> Reading:
    if by_file >= 0:
        return by_file, "file"
    return (0 if plausible_order(f.opt) == "host" else 1), "plausible"


# -- the status ---------------------------------------------------------------------------


def _verdict(f: FlowState, ri: int, role: Role | None) -> Verdict:
    """What the replies (or their absence) say about a flow, read in reading ``ri``."""
    c = f.counts
    rewritten = c[REPLY_NET] if ri else c[REPLY_HOST]
    if rewritten:
        note = f"{rewritten} replies from the service address"
        if c[RAW_REPLY]:
            note += (f"; {c[RAW_REPLY]} also seen before the rewrite, from the "
                     "backend's address")
        return "rewritten", note, None
    if c[RAW_REPLY]:
        return _unrewritten(f, f.readings[ri], role)
    return _no_reply(f, f.readings[ri], role, c[FRONT_NET] if ri else c[FRONT_HOST])


def _unrewritten(f: FlowState, service: Endpoint, role: Role | None) -> Verdict:
    """Replies from the backend's own address: expected at the pod, else broken DSR."""
    ttl = f.raw_ttl
    frame = f.raw_frame if f.raw_frame is not None else f.first_frame
    backend = hostport(addr_str(f.backend[0], f.family), f.backend[1])
    if role == "pod":
        return ("pod-side", "replies leave the pod with its own address; its node rewrites "
                "them (expected at a pod)", None)
    if role is None and ttl in INITIAL_TTLS:
        note = (f"replies from the backend's address with TTL {ttl} (not routed yet): this "
                "capture looks taken inside the pod or on its veth, before the node "
                "rewrites them")
        msg = (f"reply of {_desc(f, service)} leaves with the backend's address {backend}, "
               f"TTL {ttl}: expected if captured at the pod; broken DSR if captured on the "
               "node's uplink")
        return "pod-side", note, Finding("pod-side-reply", "warning", frame, msg, f.index)
    note = (f"{f.counts[RAW_REPLY]} replies from the backend's address {backend} instead of "
            "the service's")
    msg = (f"reply of {_desc(f, service)} left the backend with source {backend}, not the "
           f"service address {service}: the DSR reverse translation did not happen "
           f"(TTL {ttl})")
    return "not-rewritten", note, Finding("not-rewritten", "error", frame, msg, f.index)


def _no_reply(f: FlowState, service: Endpoint, role: Role | None, front: int) -> Verdict:
    """No reply at all: expected on the LB node, else worth a warning."""
    if role == "lb-node" or (role is None and front):
        note = ("no reply, as expected on the LB node: replies go from the backend "
                "straight to the client")
        if front:
            note += f" ({front} client packets to the service seen)"
        return "lb-node", note, None
    return "no-reply", "no reply in this file", Finding(
        "no-reply", "warning", f.first_frame,
        f"no reply to {_desc(f, service)} in this file (neither from the service "
        "nor from the backend's address)", f.index)


def _desc(f: FlowState, service: Endpoint) -> str:
    fam = f.family
    return (f"{_PROTO_NAMES[f.proto]} {hostport(addr_str(f.client[0], fam), f.client[1])} -> "
            f"{hostport(addr_str(f.backend[0], fam), f.backend[1])} (service {service})")


# -- the record -------------------------------------------------------------------------------


def _dsr_flow(f: FlowState, ri: int, basis: OrderBasis, status: FlowStatus, note: str, *,
              first_time: float) -> DsrFlow:
    c = f.counts
    return DsrFlow(
        proto=_PROTO_NAMES[f.proto],
        client=Endpoint(addr_str(f.client[0], f.family), f.client[1]),
        backend=Endpoint(addr_str(f.backend[0], f.family), f.backend[1]),
        service=f.readings[ri],
        order=dsropt.ORDERS[ri],
        order_basis=basis,
        other_reading=f.readings[1 - ri],
        option_hex=f.opt.hex(),
        first_frame=f.first_frame,
        first_time=first_time,
        option_packets=f.option_packets,
        to_backend_packets=c[FWD],
        frontend_packets=c[FRONT_NET] if ri else c[FRONT_HOST],
        rewritten_replies=c[REPLY_NET] if ri else c[REPLY_HOST],
        unrewritten_replies=c[RAW_REPLY],
        first_unrewritten_frame=f.raw_frame,
        first_unrewritten_ttl=f.raw_ttl,
        status=status,
        note=note,
        family=6 if ":" in f.readings[ri].ip else 4,
        dispatch=f.dispatch,
    )
