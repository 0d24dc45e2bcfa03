"""The seed write-up's four claims, checked on a capture set alone.

Each check reads the pcaps named by a ``manifest.json`` (see
:mod:`lab.capture`) and returns a :class:`ClaimResult` with the evidence
(what was found, packet by packet) and the problems (what was wrong or
missing). Flows are found in the client's capture: every SYN from the
client to the service is one flow, keyed by its ephemeral port; the
backend a flow got is read from the LB node's capture (where its SYN was
DNATed), so nothing here needs a live lab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from lab import dsropt
from lab.capture import CaptureDir, PointFile
from lab.packets import Pkt, read_pcap


@dataclass
class ClaimResult:
    name: str
    title: str
    evidence: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and bool(self.evidence)

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    def note(self, msg: str) -> None:
        self.evidence.append(msg)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "passed": self.passed,
                "evidence": self.evidence, "problems": self.problems}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    ip: str
    port: int
    node: str


@dataclass(frozen=True)
class Flow:
    client_port: int
    backend: BackendInfo | None


class SeedEvidence:
    """A capture set plus what the claims need from its manifest, parsed once."""

    def __init__(self, capdir: CaptureDir) -> None:
        m = capdir.manifest
        self.capdir = capdir
        self.svc_ip: str = m["service"]["ip"]
        self.svc_port: int = int(m["service"]["port"])
        self.client_ip: str = m["client"]["ip"]
        self.order: dsropt.OptionOrder = m.get("option_byte_order", "host")
        self.backends = [BackendInfo(b["name"], b["ip"], int(b["port"]), b["node"])
                         for b in m.get("backends", [])]
        self._packets: dict[str, list[Pkt]] = {}

    def packets(self, point: PointFile) -> list[Pkt]:
        if point.name not in self._packets:
            self._packets[point.name] = read_pcap(point.file) if point.file.exists() else []
        return self._packets[point.name]

    def one(self, role: str, host: str | None = None) -> PointFile | None:
        for p in self.capdir.points:
            if p.role == role and (host is None or p.host == host):
                return p
        return None

    @property
    def option_bytes(self) -> bytes:
        return dsropt.encode(self.svc_ip, self.svc_port, self.order)

    def backend_by_ip(self, ip: str) -> BackendInfo | None:
        return next((b for b in self.backends if b.ip == ip), None)

    def from_client(self, p: Pkt, port: int) -> bool:
        return p.src == self.client_ip and p.sport == port

    def to_client(self, p: Pkt, port: int) -> bool:
        return p.dst == self.client_ip and p.dport == port

    @cached_property
    def flows(self) -> list[Flow]:
        client = self.one("client")
        lb = self.one("lb-node")
        if client is None:
            return []
        ports = sorted({p.sport for p in self.packets(client)
                        if p.syn and p.src == self.client_ip and p.dst == self.svc_ip
                        and p.dport == self.svc_port and p.sport is not None})
        flows = []
        for port in ports:
            backend = None
            if lb is not None:
                for p in self.packets(lb):
                    if self.from_client(p, port) and p.syn and p.dst != self.svc_ip:
                        backend = self.backend_by_ip(p.dst)
                        break
            flows.append(Flow(port, backend))
        return flows


def _flow_name(ev: SeedEvidence, flow: Flow) -> str:
    who = flow.backend.name if flow.backend else "?"
    return f"flow {ev.client_ip}:{flow.client_port} -> {who}"


def check_client_session(ev: SeedEvidence) -> ClaimResult:
    r = ClaimResult("client-session", "Client bridge: a normal TCP session with "
                    f"{ev.svc_ip}:{ev.svc_port}, 3-way handshake and FIN teardown")
    point = ev.one("client")
    if point is None:
        r.fail("no capture point with role 'client' in the manifest")
        return r
    if not ev.flows:
        r.fail(f"no SYN from {ev.client_ip} to {ev.svc_ip}:{ev.svc_port} on {point.name}")
    pkts = ev.packets(point)
    for flow in ev.flows:
        name = _flow_name(ev, flow)
        out = [p for p in pkts if ev.from_client(p, flow.client_port)]
        back = [p for p in pkts if ev.to_client(p, flow.client_port)]
        strangers = [p for p in back if (p.src, p.sport) != (ev.svc_ip, ev.svc_port)]
        steps = {
            "SYN": any(p.syn for p in out),
            "SYN+ACK": any(p.synack for p in back),
            "ACK": any(p.flags == "A" for p in out),
            "request": any(p.payload_len > 0 for p in out),
            "response": any(p.payload.startswith(b"HTTP/1.") for p in back),
            "client FIN": any("F" in p.flags for p in out),
            "service FIN": any("F" in p.flags for p in back),
        }
        missing = [k for k, ok in steps.items() if not ok]
        resets = [p for p in out + back if "R" in p.flags]
        if missing:
            r.fail(f"{name}: missing on {point.name}: {', '.join(missing)}")
        if resets:
            r.fail(f"{name}: reset seen: {resets[0].summary()}")
        if strangers:
            r.fail(f"{name}: reply from {strangers[0].src}:{strangers[0].sport}, not the service "
                   f"{ev.svc_ip}:{ev.svc_port}: {strangers[0].summary()}")
        if not (missing or resets or strangers):
            r.note(f"{name}: SYN, SYN+ACK from {ev.svc_ip}:{ev.svc_port}, ACK, request, "
                   f"response, FIN both ways ({len(out) + len(back)} packets)")
    return r


def check_lb_node(ev: SeedEvidence) -> ClaimResult:
    r = ClaimResult("lb-node", "LB node eth0: SYN in; SYN out DNATed to the pod, client kept, "
                    "with the DSR option; ACKs DNATed without it; never a reply")
    point = ev.one("lb-node")
    if point is None:
        r.fail("no capture point with role 'lb-node' in the manifest")
        return r
    if not ev.flows:
        r.fail("no flows (see client-session)")
    pkts = ev.packets(point)
    want = ev.option_bytes
    for flow in ev.flows:
        name = _flow_name(ev, flow)
        mine = [p for p in pkts if ev.from_client(p, flow.client_port)]
        syn_in = next((p for p in mine if p.syn and p.dst == ev.svc_ip
                       and p.dport == ev.svc_port), None)
        syn_out = next((p for p in mine if p.syn and p.dst != ev.svc_ip), None)
        if syn_in is None:
            r.fail(f"{name}: no SYN {ev.client_ip}:{flow.client_port} -> "
                   f"{ev.svc_ip}:{ev.svc_port} arrived on {point.name}")
            continue
        if syn_in.has_dsr_option:
            r.fail(f"{name}: the incoming SYN already carries a DSR option: {syn_in.summary()}")
        if syn_out is None or flow.backend is None:
            r.fail(f"{name}: no DNATed SYN to a backend pod left {point.name}")
            continue
        bad = []
        if (syn_out.dst, syn_out.dport) != (flow.backend.ip, flow.backend.port):
            bad.append(f"destination {syn_out.dst}:{syn_out.dport}, expected "
                       f"{flow.backend.ip}:{flow.backend.port}")
        if syn_out.options[:8] != want:
            bad.append(f"option bytes {syn_out.options.hex(' ') or 'none'}, "
                       f"expected {want.hex(' ')}")
        if syn_out.ihl != 7 or syn_out.ip_len != syn_in.ip_len + 8:
            bad.append(f"IHL {syn_out.ihl} / tot_len {syn_out.ip_len}, expected 7 / "
                       f"{syn_in.ip_len + 8}")
        if not syn_out.ip_csum_ok:
            bad.append("IP header checksum is wrong")
        if syn_out.l4_csum_ok is False:
            bad.append("TCP checksum is wrong after DNAT")
        if syn_out.ttl != syn_in.ttl - 1:
            bad.append(f"TTL {syn_out.ttl}, expected {syn_in.ttl - 1} (one hop)")
        if bad:
            r.fail(f"{name}: DNATed SYN {syn_out.summary()}: " + "; ".join(bad))
        later = [p for p in mine if not p.syn and p.dst == flow.backend.ip]
        if not later:
            r.fail(f"{name}: no later packet (ACK) of the flow was DNATed to {flow.backend.ip}")
        with_opt = [p for p in later if p.has_dsr_option]
        if with_opt:
            r.fail(f"{name}: a non-SYN packet carries the option: {with_opt[0].summary()}")
        replies = [p for p in pkts if ev.to_client(p, flow.client_port)]
        if replies:
            r.fail(f"{name}: the LB node saw a reply (DSR broken): {replies[0].summary()}")
        if not bad and later and not with_opt and not replies:
            r.note(f"{name}: SYN in to {ev.svc_ip}:{ev.svc_port}; SYN out to "
                   f"{flow.backend.ip}:{flow.backend.port} from {ev.client_ip}, option "
                   f"{want.hex(' ')}, IHL 7, TTL {syn_out.ttl}; {len(later)} later packets "
                   "DNATed without option; no reply seen")
    return r


def check_backend_node(ev: SeedEvidence) -> ClaimResult:
    r = ClaimResult("backend-node", "Backend node eth0: the SYN arrives with the option; the "
                    f"SYN+ACK leaves from {ev.svc_ip}:{ev.svc_port} straight to the client")
    if not ev.flows:
        r.fail("no flows (see client-session)")
    for flow in ev.flows:
        name = _flow_name(ev, flow)
        if flow.backend is None:
            r.fail(f"{name}: backend unknown (see lb-node)")
            continue
        point = ev.one("backend-node", flow.backend.node)
        if point is None:
            r.fail(f"{name}: no 'backend-node' capture on {flow.backend.node}")
            continue
        pkts = ev.packets(point)
        syn = next((p for p in pkts if ev.from_client(p, flow.client_port) and p.syn
                    and p.dst == flow.backend.ip), None)
        if syn is None:
            r.fail(f"{name}: the DNATed SYN never reached {point.name}")
        elif syn.options[:8] != ev.option_bytes:
            r.fail(f"{name}: SYN on {point.name} carries option "
                   f"{syn.options.hex(' ') or 'none'}, expected {ev.option_bytes.hex(' ')}")
        replies = [p for p in pkts if ev.to_client(p, flow.client_port)]
        synack = next((p for p in replies if p.synack), None)
        leaked = [p for p in replies if (p.src, p.sport) != (ev.svc_ip, ev.svc_port)]
        if synack is None:
            r.fail(f"{name}: no SYN+ACK to {ev.client_ip}:{flow.client_port} left {point.name}")
        if leaked:
            r.fail(f"{name}: reply left with source {leaked[0].src}:{leaked[0].sport} instead "
                   f"of {ev.svc_ip}:{ev.svc_port}: {leaked[0].summary()}")
        broken = [p for p in replies if not p.ip_csum_ok or p.l4_csum_ok is False]
        if broken:
            r.fail(f"{name}: rewritten reply with a bad checksum: {broken[0].summary()}")
        if syn is not None and synack is not None and not leaked and not broken \
                and syn.options[:8] == ev.option_bytes:
            r.note(f"{name}: on {point.name} SYN in with option {syn.options[:8].hex(' ')}; "
                   f"SYN+ACK out {synack.src}:{synack.sport} > {synack.dst}:{synack.dport}; "
                   f"{len(replies)} replies, all from the service")
    return r


def check_pod(ev: SeedEvidence) -> ClaimResult:
    r = ClaimResult("pod", "Pod eth0: the SYN arrives with the option still present and the "
                    "client's source address")
    if not ev.flows:
        r.fail("no flows (see client-session)")
    for flow in ev.flows:
        name = _flow_name(ev, flow)
        if flow.backend is None:
            r.fail(f"{name}: backend unknown (see lb-node)")
            continue
        point = ev.one("pod", flow.backend.name)
        if point is None:
            r.fail(f"{name}: no 'pod' capture for {flow.backend.name}")
            continue
        syn = next((p for p in ev.packets(point) if p.syn and p.sport == flow.client_port
                    and p.dst == flow.backend.ip), None)
        if syn is None:
            r.fail(f"{name}: no SYN reached {point.name}")
        elif syn.src != ev.client_ip:
            r.fail(f"{name}: SYN source {syn.src}, expected the client {ev.client_ip}")
        elif syn.options[:8] != ev.option_bytes:
            r.fail(f"{name}: SYN option {syn.options.hex(' ') or 'none'} on {point.name}, "
                   f"expected {ev.option_bytes.hex(' ')}")
        else:
            r.note(f"{name}: on {point.name} SYN from {syn.src}:{syn.sport} with option "
                   f"{syn.options[:8].hex(' ')} (service {ev.svc_ip}:{ev.svc_port})")
    return r


def check_all_backends(ev: SeedEvidence) -> ClaimResult:
    r = ClaimResult("all-backends", "Random selection reached every backend of the service")
    hit = {f.backend.name for f in ev.flows if f.backend}
    for b in ev.backends:
        n = sum(1 for f in ev.flows if f.backend and f.backend.name == b.name)
        if b.name in hit:
            r.note(f"{b.name} ({b.ip}) served {n} of {len(ev.flows)} flows")
        else:
            r.fail(f"{b.name} ({b.ip}) served none of {len(ev.flows)} flows")
    if not ev.backends:
        r.fail("the manifest lists no backends")
    return r


SEED_CLAIMS = (check_client_session, check_lb_node, check_backend_node, check_pod,
               check_all_backends)


def check_seed(capdir: CaptureDir) -> list[ClaimResult]:
    """All seed claims on one capture set, in the write-up's order."""
    ev = SeedEvidence(capdir)
    return [check(ev) for check in SEED_CLAIMS]
