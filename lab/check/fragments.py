"""Why a fragmented answer never reached the client whole: only its first
fragment was translated.

A rule over a capture set, beside :mod:`lab.check.diagnose`'s. A UDP answer
bigger than the MTU leaves the pod in fragments, and only the first carries
the UDP header with the ports a reverse translation is looked up by. A
datapath that does not track fragments rewrites that one to the service
address and lets the later ones leave from the pod's own address: the
client cannot put the datagram together (its pieces have two sources) and
drops them all when its reassembly times out. The rule finds, at each
backend's node, later fragments from a backend's address to the client whose
IP ID is that of a first fragment sent from the service address, and names
the node, the pod's address, the service and the count. (Cilium, and the
lab's datapath since it was checked against Cilium's, drop every fragment
without tracking instead, which :mod:`lab.check.datapath_drops` names; this
rule is for captures of a datapath that translates first fragments only.)
"""

from __future__ import annotations

from lab.capture.capdir import CaptureDir
from lab.check.diagnosis import Diagnosis
from lab.wire.packets import Pkt


def diagnose_fragments(cd: CaptureDir) -> list[Diagnosis]:
    svc, client_ip = cd.service, cd.client_ip
    if not svc.ip:
        return []
    backend_ips = {b.ip for b in cd.manifest.backends}
    service = f"{svc.ip}:{svc.port}"
    found: dict[str, Diagnosis] = {}
    for point in cd.by_role("backend-node"):
        pieces = [p for p in cd.packets(point) if _answer_piece(p, client_ip)]
        firsts = {p.ip_id: p for p in pieces
                  if p.src == svc.ip and p.frag_offset == 0 and p.more_fragments}
        stray = [p for p in pieces
                 if p.frag_offset > 0 and p.src in backend_ips and p.ip_id in firsts]
        for pod_ip in sorted({p.src for p in stray}):
            answers = {p.ip_id for p in stray if p.src == pod_ip}
            line = (f"backend node {point.host} sent the later fragments of "
                    f"{_count(len(answers), 'answer')} from the pod's address {pod_ip} "
                    f"instead of {service}: only the first fragment, which carries the UDP "
                    "header, was translated, so the client cannot put the answer together "
                    f"({_tracking(cd)})")
            d = found.setdefault(line, Diagnosis("fragments-untranslated", line))
            for ip_id in sorted(answers):
                flow = f"{client_ip}:{firsts[ip_id].dport}"
                if flow not in d.flows:
                    d.flows.append(flow)
    return sorted(found.values(), key=lambda d: -len(d.flows))


def _answer_piece(p: Pkt, client_ip: str) -> bool:
    return p.dst == client_ip and p.proto == "udp" and p.is_fragment


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("s" if n != 1 else "")


def _tracking(cd: CaptureDir) -> str:
    if cd.manifest.fragment_tracking is False:
        return ("IPv4 fragment tracking is off; Cilium's enable-ipv4-fragment-tracking, "
                "Helm fragmentTracking, turns it on")
    return ("the datapath did not track the datagram's fragments: Cilium's "
            "enable-ipv4-fragment-tracking, Helm fragmentTracking")
