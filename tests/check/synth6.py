"""Hand-built capture sets of IPv6 DSR and of Geneve dispatch, on the real wire bytes.

The bytes are written here, not made by the lab's codec (:mod:`lab.wire.dsropt`):
the tests check the codec against them.

The IPv6 flow is Cilium's own test vector (``tc_nodeport_lb6_dsr_lb``): client
[100::]:111, service [200::]:80, backend [300::]:8080; the backend node sees the
SYN with the Destination Options header ``06 02 1b 14`` + the service address +
``00 50`` + ``00 00`` (payload length 20 -> 44 for a bare SYN, the TCP checksum
unchanged: extension headers are not in it), and answers from [200::]:80.
The Geneve flow is Cilium >= 1.14's Geneve dispatch: the LB node encapsulates the
DNATed SYN (outer IPv4/UDP 6081/Geneve, option class 0x014B type 0x81) to the
backend's node; the reply goes straight to the client, from the service.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from lab.capture.capdir import CaptureDir
from lab.capture.layout import Role
from lab.capture.live import CapturePoint
from lab.capture.manifest import Manifest, ManifestBackend, ManifestClient, ManifestService
from tests.capset import write_capture_set

# Cilium's IPv6 test vector
CLIENT6, SVC6, POD6 = "100::", "200::", "300::"
CPORT6, SVC_PORT6, POD_PORT6 = 111, 80, 8080
DEST_OPT = bytes.fromhex("06021b14" "0200" + "00" * 14 + "0050" "0000")  # the header, whole

# Geneve dispatch on the seed's addresses
CLIENT4, SVC4, POD4 = "172.18.0.1", "172.18.0.2", "10.0.2.123"
LB_NODE4, POD_NODE4 = "172.18.0.2", "172.18.0.3"
CPORT4, SVC_PORT4, POD_PORT4 = 40000, 32000, 80
GENEVE_OPT4 = bytes.fromhex("014b8102" "ac120002" "7d00" "0000")  # 172.18.0.2:32000
# [200::]:80: class 0x014b, type 0x81, 5 words: the address, the port, 2 pad bytes
GENEVE_OPT6 = bytes.fromhex("014b8105" "0200" + "00" * 14 + "0050" "0000")
NEXTHDR_DEST = 60
VNI = 2  # Cilium puts the source's security identity here
LB, NODE, POD = "cilium-dsr-control-plane", "cilium-dsr-worker", "cni-pod6"
_CLOCK = itertools.count()  # every packet made is one tick later than the one before


def _stamp(pkt: Packet) -> Packet:
    """``pkt`` timed when it was made: the flow's packets are made in the order they
    happen (a packet seen at several hops is one object, one time)."""
    pkt.time = 1000.0 + next(_CLOCK) * 0.001
    return pkt


def with_dest_opt(pkt: Packet, opt: bytes = DEST_OPT) -> Packet:
    """``pkt`` (Ether/IPv6/L4, checksums final) with a Destination Options header after
    its IPv6 header, as the LB node inserts it: next header 60, payload length += 24."""
    raw = bytearray(bytes(pkt))
    ip = 14
    l4_nh = raw[ip + 6]
    raw[ip + 6] = NEXTHDR_DEST
    plen = int.from_bytes(raw[ip + 4:ip + 6], "big") + len(opt)
    raw[ip + 4:ip + 6] = plen.to_bytes(2, "big")
    ext = bytes((l4_nh,)) + opt[1:]
    return _stamp(Ether(bytes(raw[:ip + 40]) + ext + bytes(raw[ip + 40:])))


def geneve(inner: Packet, *, src: str = LB_NODE4, dst: str = POD_NODE4,
           options: bytes = GENEVE_OPT4, sport: int = 51234) -> Packet:
    """``inner`` (an Ethernet frame) encapsulated node to node: outer Ethernet, IPv4,
    UDP to 6081, a Geneve header with ``options``."""
    # version 0, options length in words, no flags, Ethernet inside (0x6558), the VNI
    gen = bytes((len(options) // 4, 0)) + b"\x65\x58" + VNI.to_bytes(3, "big") + b"\0" + options
    pkt = Ether() / IP(src=src, dst=dst, ttl=64) / UDP(sport=sport, dport=6081) / Raw(
        gen + bytes(inner))
    return _stamp(Ether(bytes(pkt)))


def _p6(src: str, dst: str, sport: int, dport: int, flags: str, *, hlim: int = 64,
        load: bytes = b"") -> Packet:
    pkt = Ether() / IPv6(src=src, dst=dst, hlim=hlim) / TCP(sport=sport, dport=dport,
                                                             flags=flags, seq=1000)
    if load:
        pkt = pkt / Raw(load)
    return _stamp(Ether(bytes(pkt)))


def _p4(src: str, dst: str, sport: int, dport: int, flags: str, *, ttl: int = 64,
        ident: int = 1) -> Packet:
    return _stamp(Ether(bytes(Ether() / IP(src=src, dst=dst, ttl=ttl, id=ident) / TCP(
        sport=sport, dport=dport, flags=flags, seq=2000))))


@dataclass(frozen=True)
class Broken:
    """How a flow breaks: the reply from the pod's own address, an RST, or no reply."""

    reply_from_pod: bool = False
    rst: bool = False
    no_reply: bool = False


