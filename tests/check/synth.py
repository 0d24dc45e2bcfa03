"""Hand-built capture sets of the seed flow (two flows, one per pod), right
or broken in one chosen way: the classic broken-DSR symptoms."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, IPOption
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from lab.capture.capdir import CaptureDir
from tests.seed import (
    CLIENT_IP,
    LB_NAME,
    NODE_PORT,
    OPTION,
    POD2_IP,
    POD2_NAME,
    POD2_NODE,
    POD_IP,
    POD_NAME,
    POD_NODE,
    POD_PORT,
    VIP,
)

CLIENT, SVC, SVC_PORT, OPT = CLIENT_IP, VIP, NODE_PORT, OPTION
PODS = {POD_NAME: (POD_IP, POD_NODE), POD2_NAME: (POD2_IP, POD2_NODE)}


@dataclass(frozen=True)
class Breakage:
    lb_sees_reply: bool = False
    option: bytes = OPT
    synack_src: str | None = None  # None: the service (correct)
    option_on_ack: bool = False
    no_fin: bool = False


def _p(src: str, dst: str, sport: int, dport: int, flags: str, *, opt: bytes = b"",
       ttl: int = 64, load: bytes = b"") -> Packet:
    ip = IP(src=src, dst=dst, ttl=ttl, options=[IPOption(opt)] if opt else [])
    pkt = Ether() / ip / TCP(sport=sport, dport=dport, flags=flags)
    if load:
        pkt = pkt / Raw(load)
    return Ether(bytes(pkt))  # freeze lengths and checksums


def build(tmp: Path, brk: Breakage = Breakage()) -> CaptureDir:
    hops: dict[str, list[Packet]] = {k: [] for k in (
        "client", LB_NAME, POD_NODE, POD2_NODE, POD_NAME, POD2_NAME)}
    for i, (pod, (pod_ip, node)) in enumerate(PODS.items()):
        eph = 40000 + i
        synack_src = brk.synack_src or SVC
        c_syn = _p(CLIENT, SVC, eph, SVC_PORT, "S")
        fwd_syn = _p(CLIENT, pod_ip, eph, POD_PORT, "S", opt=brk.option, ttl=63)
        synack_pod = _p(pod_ip, CLIENT, POD_PORT, eph, "SA")
        synack_out = _p(synack_src, CLIENT, SVC_PORT if synack_src == SVC else POD_PORT, eph,
                        "SA")
        c_ack = _p(CLIENT, SVC, eph, SVC_PORT, "A")
        fwd_ack = _p(CLIENT, pod_ip, eph, POD_PORT, "A", opt=OPT if brk.option_on_ack else b"",
                     ttl=63)
        req = _p(CLIENT, SVC, eph, SVC_PORT, "PA", load=b"GET / HTTP/1.1\r\n\r\n")
        fwd_req = _p(CLIENT, pod_ip, eph, POD_PORT, "PA", load=b"GET / HTTP/1.1\r\n\r\n", ttl=63)
        resp = _p(SVC, CLIENT, SVC_PORT, eph, "PA", load=b"HTTP/1.0 200 OK\r\n\r\nPodName")
        fins = [] if brk.no_fin else [_p(SVC, CLIENT, SVC_PORT, eph, "FA"),
                                     _p(CLIENT, SVC, eph, SVC_PORT, "FA")]
        hops["client"] += [c_syn, synack_out, c_ack, req, resp, *fins]
        hops[LB_NAME] += [c_syn, fwd_syn, c_ack, fwd_ack, req, fwd_req]
        if brk.lb_sees_reply:
            hops[LB_NAME].append(synack_out)
        hops[node] += [fwd_syn, synack_out, fwd_ack, fwd_req, resp]
        hops[pod] += [fwd_syn, synack_pod, fwd_ack, fwd_req]
    roles = {"client": "client", LB_NAME: "lb-node",
             POD_NODE: "backend-node", POD2_NODE: "backend-node",
             POD_NAME: "pod", POD2_NAME: "pod"}
    points = []
    for host, pkts in hops.items():
        ifname = "br-kind" if host == "client" else "eth0"
        wrpcap(str(tmp / f"{host}.pcap"), pkts)
        points.append({"name": f"{host}/{ifname}", "host": host, "ifname": ifname,
                       "role": roles[host], "file": f"{host}.pcap"})
    manifest = {"scenario": "seed", "run_id": "abcdef", "backend": "netns",
                "service": {"ip": SVC, "port": SVC_PORT}, "client": {"ip": CLIENT},
                "option_byte_order": "host",
                "backends": [{"name": n, "ip": ip, "port": POD_PORT, "node": node}
                             for n, (ip, node) in PODS.items()],
                "points": points}
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    return CaptureDir.load(tmp)
