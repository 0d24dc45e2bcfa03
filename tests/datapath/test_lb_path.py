"""The LB node's service path, packet by packet (BPF_PROG_TEST_RUN), Cilium style.

A client packet to the NodePort is DNATed to a backend with the client
kept; a first packet (TCP SYN, every UDP datagram) to a remote backend gets
the DSR option right after the base header, in front of the packet's own
options; the FIB lookup picks the redirect (with or without a neighbour).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab.datapath import BackendEntry
from lab.wire import dsropt
from tests.datapath.frames import (
    Node,
    assert_checksums_valid,
    ct_backend,
    ip_header,
    tcp_frame,
    udp_frame,
)
from tests.seed import (
    CLIENT_IP,
    CLIENT_MAC,
    CLIENT_PORT,
    LB_MAC,
    NODE_PORT,
    OPTION,
    OPTION_NETWORK,
    POD2_IP,
    POD_IP,
    POD_PORT,
    VIP,
    WORKER_MAC,
)

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


# --- the LB node: service path --------------------------------------------------


def test_syn_gets_cilium_option_and_is_redirected(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    frame = tcp_frame("S")
    res = node.lb(frame)

    assert res.verdict == "redirect", res
    out = res.data
    assert len(out) == len(frame) + 8
    pkt = Ether(out)
    ip, tcp = pkt[IP], pkt[TCP]
    assert out[14 + 20 : 14 + 28] == OPTION == dsropt.encode(VIP, NODE_PORT)
    assert ip.ihl == 7
    assert ip.len == Ether(frame)[IP].len + 8
    assert (ip.src, tcp.sport) == (CLIENT_IP, CLIENT_PORT)
    assert (ip.dst, tcp.dport) == (POD_IP, POD_PORT)
    assert ip.ttl == 63
    assert (pkt.dst, pkt.src) == (WORKER_MAC, LB_MAC)
    assert tcp.flags == "S"
    assert tcp.seq == 1000
    assert_checksums_valid(out)
    counters = node.dp.counters()
    assert counters["opt_inserted"] == 1
    assert counters["fib_redirect"] == 1


def test_non_syn_keeps_backend_and_gets_no_option(node: Node) -> None:
    backends = [BackendEntry(POD_IP, POD_PORT), BackendEntry("10.0.2.124", 8080)]
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=backends)
    syn = Ether(node.lb(tcp_frame("S")).data)
    chosen = ct_backend(node.dp)
    assert syn[IP].dst == chosen

    for flags, payload in (("A", b""), ("PA", b"GET / HTTP/1.1\r\n\r\n"), ("FA", b"")):
        frame = tcp_frame(flags, payload=payload)
        res = node.lb(frame)
        assert res.verdict == "redirect"
        pkt = Ether(res.data)
        assert len(res.data) == len(frame)
        assert pkt[IP].ihl == 5
        assert pkt[IP].dst == chosen
        assert pkt[TCP].dport == (POD_PORT if chosen == POD_IP else 8080)
        assert pkt[IP].src == CLIENT_IP
        assert pkt[TCP].sport == CLIENT_PORT
        assert pkt[IP].ttl == 63
        assert_checksums_valid(res.data)
    assert node.dp.counters()["ct_hit"] == 3
    assert node.dp.counters()["opt_inserted"] == 1


def test_random_selection_uses_every_backend(node: Node) -> None:
    node.dp.add_service(
        VIP, NODE_PORT, "tcp", dsr=True,
        backends=[BackendEntry(POD_IP, POD_PORT), BackendEntry(POD2_IP, POD_PORT)]
    )
    for sport in range(41000, 41064):
        node.lb(tcp_frame("S", sport=sport))
    chosen = {e.backend_ip for e in node.dp.ct_entries()}
    assert chosen == {POD_IP, POD2_IP}  # 64 flows all on one backend: p = 2**-63
    assert len(node.dp.ct_entries()) == 64


def test_udp_gets_option_on_every_datagram(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    for i in range(3):
        frame = udp_frame(payload=b"datagram %d" % i)
        res = node.lb(frame)
        assert res.verdict == "redirect"
        pkt = Ether(res.data)
        assert res.data[34:42] == OPTION
        assert pkt[IP].ihl == 7
        assert pkt[IP].len == Ether(frame)[IP].len + 8
        assert (pkt[IP].dst, pkt[UDP].dport) == (POD_IP, 53)
        assert pkt[Raw].load == b"datagram %d" % i
        assert_checksums_valid(res.data)
    assert node.dp.counters()["opt_inserted"] == 3


def test_udp_zero_checksum_stays_zero(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    frame = bytearray(udp_frame())
    frame[14 + 20 + 6 : 14 + 20 + 8] = b"\0\0"
    res = node.lb(bytes(frame))
    assert res.verdict == "redirect"
    assert res.data[14 + 28 + 6 : 14 + 28 + 8] == b"\0\0"
    assert_checksums_valid(res.data)


@pytest.mark.parametrize("order", ["host", "network"])
def test_option_bytes_match_python_encoder(node: Node, order: dsropt.OptionOrder) -> None:
    node.dp.set_option_order(order)
    assert node.dp.option_order() == order
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    out = node.lb(tcp_frame("S")).data
    assert out[34:42] == dsropt.encode(VIP, NODE_PORT, order)
    if order == "network":
        assert out[34:42] == OPTION_NETWORK
    assert dsropt.decode(out[34:42], order) == (VIP, NODE_PORT)


def test_non_dsr_service_is_plain_dnat(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=False, backends=[BackendEntry(POD_IP, POD_PORT)])
    frame = tcp_frame("S")
    res = node.lb(frame)
    pkt = Ether(res.data)
    assert res.verdict == "redirect"
    assert len(res.data) == len(frame)
    assert pkt[IP].ihl == 5
    assert pkt[IP].dst == POD_IP
    assert pkt[IP].src == CLIENT_IP
    assert_checksums_valid(res.data)


def test_fib_without_neighbour_uses_redirect_neigh(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD2_IP, POD_PORT)])
    res = node.lb(tcp_frame("S"))
    assert res.verdict == "redirect"
    pkt = Ether(res.data)
    assert pkt[IP].dst == POD2_IP
    assert pkt[IP].ttl == 63
    assert (pkt.src, pkt.dst) == (CLIENT_MAC, LB_MAC)  # the neighbour layer fills MACs
    assert node.dp.counters()["fib_redirect_neigh"] == 1


def test_no_route_leaves_forwarding_to_the_stack(bare_node: Node) -> None:
    bare_node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True,
                             backends=[BackendEntry(POD_IP, POD_PORT)])
    res = bare_node.lb(tcp_frame("S"))
    assert res.verdict == "ok"
    pkt = Ether(res.data)
    assert res.data[34:42] == OPTION
    assert pkt[IP].dst == POD_IP
    assert pkt[IP].ttl == 64  # not lowered: the stack does it when it forwards
    assert_checksums_valid(res.data)
    assert bare_node.dp.counters()["fib_pass"] == 1


# --- existing IP options ---------------------------------------------------------


def test_existing_options_follow_the_dsr_option(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    options = [IPOption_RR(routers=["0.0.0.0", "0.0.0.0"]), IPOption_NOP()]
    frame = tcp_frame("S", options=options)
    existing = ip_header(frame)[20:]
    assert len(existing) == 12
    res = node.lb(frame)
    assert res.verdict == "redirect"
    hdr = ip_header(res.data)
    assert len(hdr) == 40
    assert Ether(res.data)[IP].ihl == 10
    assert hdr[20:28] == OPTION
    assert hdr[28:40] == existing
    assert_checksums_valid(res.data)


def test_options_filling_the_header_exactly_are_accepted(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    frame = tcp_frame("S", options=[IPOption_RR(routers=["0.0.0.0"] * 7), IPOption_NOP()])
    assert len(ip_header(frame)) == 52  # 32 bytes of options: 20 + 32 + 8 = 60
    res = node.lb(frame)
    assert res.verdict == "redirect"
    assert Ether(res.data)[IP].ihl == 15
    assert ip_header(res.data)[20:28] == OPTION
    assert_checksums_valid(res.data)
