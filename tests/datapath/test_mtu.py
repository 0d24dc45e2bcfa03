"""The MTU on the LB node: the DSR option may not grow a packet past it.

Cilium with DSR ICMP errors off: a first packet that would not fit with
the option is dropped (no ICMP), before anything is written or remembered.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from lab.datapath import BackendEntry
from tests.datapath.frames import Node, assert_checksums_valid, tcp_frame, udp_frame
from tests.seed import CLIENT_IP, CLIENT_PORT, NODE_PORT, OPTION, POD_IP, POD_PORT, VIP

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


# --- the MTU (Cilium with DSR ICMP errors off: drop, no ICMP) -------------------------


def sized_udp(ip_len: int, sport: int = CLIENT_PORT) -> bytes:
    """A UDP datagram to the service whose IPv4 packet (tot_len) is ``ip_len`` bytes."""
    frame = udp_frame(sport=sport, payload=bytes(range(256)) * 6)[: 14 + ip_len]
    pkt = Ether(frame)
    del pkt[IP].len, pkt[IP].chksum, pkt[UDP].len, pkt[UDP].chksum
    out = bytes(pkt)
    assert len(out) == 14 + ip_len
    return out


def sized_tcp(ip_len: int, flags: str) -> bytes:
    """A TCP segment to the service whose IPv4 packet is ``ip_len`` bytes."""
    out = tcp_frame(flags, payload=bytes(ip_len - 40))
    assert Ether(out)[IP].len == ip_len
    return out


@pytest.mark.parametrize(
    ("ip_len", "fits"), [(1492, True), (1493, False), (1500, False)], ids=str
)
def test_udp_option_must_fit_the_mtu(node: Node, ip_len: int, fits: bool) -> None:
    node.dp.set_mtu(1500)
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    frame = sized_udp(ip_len)
    res = node.lb(frame)
    counters = node.dp.counters()
    if fits:
        assert res.verdict == "redirect"
        assert len(res.data) == 14 + 1500 == len(frame) + 8
        pkt = Ether(res.data)
        assert (pkt[IP].len, pkt[IP].ihl) == (ip_len + 8, 7)
        assert res.data[34:42] == OPTION
        assert (pkt[IP].dst, pkt[UDP].dport) == (POD_IP, 53)
        assert_checksums_valid(res.data)
        assert (counters["opt_inserted"], counters["drop_frag_needed"]) == (1, 0)
    else:
        assert (res.verdict, res.drop_reason) == ("shot", "frag_needed")
        assert res.data == frame  # refused before anything was written
        assert counters["drop_frag_needed"] == 1
        assert (counters["opt_inserted"], counters["dnat"]) == (0, 0)
        assert node.dp.ct_entries() == []  # a refused first packet leaves no state


def test_udp_flow_keeps_its_backend_when_a_datagram_is_too_big(node: Node) -> None:
    node.dp.set_mtu(1500)
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    assert node.lb(sized_udp(100)).verdict == "redirect"
    res = node.lb(sized_udp(1500))
    assert (res.verdict, res.drop_reason) == ("shot", "frag_needed")
    assert node.lb(sized_udp(1492)).verdict == "redirect"
    assert [e.backend_ip for e in node.dp.ct_entries()] == [POD_IP]
    counters = node.dp.counters()
    assert (counters["ct_hit"], counters["opt_inserted"], counters["drop_frag_needed"]) == (
        2, 2, 1)


def test_full_size_tcp_syn_is_dropped_and_later_segments_are_not(node: Node) -> None:
    node.dp.set_mtu(1500)
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    syn = sized_tcp(1500, "S")  # a SYN with data (TCP Fast Open): rare but possible
    res = node.lb(syn)
    assert (res.verdict, res.drop_reason, res.data) == ("shot", "frag_needed", syn)
    assert node.dp.ct_entries() == []

    assert node.lb(tcp_frame("S")).verdict == "redirect"  # the handshake's own SYN fits
    data = sized_tcp(1500, "PA")  # non-SYN: DNAT only, no option, no growth
    res = node.lb(data)
    assert res.verdict == "redirect"
    assert len(res.data) == len(data)
    pkt = Ether(res.data)
    assert (pkt[IP].ihl, pkt[IP].len) == (5, 1500)
    assert (pkt[IP].dst, pkt[TCP].dport) == (POD_IP, POD_PORT)
    assert pkt[IP].ttl == 63
    assert_checksums_valid(res.data)
    counters = node.dp.counters()
    assert (counters["drop_frag_needed"], counters["opt_inserted"], counters["ct_hit"]) == (
        1, 1, 1)


def test_local_and_non_dsr_backends_ignore_the_mtu(node: Node) -> None:
    node.dp.set_mtu(1500)
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True,
                        backends=[BackendEntry(POD_IP, 53, local=True)])
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=False, backends=[BackendEntry(POD_IP, POD_PORT)])
    for frame, verdict in ((sized_udp(1500), "ok"), (sized_tcp(1500, "S"), "redirect")):
        res = node.lb(frame)  # DNAT without the option: the packet does not grow
        assert (res.verdict, len(res.data)) == (verdict, len(frame))
        assert Ether(res.data)[IP].dst == POD_IP
    assert node.dp.counters()["drop_frag_needed"] == 0


def test_mtu_zero_disables_the_check(node: Node) -> None:
    assert node.dp.mtu() == 0  # a fresh object does not check
    node.dp.set_mtu(1500)
    node.dp.set_mtu(0)
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    frame = sized_udp(1500)
    res = node.lb(frame)
    assert len(res.data) == len(frame) + 8
    assert Ether(res.data)[IP].len == 1508
    assert res.data[34:42] == OPTION
    assert_checksums_valid(res.data)
    # the datapath let it grow; the FIB lookup (tot_len 1508 > eth0's 1500) then
    # declines the redirect and leaves the packet to the stack
    assert res.verdict == "ok"
    counters = node.dp.counters()
    assert (counters["opt_inserted"], counters["fib_pass"]) == (1, 1)
    assert counters["drop_frag_needed"] == 0


# --- DSR ICMP errors on: the too-big packet becomes an ICMP frag-needed -----------


def assert_icmp_checksums_valid(out: Ether) -> None:
    """The IPv4 header's checksum and the ICMP message's (no pseudo-header), by scapy."""
    from scapy.layers.inet import ICMP  # noqa: PLC0415
    from scapy.utils import checksum  # noqa: PLC0415

    raw = bytes(out)
    assert checksum(raw[14:34]) == 0, "IPv4 header checksum is wrong"
    assert out[ICMP].chksum != 0
    assert checksum(raw[34:]) == 0, "ICMP checksum is wrong"


def _icmp_answer(node: Node, frame: bytes) -> Ether:
    res = node.lb(frame)
    assert res.verdict == "redirect", (res.verdict, res.drop_reason)
    assert res.redirect_ifindex == node.ifindex  # back out of the interface it came in on
    return Ether(res.data)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_icmp_frag_needed_answers_a_packet_too_big_for_the_option(node: Node,
                                                                  proto: str) -> None:
    from scapy.layers.inet import ICMP, IPerror, TCPerror, UDPerror  # noqa: PLC0415

    node.dp.set_mtu(1500)
    node.dp.set_icmp_errors(True)
    port = 53 if proto == "udp" else POD_PORT
    node.dp.add_service(VIP, NODE_PORT, proto, dsr=True, backends=[BackendEntry(POD_IP, port)])
    frame = sized_udp(1500) if proto == "udp" else sized_tcp(1500, "S")
    sent = Ether(frame)
    out = _icmp_answer(node, frame)
    # MACs swapped, an IPv4 ICMP error to the client from the backend's address
    assert (out.src, out.dst) == (sent.dst, sent.src)
    ip = out[IP]
    assert (ip.src, ip.dst, ip.ihl, ip.ttl, ip.flags.DF, ip.id, ip.tos) == (
        POD_IP, CLIENT_IP, 5, 64, True, sent[IP].id, sent[IP].tos)
    assert (ip[ICMP].type, ip[ICMP].code, ip[ICMP].nexthopmtu) == (3, 4, 1492)
    # the quote: the packet's own IP header (to the service) and its first 8 L4 bytes
    quoted = ip[ICMP].payload
    assert isinstance(quoted, IPerror)
    assert (quoted.src, quoted.dst, quoted.len) == (CLIENT_IP, VIP, 1500)
    l4 = quoted[UDPerror] if proto == "udp" else quoted[TCPerror]
    assert (l4.sport, l4.dport) == (CLIENT_PORT, NODE_PORT)
    assert ip.len == len(out) - 14 == 20 + 8 + 20 + 8
    assert_icmp_checksums_valid(out)
    counters = node.dp.counters()
    assert (counters["icmp_frag_needed"], counters["drop_frag_needed"],
            counters["opt_inserted"]) == (1, 0, 0)
    assert node.dp.ct_entries() == []  # nothing remembered: the flow never started


def test_icmp_frag_needed_quotes_the_packets_own_ip_options(node: Node) -> None:
    from scapy.layers.inet import ICMP, IPerror, IPOption_Timestamp  # noqa: PLC0415

    node.dp.set_mtu(1400)
    node.dp.set_icmp_errors(True)
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    pkt = Ether(sized_udp(1400))
    pkt[IP].options = [IPOption_Timestamp(flg=0, timestamp=[0, 0])]
    del pkt[IP].ihl, pkt[IP].len, pkt[IP].chksum
    frame = bytes(pkt)
    out = _icmp_answer(node, frame)
    assert out[ICMP].nexthopmtu == 1392
    quoted = out[ICMP].payload
    assert isinstance(quoted, IPerror)
    assert quoted.ihl == 7  # 20 + the 8-byte timestamp option, quoted whole
    assert out[IP].len == 20 + 8 + 28 + 8
    assert_icmp_checksums_valid(out)


def test_icmp_errors_leave_packets_that_fit_alone(node: Node) -> None:
    node.dp.set_mtu(1500)
    node.dp.set_icmp_errors(True)
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    res = node.lb(sized_udp(1492))
    assert res.verdict == "redirect"
    assert Ether(res.data)[IP].dst == POD_IP
    assert node.dp.counters()["icmp_frag_needed"] == 0


def test_icmp_errors_need_an_mtu(node: Node) -> None:
    node.dp.set_icmp_errors(True)  # no MTU: nothing is too big, nothing is answered
    assert node.dp.icmp_errors()
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True, backends=[BackendEntry(POD_IP, 53)])
    res = node.lb(sized_udp(1500))
    assert Ether(res.data)[IP].len == 1508  # grown: the FIB lookup decides what next
    assert node.dp.counters()["icmp_frag_needed"] == 0