WORKING = Broken()  # nothing broken

def ipv6_set(tmp: Path, brk: Broken = Broken()) -> CaptureDir:
    """An IPv6 DSR flow hop by hop (client, LB node, backend node, pod)."""
    c_syn = _p6(CLIENT6, SVC6, CPORT6, SVC_PORT6, "S")
    fwd = with_dest_opt(_p6(CLIENT6, POD6, CPORT6, POD_PORT6, "S", hlim=63))
    at_pod = _p6(POD6, CLIENT6, POD_PORT6, CPORT6, "RA" if brk.rst else "SA")
    if brk.reply_from_pod or brk.rst:
        out = _p6(POD6, CLIENT6, POD_PORT6, CPORT6, "RA" if brk.rst else "SA", hlim=63)
    else:
        out = _p6(SVC6, CLIENT6, SVC_PORT6, CPORT6, "SA", hlim=63)
    c_ack = _p6(CLIENT6, SVC6, CPORT6, SVC_PORT6, "A")
    fwd_ack = _p6(CLIENT6, POD6, CPORT6, POD_PORT6, "A", hlim=63)
    replies = [] if brk.no_reply else [out]
    hops = {"client": [c_syn, *replies, c_ack], LB: [c_syn, fwd, c_ack, fwd_ack],
            NODE: [fwd, *replies, fwd_ack], POD: [fwd, *([] if brk.no_reply else [at_pod]),
                                                  fwd_ack]}
    return write_set(tmp, hops, client=CLIENT6, service=(SVC6, SVC_PORT6),
                     backend=(POD6, POD_PORT6))


def geneve_set(tmp: Path, brk: Broken = Broken()) -> CaptureDir:
    """A Geneve-dispatched IPv4 DSR flow hop by hop: the LB node's SYN leaves
    encapsulated, the backend's node sees it so, the pod sees the inner packet."""
    c_syn = _p4(CLIENT4, SVC4, CPORT4, SVC_PORT4, "S", ident=7)
    inner = _p4(CLIENT4, POD4, CPORT4, POD_PORT4, "S", ttl=63, ident=7)
    enc = geneve(inner)
    pod_syn = _stamp(inner.copy())  # decapsulated on the backend's node, then at the pod
    src, sport = (POD4, POD_PORT4) if brk.reply_from_pod or brk.rst else (SVC4, SVC_PORT4)
    flags = "RA" if brk.rst else "SA"
    at_pod = _p4(POD4, CLIENT4, POD_PORT4, CPORT4, flags, ident=9)
    out = _p4(src, CLIENT4, sport, CPORT4, flags, ttl=63, ident=9)
    replies = [] if brk.no_reply else [out]
    c_ack = _p4(CLIENT4, SVC4, CPORT4, SVC_PORT4, "A", ident=8)
    inner_ack = _p4(CLIENT4, POD4, CPORT4, POD_PORT4, "A", ttl=63, ident=8)
    enc_ack = geneve(inner_ack, options=b"")  # later packets: encapsulated, no option
    pod_ack = _stamp(inner_ack.copy())
    hops = {"client": [c_syn, *replies, c_ack], LB: [c_syn, enc, c_ack, enc_ack],
            NODE: [enc, *replies, enc_ack],
            POD: [pod_syn, *([] if brk.no_reply else [at_pod]), pod_ack]}
    return write_set(tmp, hops, client=CLIENT4, service=(SVC4, SVC_PORT4),
                     backend=(POD4, POD_PORT4))


def write_set(tmp: Path, hops: dict[str, list[Packet]], *, client: str,
              service: tuple[str, int], backend: tuple[str, int]) -> CaptureDir:
    """One pcap per hop and the manifest naming them."""
    roles: dict[str, Role] = {"client": "client", LB: "lb-node", NODE: "backend-node",
                              POD: "pod"}
    for pkts in hops.values():
        pkts.sort(key=lambda p: float(p.time))
    frames = {CapturePoint(host, "br-kind" if host == "client" else "eth0", roles[host]): pkts
              for host, pkts in hops.items()}
    manifest = Manifest(scenario="dsr6", run_id="abcdef", backend="netns",
                        service=ManifestService(ip=service[0], port=service[1]),
                        client=ManifestClient(ip=client), option_byte_order="host",
                        backends=[ManifestBackend(name=POD, ip=backend[0], port=backend[1],
                                                  node=NODE)])
    return CaptureDir.load(write_capture_set(tmp, frames, manifest))
