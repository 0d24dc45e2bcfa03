"""IPv4 fragments with fragment tracking on (Cilium's enable-ipv4-fragment-tracking).

A fragmented UDP datagram's later fragments carry no UDP header. With tracking on,
the first fragment's ports are remembered (dsr_frags) and every fragment is
translated with its datagram: at the LB each one is DNATed and given the DSR
option; at the backend's node each reply fragment leaves from the service
address. The datagrams are put back together here (independently of the
datapath) and their UDP checksums checked whole. With tracking off (the object's
default; test_drops.py) every fragment passes untouched.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP, in4_chksum
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab.datapath import BackendEntry, RevnatEntry
from lab.wire.checksum import checksum
from tests.datapath.frames import Node, ip_header, udp_fragments
from tests.seed import (
    CLIENT_IP,
    CLIENT_MAC,
    CLIENT_PORT,
    LB_MAC,
    NODE_PORT,
    OPTION,
    POD_IP,
    VIP,
    WORKER_MAC,
)

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

ECHO_PORT = 53
PAYLOAD = bytes(range(256)) * 12  # 3072 bytes: with the UDP header 3 x 1000 + 80
FRAG_SIZE = 1000  # data bytes per fragment: room for the option within 1500


def fragments(src: str, dst: str, sport: int, dport: int, *, ip_id: int = 4242,
              mac_src: str = CLIENT_MAC, mac_dst: str = LB_MAC,
              frag_size: int = FRAG_SIZE) -> list[bytes]:
    """A UDP datagram of PAYLOAD, fragmented by scapy, as Ethernet frames."""
    pieces = udp_fragments(PAYLOAD, src=src, dst=dst, sport=sport, dport=dport, ip_id=ip_id,
                           frag_size=frag_size)
    assert len(pieces) == -(-(len(PAYLOAD) + 8) // frag_size)
    return [bytes(Ether(src=mac_src, dst=mac_dst) / p) for p in pieces]


def reassemble(frames: list[bytes]) -> IP:
    """The datagram the fragments make, put together by offset (RFC 791), not by the
    datapath; its header from the first fragment with the options dropped."""
    ips = sorted((Ether(f)[IP] for f in frames), key=lambda ip: int(ip.frag))
    data = b""
    for ip in ips:
        assert int(ip.frag) * 8 == len(data), "fragments overlap or leave a hole"
        data += bytes(ip.payload)[: int(ip.len) - int(ip.ihl) * 4]
    first = ips[0]
    return IP(bytes(IP(src=first.src, dst=first.dst, id=first.id, ttl=first.ttl,
                       proto=first.proto) / Raw(data)))


def assert_udp_whole(datagram: IP) -> None:
    udp = bytes(datagram.payload)
    assert in4_chksum(17, datagram, udp) == 0, "the reassembled UDP checksum is wrong"
    assert udp[8:] == PAYLOAD


@pytest.fixture
def tracking(node: Node) -> Node:
    node.dp.set_fragment_tracking(True)
    assert node.dp.fragment_tracking()
    return node


def test_every_fragment_follows_its_datagram_to_the_backend_with_the_option(
        tracking: Node) -> None:
    tracking.dp.add_service(VIP, NODE_PORT, "udp", dsr=True,
                            backends=[BackendEntry(POD_IP, ECHO_PORT)])
    out = []
    for frame in fragments(CLIENT_IP, VIP, CLIENT_PORT, NODE_PORT):
        res = tracking.lb(frame)
        assert res.verdict == "redirect", res
        ip = Ether(res.data)[IP]
        assert (ip.dst, ip.ihl, ip.ttl) == (POD_IP, 7, 63)
        assert res.data[34:42] == OPTION  # every fragment: the backend learns from any
        assert len(res.data) == len(frame) + 8
        assert checksum(ip_header(res.data)) == 0
        out.append(res.data)
    datagram = reassemble(out)
    assert_udp_whole(datagram)
    assert (datagram[UDP].sport, datagram[UDP].dport) == (CLIENT_PORT, ECHO_PORT)
    counters = tracking.dp.counters()
    assert (counters["frag_tracked"], counters["frag_found"]) == (1, 3)
    assert (counters["ct_new"], counters["ct_hit"], counters["opt_inserted"]) == (1, 3, 4)
    assert counters.get("pass_fragment", 0) == 0


def test_reply_fragments_all_leave_from_the_service_address(tracking: Node) -> None:
    tracking.dp.add_revnat(RevnatEntry(CLIENT_IP, CLIENT_PORT, POD_IP, ECHO_PORT, "udp",
                                       VIP, NODE_PORT))
    out = []
    for frame in fragments(POD_IP, CLIENT_IP, ECHO_PORT, CLIENT_PORT,
                           mac_src=WORKER_MAC, mac_dst=CLIENT_MAC):
        res = tracking.egress(frame)
        assert res.verdict == "ok"
        ip = Ether(res.data)[IP]
        assert (ip.src, ip.dst, ip.ihl) == (VIP, CLIENT_IP, 5)
        assert len(res.data) == len(frame)
        assert checksum(ip_header(res.data)) == 0
        out.append(res.data)
    datagram = reassemble(out)
    assert_udp_whole(datagram)
    assert (datagram[UDP].sport, datagram[UDP].dport) == (NODE_PORT, CLIENT_PORT)
    assert tracking.dp.counters()["revnat_rewrite"] == 4


def test_a_piece_whose_first_fragment_was_not_seen_is_dropped(tracking: Node) -> None:
    """As Cilium's lb4_extract_tuple: a later fragment with no first fragment seen here
    cannot be placed; it is dropped with a named reason, not passed on."""
    tracking.dp.add_service(VIP, NODE_PORT, "udp", dsr=True,
                            backends=[BackendEntry(POD_IP, ECHO_PORT)])
    later = fragments(CLIENT_IP, VIP, CLIENT_PORT, NODE_PORT, ip_id=99)[1:]
    for frame in later:
        res = tracking.lb(frame)
        assert (res.verdict, res.drop_reason) == ("shot", "frag_not_found")
    assert tracking.dp.counters()["drop_frag_not_found"] == 3
    assert tracking.dp.ct_entries() == []


def test_a_first_fragment_known_to_the_flow_but_of_another_datagram_is_not_confused(
        tracking: Node) -> None:
    """Two datagrams of one flow, their fragments interleaved: each later fragment
    finds its own datagram by IP ID (both go to the flow's backend)."""
    tracking.dp.add_service(VIP, NODE_PORT, "udp", dsr=True,
                            backends=[BackendEntry(POD_IP, ECHO_PORT)])
    a = fragments(CLIENT_IP, VIP, CLIENT_PORT, NODE_PORT, ip_id=1)
    b = fragments(CLIENT_IP, VIP, CLIENT_PORT + 1, NODE_PORT, ip_id=2)
    outs: dict[int, list[bytes]] = {1: [], 2: []}
    for frame in (a[0], b[0], b[1], a[1], a[2], b[2], b[3], a[3]):
        res = tracking.lb(frame)
        assert res.verdict == "redirect"
        outs[int(Ether(frame)[IP].id)].append(res.data)
    for ip_id, sport in ((1, CLIENT_PORT), (2, CLIENT_PORT + 1)):
        datagram = reassemble(outs[ip_id])
        assert_udp_whole(datagram)
        assert datagram[UDP].sport == sport


def test_with_tracking_off_every_fragment_is_dropped(node: Node) -> None:
    """As Cilium without fragment tracking (DROP_FRAG_NOSUPPORT): no piece of a
    fragmented datagram goes on, the first (which has the ports) included."""
    assert not node.dp.fragment_tracking()  # a fresh object's default
    node.dp.add_service(VIP, NODE_PORT, "udp", dsr=True,
                        backends=[BackendEntry(POD_IP, ECHO_PORT)])
    for frame in fragments(CLIENT_IP, VIP, CLIENT_PORT, NODE_PORT):
        res = node.lb(frame)
        assert (res.verdict, res.drop_reason, res.data) == ("shot", "frag_nosupport", frame)
    counters = node.dp.counters()
    assert (counters["drop_frag_nosupport"], counters["opt_inserted"]) == (4, 0)
    assert counters.get("frag_tracked", 0) == 0


def test_with_tracking_off_no_piece_of_a_reply_leaves(node: Node) -> None:
    """At the backend's node: every fragment of the pod's answer is dropped on the way
    out (Cilium drops them as they leave the pod); the client gets nothing."""
    node.dp.add_revnat(RevnatEntry(CLIENT_IP, CLIENT_PORT, POD_IP, ECHO_PORT, "udp",
                                   VIP, NODE_PORT))
    results = [node.egress(f) for f in fragments(POD_IP, CLIENT_IP, ECHO_PORT, CLIENT_PORT,
                                                 mac_src=WORKER_MAC, mac_dst=CLIENT_MAC)]
    assert [(r.verdict, r.drop_reason) for r in results] == [("shot", "frag_nosupport")] * 4


def test_a_full_size_fragment_gets_icmp_only_for_the_first_piece(tracking: Node) -> None:
    """MTU 1500 and DSR ICMP errors on: the 1500-byte first fragment is answered with
    frag-needed quoting its UDP header (the client's socket finds it); a later one
    would quote payload bytes that name no socket, so it is dropped silently."""
    tracking.dp.set_mtu(1500)
    tracking.dp.set_icmp_errors(True)
    tracking.dp.add_service(VIP, NODE_PORT, "udp", dsr=True,
                            backends=[BackendEntry(POD_IP, ECHO_PORT)])
    first, second = fragments(CLIENT_IP, VIP, CLIENT_PORT, NODE_PORT, frag_size=1480)[:2]
    res = tracking.lb(first)
    assert res.verdict == "redirect"
    assert Ether(res.data)[IP].proto == 1  # ICMP back to the client
    # the flow was not made (the first piece bounced): make it with a small datagram
    small = bytes(Ether(src=CLIENT_MAC, dst=LB_MAC) / IP(src=CLIENT_IP, dst=VIP)
                  / UDP(sport=CLIENT_PORT, dport=NODE_PORT) / Raw(b"x"))
    assert tracking.lb(small).verdict == "redirect"
    res = tracking.lb(second)
    assert (res.verdict, res.drop_reason, res.data) == ("shot", "frag_needed", second)
    counters = tracking.dp.counters()
    assert (counters["icmp_frag_needed"], counters["drop_frag_needed"]) == (1, 1)
