"""Frames and checks for the datapath's program-level tests (BPF_PROG_TEST_RUN).

The frames are the seed's (tests/seed.py): the client's packets to the
NodePort as the LB node receives them, and DNATed SYNs as they reach the
backend node. :class:`Node` is a loaded object plus the namespace its test
runs pretend to be on (the fixtures are in tests/datapath/conftest.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP, UDP, fragment, in4_chksum
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum

from lab.datapath import DatapathObject, TestRunResult
from lab.plumbing import nsutil
from lab.plumbing.names import netns_name, new_run_id
from tests.seed import (
    CLIENT_IP,
    CLIENT_MAC,
    CLIENT_PORT,
    LB_MAC,
    NODE_PORT,
    POD_IP,
    POD_PORT,
    VIP,
    WORKER_MAC,
)

NEIGH_PERMANENT = 0x80


@dataclass
class Node:
    """A loaded datapath plus the namespace/interface its test runs pretend to be on."""

    dp: DatapathObject
    netns: str
    ifindex: int

    def run(self, program: str, frame: bytes, repeat: int = 1) -> TestRunResult:
        with nsutil.in_netns(self.netns):
            return self.dp.test_run(
                program, frame, repeat=repeat, ifindex=self.ifindex
            )

    def lb(self, frame: bytes) -> TestRunResult:
        return self.run("dsr_from_netdev", frame)

    def egress(self, frame: bytes) -> TestRunResult:
        return self.run("dsr_to_netdev", frame)


def scratch_name(tag: str) -> str:
    return netns_name(new_run_id(), tag)


# --- frames ----------------------------------------------------------------------


def tcp_frame(
    flags: str = "S",
    *,
    sport: int = CLIENT_PORT,
    dst: str = VIP,
    dport: int = NODE_PORT,
    options: Sequence[object] = (),
    payload: bytes = b"",
) -> bytes:
    """The client's TCP segment to the NodePort, as the LB node's eth0 receives it."""
    ip = IP(src=CLIENT_IP, dst=dst, ttl=64, id=7, options=list(options))
    frame = (
        Ether(src=CLIENT_MAC, dst=LB_MAC)
        / ip
        / TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if "A" in flags else 0)
    )
    if payload:
        frame = frame / Raw(payload)
    return bytes(frame)


def udp_frame(sport: int = CLIENT_PORT, dport: int = NODE_PORT, payload: bytes = b"ping") -> bytes:
    frame = (
        Ether(src=CLIENT_MAC, dst=LB_MAC)
        / IP(src=CLIENT_IP, dst=VIP, ttl=64)
        / UDP(sport=sport, dport=dport)
    )
    return bytes(frame / Raw(payload))


def udp_fragments(payload: bytes, *, src: str = CLIENT_IP, dst: str = VIP,
                  sport: int = CLIENT_PORT, dport: int = NODE_PORT, ip_id: int = 4242,
                  frag_size: int = 1000) -> list[IP]:
    """A UDP datagram cut into IPv4 fragments of ``frag_size`` data bytes by scapy, its
    checksum computed over the whole datagram first (as a sender's kernel does)."""
    whole = IP(src=src, dst=dst, id=ip_id, ttl=64) / UDP(sport=sport, dport=dport) / Raw(payload)
    return list(fragment(IP(bytes(whole)), fragsize=frag_size))


def splice_ip_options(frame: bytes, raw_opts: bytes) -> bytes:
    """``frame`` (IHL 5) with ``raw_opts`` inserted after the base header, header fixed."""
    assert len(raw_opts) % 4 == 0
    assert frame[14] == 0x45
    out = bytearray(frame[:34] + raw_opts + frame[34:])
    out[14] = 0x40 | (5 + len(raw_opts) // 4)
    out[16:18] = (int.from_bytes(frame[16:18], "big") + len(raw_opts)).to_bytes(2, "big")
    out[24:26] = b"\0\0"
    out[24:26] = checksum(bytes(out[14 : 34 + len(raw_opts)])).to_bytes(2, "big")
    return bytes(out)


def backend_syn(opt: bytes | None, flags: str = "S", extra: bytes = b"") -> bytes:
    """A DNATed SYN as it reaches the backend node, with ``opt`` as its first option."""
    pkt = (
        Ether(src=WORKER_MAC, dst=LB_MAC)
        / IP(src=CLIENT_IP, dst=POD_IP, ttl=63)
        / TCP(sport=CLIENT_PORT, dport=POD_PORT, flags=flags)
    )
    return splice_ip_options(bytes(pkt), (opt or b"") + extra)


# --- checks ------------------------------------------------------------------------


def ip_header(frame: bytes) -> bytes:
    ihl = (frame[14] & 0x0F) * 4
    return frame[14 : 14 + ihl]


def assert_checksums_valid(frame: bytes) -> None:
    """IPv4 header checksum and the L4 checksum over the pseudo-header, both by scapy
    (independent of lab.wire.checksum)."""
    ip = Ether(frame)[IP]
    assert checksum(ip_header(frame)) == 0, "IPv4 header checksum is wrong"
    ihl = ip.ihl * 4
    l4 = frame[14 + ihl : 14 + ip.len]
    if ip.proto == 17 and l4[6:8] == b"\0\0":
        return  # UDP without checksum
    assert in4_chksum(ip.proto, ip, l4) == 0, f"{ip.proto} checksum is wrong"


def ct_backend(dp: DatapathObject, sport: int = CLIENT_PORT) -> str:
    (entry,) = [e for e in dp.ct_entries() if e.client_port == sport]
    return entry.backend_ip
