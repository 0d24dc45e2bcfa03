"""What the ingress program drops, and what both programs leave alone.

Malformed IPv4 is dropped with its reason (and never rewritten by either
program); foreign traffic (ARP, IPv6, ICMP, a later fragment of a datagram
not seen) passes untouched; a service without backends and options too long
for the DSR option are dropped; a frame the kernel refuses never reaches the
program. Fragments in full: test_fragments.py.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from lab.datapath import BackendEntry, DatapathError
from tests.datapath.frames import Node, ip_header, tcp_frame
from tests.seed import CLIENT_IP, CLIENT_MAC, LB_MAC, NODE_PORT, POD_IP, POD_PORT, VIP

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


def test_service_without_backends_drops(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[])
    frame = tcp_frame("S")
    res = node.lb(frame)
    assert (res.verdict, res.drop_reason) == ("shot", "no_backend")
    assert res.data == frame


def test_options_too_long_for_the_dsr_option_are_dropped(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    frame = tcp_frame("S", options=[IPOption_RR(routers=["0.0.0.0"] * 8), IPOption_NOP()])
    assert len(ip_header(frame)) == 56  # 36 bytes of options
    res = node.lb(frame)
    assert res.verdict == "shot"
    assert res.drop_reason == "opt_too_long"
    assert res.data == frame
    assert node.dp.counters()["drop_opt_too_long"] == 1
    assert node.dp.ct_entries() == []


# --- malformed and foreign input ---------------------------------------------------


def _mangled(offset: int, value: bytes, cut: int | None = None) -> bytes:
    frame = bytearray(tcp_frame("S"))
    frame[offset : offset + len(value)] = value
    return bytes(frame[:cut] if cut is not None else frame)


MALFORMED = {
    "ip-header-only": (tcp_frame("S")[: 14 + 20], "bad_tot_len"),
    "ihl-3": (_mangled(14, b"\x43"), "bad_ihl"),
    "ihl-15-beyond-buffer": (_mangled(14, b"\x4f"), "bad_ihl"),
    "tot-len-beyond-buffer": (_mangled(16, b"\x05\xdc"), "bad_tot_len"),
    "tot-len-below-ihl": (_mangled(16, b"\x00\x10"), "bad_ihl"),
    "truncated-tcp": (_mangled(16, b"\x00\x1e", cut=14 + 30), "truncated_l4"),
    "version-6-in-ipv4-frame": (_mangled(14, b"\x65"), "bad_version"),
}


@pytest.mark.parametrize("program", ["dsr_from_netdev", "dsr_to_netdev"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_ipv4_is_never_rewritten(node: Node, program: str, case: str) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    frame, reason = MALFORMED[case]
    res = node.run(program, frame)
    assert res.data == frame
    if program == "dsr_from_netdev":
        assert (res.verdict, res.drop_reason) == ("shot", reason)
        assert node.dp.counters()[f"drop_{reason}"] == 1
    else:
        assert res.verdict == "ok"
    assert node.dp.ct_entries() == []


NOT_OURS = {
    "arp": bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT_IP, pdst=VIP)),
    "ipv6": bytes(
        Ether(src=CLIENT_MAC, dst=LB_MAC) / IPv6(src="fd00::1", dst="fd00::2")
        / TCP(dport=NODE_PORT)
    ),
    "icmp-to-vip": bytes(Ether(src=CLIENT_MAC, dst=LB_MAC) / IP(src=CLIENT_IP, dst=VIP) / ICMP()),
    "later-icmp-fragment": bytes(
        Ether(src=CLIENT_MAC, dst=LB_MAC)
        / IP(src=CLIENT_IP, dst=VIP, frag=3, proto=1)
        / Raw(bytes(24))
    ),
    "bare-ethernet": bytes(Ether(src=CLIENT_MAC, dst=LB_MAC, type=0x88B5)),
}


@pytest.mark.parametrize("program", ["dsr_from_netdev", "dsr_to_netdev"])
@pytest.mark.parametrize("case", sorted(NOT_OURS))
def test_foreign_traffic_passes_untouched(node: Node, program: str, case: str) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    frame = NOT_OURS[case]
    res = node.run(program, frame)
    assert (res.verdict, res.data) == ("ok", frame)
    assert node.dp.ct_entries() == []


@pytest.mark.parametrize("program", ["dsr_from_netdev", "dsr_to_netdev"])
@pytest.mark.parametrize(("tracking", "reason"), [(True, "frag_not_found"),
                                                  (False, "frag_nosupport")])
def test_a_tcp_fragment_that_cannot_be_placed_is_dropped_both_ways(
        node: Node, program: str, tracking: bool, reason: str) -> None:
    """As Cilium's nodeport path (lb4_extract_tuple): a TCP or UDP fragment the node
    cannot place is dropped on the way in and out, whatever its addresses."""
    node.dp.set_fragment_tracking(tracking)
    frame = bytes(Ether(src=CLIENT_MAC, dst=LB_MAC) / IP(src=CLIENT_IP, dst=VIP, frag=3,
                                                          proto=6) / Raw(bytes(24)))
    res = node.run(program, frame)
    assert (res.verdict, res.drop_reason) == ("shot", reason)


def test_test_run_of_a_truncated_ipv4_header_is_refused_by_the_kernel(node: Node) -> None:
    # Linux refuses BPF_PROG_TEST_RUN input whose IPv4 header cannot be pulled,
    # so a frame cut inside the IPv4 header cannot reach the program here.
    with pytest.raises(DatapathError, match="EINVAL"):
        node.lb(tcp_frame("S")[: 14 + 10])
