"""Hand-built capture sets of the seed flow (two flows, one per pod), right
or broken in one chosen way: the classic broken-DSR symptoms (:func:`build`);
and one download segment by segment, complete, lossy, stalled at a chosen hop,
reset or closed early (:func:`download`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scapy.layers.inet import IP, TCP, IPOption
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from lab.capture.capdir import CaptureDir
from lab.capture.layout import Role
from lab.capture.live import CapturePoint
from lab.capture.manifest import Manifest, ManifestBackend, ManifestClient, ManifestService
from tests.capset import write_capture_set
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
    # the client's RST: "mid-session" (after the response, before the service's FIN:
    # a reset session), "after-teardown" (after both FINs: its answer to a stray
    # segment that crossed the teardown, as a loaded host's veth can reorder)
    client_reset: Literal["", "mid-session", "after-teardown"] = ""
    # every pcap starts with frames that are not IPv4 (an ARP who-has and its reply, an
    # IPv6 neighbour solicitation), as a real capture does: Wireshark numbers them too
    arp: bool = False


_IP_IDS = itertools.count(1)


def _p(src: str, dst: str, sport: int, dport: int, flags: str, *, opt: bytes = b"",
       ttl: int = 64, load: bytes = b"", ident: int | None = None) -> Packet:
    """One packet, with its own IP ID unless ``ident`` gives it (the same packet at
    another hop: a datapath that rewrites addresses keeps it; a retransmission is
    another packet)."""
    ip = IP(src=src, dst=dst, ttl=ttl, id=next(_IP_IDS) % 65536 if ident is None else ident,
            options=[IPOption(opt)] if opt else [])
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
        rst = _p(CLIENT, SVC, eph, SVC_PORT, "R")
        hops["client"] += [c_syn, synack_out, c_ack, req, resp,
                           *([rst] if brk.client_reset == "mid-session" else []), *fins,
                           *([rst] if brk.client_reset == "after-teardown" else [])]
        hops[LB_NAME] += [c_syn, fwd_syn, c_ack, fwd_ack, req, fwd_req]
        if brk.lb_sees_reply:
            hops[LB_NAME].append(synack_out)
        hops[node] += [fwd_syn, synack_out, fwd_ack, fwd_req, resp]
        hops[pod] += [fwd_syn, synack_pod, fwd_ack, fwd_req]
    if brk.arp:
        for pkts in hops.values():
            pkts[:0] = _not_ipv4()
    return _write_set(tmp, hops, scenario="seed")


def _not_ipv4() -> list[Packet]:
    """What a capture holds besides IPv4: ARP, and IPv6 neighbour discovery."""
    who_has = Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc=CLIENT, pdst=SVC)
    is_at = Ether() / ARP(op=2, psrc=SVC, pdst=CLIENT)
    ns = Ether() / IPv6(dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="fe80::1")
    return [Ether(bytes(p)) for p in (who_has, is_at, ns)]


# -- one download, segment by segment, right or broken after the handshake -------------

T0 = 1000.0  # the client's SYN
TICK = 0.001  # between one segment and the next
MSS = 1000
C_ISN, S_ISN = 1000, 5000
REQUEST = b"GET /bytes/N HTTP/1.1\r\nHost: x\r\n\r\n"
BreakAt = Literal["pod-node", "node-client", "acks", "silent"]
End = Literal["fin", "rst", "client-fin", "none", "refused"]


@dataclass(frozen=True)
class Download:
    """A download of ``segments`` data segments (the HTTP head in the first) from POD,
    through the LB node, by DSR.

    ``stop`` segments get through; then, at ``break_at``, the rest vanish (the sender
    sends ``more`` segments after the stall: retransmissions of the first missing one),
    and the flow ends as ``end`` says (``refused``: the SYN is answered with an RST).
    ``lost`` segments vanish between the pod and its node the first time and are sent
    again at once (a lossy link). ``end_after``: seconds from the last packet before
    the end to the end; ``pause``: (segment, seconds) the sender pauses before it
    (a loaded machine).
    """

    segments: int = 20
    stop: int | None = None  # None: every segment gets through
    break_at: BreakAt = "pod-node"
    more: int = 3
    end: End = "fin"
    lost: frozenset[int] = frozenset()
    fin_with_data: bool = False  # the last data segment carries the FIN (end "fin")
    end_after: float = 0.5
    pause: tuple[int, float] | None = None

    @property
    def head(self) -> bytes:
        body = self.segments * MSS - len(self._head(0))
        return self._head(body)

    @staticmethod
    def _head(body: int) -> bytes:
        return f"HTTP/1.0 200 OK\r\nContent-Length: {body:06d}\r\n\r\n".encode()


def _at(t: float, pkt: Packet) -> Packet:
    pkt.time = t
    return pkt


def download(tmp: Path, d: Download = Download()) -> CaptureDir:
    """Write the capture set of ``d`` into ``tmp`` (client, LB node, POD's node, POD)."""
    eph, svc_port, pod_port = 40000, int(SVC_PORT or 0), int(POD_PORT or 0)
    hops: dict[str, list[Packet]] = {k: [] for k in ("client", LB_NAME, POD_NODE, POD_NAME)}
    t = T0

    def up(flags: str, seq: int, ack: int, load: bytes = b"", *, to: tuple[str, ...] = (
            "client", LB_NAME, POD_NODE, POD_NAME)) -> None:
        """A client packet along its path: the client, the LB node in and out, the
        backend's node, the pod (``to``: how far it gets)."""
        opt = OPT if flags == "S" else b""
        ident = next(_IP_IDS) % 65536
        c = _p(CLIENT, SVC, eph, svc_port, flags, load=load, ident=ident)
        fwd = _p(CLIENT, POD_IP, eph, pod_port, flags, opt=opt, ttl=63, load=load, ident=ident)
        for pkt in (c, fwd):
            pkt[TCP].seq, pkt[TCP].ack = seq, ack
        c, fwd = Ether(bytes(c)), Ether(bytes(fwd))
        if "client" in to:
            hops["client"].append(_at(t, c))
        if LB_NAME in to:
            hops[LB_NAME] += [_at(t, c.copy()), _at(t, fwd.copy())]
        for host in (POD_NODE, POD_NAME):
            if host in to:
                hops[host].append(_at(t, fwd.copy()))

    def down(flags: str, seq: int, ack: int, load: bytes = b"", *, to: tuple[str, ...] = (
            POD_NAME, POD_NODE, "client")) -> None:
        """A pod packet along its path: the pod, its node (translated), the client."""
        ident = next(_IP_IDS) % 65536
        at_pod = _p(POD_IP, CLIENT, pod_port, eph, flags, load=load, ident=ident)
        out = _p(SVC, CLIENT, svc_port, eph, flags, load=load, ttl=63, ident=ident)
        for pkt in (at_pod, out):
            pkt[TCP].seq, pkt[TCP].ack = seq, ack
        at_pod, out = Ether(bytes(at_pod)), Ether(bytes(out))
        if POD_NAME in to:
            hops[POD_NAME].append(_at(t, at_pod))
        for host in (POD_NODE, "client"):
            if host in to:
                hops[host].append(_at(t, out.copy()))

    up("S", C_ISN, 0)
    t += TICK
    if d.end == "refused":  # nothing listens: the pod answers the SYN with an RST
        down("RA", 0, C_ISN + 1)
        return _write_set(tmp, hops)
    down("SA", S_ISN, C_ISN + 1)
    t += TICK
    up("A", C_ISN + 1, S_ISN + 1)
    up("PA", C_ISN + 1, S_ISN + 1, REQUEST)
    c_next = C_ISN + 1 + len(REQUEST)
    data = d.head + bytes(d.segments * MSS - len(d.head))
    stop = d.segments if d.stop is None else d.stop
    for i in range(stop):
        t += TICK + (d.pause[1] if d.pause is not None and d.pause[0] == i else 0.0)
        seq = S_ISN + 1 + i * MSS
        load = data[i * MSS:(i + 1) * MSS]
        if i in d.lost:
            down("A", seq, c_next, load, to=(POD_NAME,))
            t += TICK
        last = d.fin_with_data and d.end == "fin" and i == stop - 1
        down("FPA" if last else "A", seq, c_next, load)
        up("A", c_next, seq + MSS + last)
    s_next = S_ISN + 1 + stop * MSS
    if d.stop is not None:  # the stall: what is seen of the rest, and where
        for k in range(d.more):
            t += 0.2 * (k + 1)
            load = data[stop * MSS:(stop + 1) * MSS]
            if d.break_at == "pod-node":
                down("A", s_next, c_next, load, to=(POD_NAME,))
            elif d.break_at == "node-client":
                down("A", s_next, c_next, load, to=(POD_NAME, POD_NODE))
            elif d.break_at == "acks":  # the data arrives, the acknowledgements stop
                down("A", s_next - MSS, c_next, data[(stop - 1) * MSS:stop * MSS])
                up("A", c_next, s_next, to=("client",))
            else:  # silent: only the client's window updates, which reach the pod
                up("A", c_next, s_next)
    t += d.end_after
    if d.end == "fin" and d.fin_with_data:
        up("FA", c_next, s_next + 1)
    elif d.end == "fin":
        down("FA", s_next, c_next)
        up("A", c_next, s_next + 1)
        up("FA", c_next, s_next + 1)
    elif d.end == "rst":
        down("R", s_next, 0)
    elif d.end == "client-fin":
        up("FA", c_next, s_next)
    return _write_set(tmp, hops)


def _write_set(tmp: Path, hops: dict[str, list[Packet]], *,
               scenario: str = "transfer") -> CaptureDir:
    """One pcap per hop and the manifest naming them: a capture set as a run writes."""
    roles: dict[str, Role] = {"client": "client", LB_NAME: "lb-node", POD_NODE: "backend-node",
                              POD2_NODE: "backend-node", POD_NAME: "pod", POD2_NAME: "pod"}
    frames = {CapturePoint(host, "br-kind" if host == "client" else "eth0", roles[host]): pkts
              for host, pkts in hops.items()}
    manifest = Manifest(scenario=scenario, run_id="abcdef", backend="netns",
                        service=ManifestService(ip=SVC, port=SVC_PORT),
                        client=ManifestClient(ip=CLIENT), option_byte_order="host",
                        backends=[ManifestBackend(name=n, ip=ip, port=POD_PORT, node=node)
                                  for n, (ip, node) in PODS.items()])
    return CaptureDir.load(write_capture_set(tmp, frames, manifest))
