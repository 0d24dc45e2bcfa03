"""The backend node: it learns the service from the DSR option and rewrites the replies.

Also the LB node's own local-backend case (plain DNAT and reverse DNAT),
and the LB's output fed to a second object standing for the backend node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab.datapath import BackendEntry, DatapathObject, RevnatEntry
from lab.wire import dsropt
from tests.datapath.frames import (
    Node,
    assert_checksums_valid,
    backend_syn,
    splice_ip_options,
    tcp_frame,
)
from tests.seed import (
    CLIENT_IP,
    CLIENT_MAC,
    CLIENT_PORT,
    LB_MAC,
    NODE_PORT,
    OPTION,
    POD_IP,
    POD_PORT,
    VIP,
    WORKER_MAC,
)

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


def test_local_backend_dnat_without_option_and_revnat(node: Node) -> None:
    node.dp.add_service(
        VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT, local=True)]
    )
    frame = tcp_frame("S")
    res = node.lb(frame)
    assert res.verdict == "ok"
    pkt = Ether(res.data)
    assert len(res.data) == len(frame)
    assert pkt[IP].ihl == 5
    assert (pkt[IP].dst, pkt[TCP].dport) == (POD_IP, POD_PORT)
    assert pkt[IP].ttl == 64  # the stack forwards it to the pod (and lowers the TTL)
    assert_checksums_valid(res.data)
    assert node.dp.revnat_entries() == [
        RevnatEntry(CLIENT_IP, CLIENT_PORT, POD_IP, POD_PORT, "tcp", VIP, NODE_PORT)
    ]
    (ct,) = node.dp.ct_entries()
    assert ct.local
    assert not ct.dsr

    reply = bytes(
        Ether(src=LB_MAC, dst=CLIENT_MAC)
        / IP(src=POD_IP, dst=CLIENT_IP)
        / TCP(sport=POD_PORT, dport=CLIENT_PORT, flags="SA", seq=5, ack=1001)
    )
    out = node.egress(reply)
    assert out.verdict == "ok"
    rpkt = Ether(out.data)
    assert (rpkt[IP].src, rpkt[TCP].sport) == (VIP, NODE_PORT)
    assert (rpkt[IP].dst, rpkt[TCP].dport) == (CLIENT_IP, CLIENT_PORT)
    assert_checksums_valid(out.data)


# --- the backend node ---------------------------------------------------------------


def test_backend_learns_service_from_option(node: Node) -> None:
    frame = backend_syn(OPTION)
    assert Ether(frame)[IP].ihl == 7
    res = node.lb(frame)
    assert (res.verdict, res.data) == ("ok", frame)  # the option is never stripped
    assert node.dp.revnat_entries() == [
        RevnatEntry(CLIENT_IP, CLIENT_PORT, POD_IP, POD_PORT, "tcp", VIP, NODE_PORT)
    ]
    assert node.dp.counters()["backend_learned"] == 1

    reply = bytes(
        Ether(src=LB_MAC, dst=CLIENT_MAC)
        / IP(src=POD_IP, dst=CLIENT_IP, ttl=64)
        / TCP(sport=POD_PORT, dport=CLIENT_PORT, flags="SA", seq=77, ack=1001)
    )
    out = node.egress(reply)
    assert out.verdict == "ok"
    pkt = Ether(out.data)
    assert (pkt[IP].src, pkt[TCP].sport) == (VIP, NODE_PORT)
    assert (pkt[IP].dst, pkt[TCP].dport) == (CLIENT_IP, CLIENT_PORT)
    assert pkt[TCP].flags == "SA"
    assert pkt[TCP].seq == 77
    assert_checksums_valid(out.data)

    unrelated = bytes(
        Ether() / IP(src=POD_IP, dst="192.0.2.9") / TCP(sport=POD_PORT, dport=CLIENT_PORT,
                                                         flags="A")
    )
    assert node.egress(unrelated).data == unrelated


def test_backend_reads_network_order_when_configured(node: Node) -> None:
    node.dp.set_option_order("network")
    node.lb(backend_syn(dsropt.encode(VIP, NODE_PORT, "network")))
    (entry,) = node.dp.revnat_entries()
    assert (entry.service_ip, entry.service_port) == (VIP, NODE_PORT)


def test_backend_udp_learns_on_any_datagram(node: Node) -> None:
    plain = (
        Ether(src=WORKER_MAC, dst=LB_MAC) / IP(src=CLIENT_IP, dst=POD_IP)
        / UDP(sport=5353, dport=53)
    )
    frame = splice_ip_options(bytes(plain / Raw(b"q")), OPTION)
    res = node.lb(frame)
    assert res.verdict == "ok"
    (entry,) = node.dp.revnat_entries()
    assert (entry.proto, entry.client_port, entry.service_port) == ("udp", 5353, NODE_PORT)


def test_backend_syn_without_option_clears_state(node: Node) -> None:
    node.lb(backend_syn(OPTION))
    assert len(node.dp.revnat_entries()) == 1
    node.lb(backend_syn(None, flags="A"))  # a non-SYN changes nothing
    assert len(node.dp.revnat_entries()) == 1
    node.lb(backend_syn(None))
    assert node.dp.revnat_entries() == []
    assert node.dp.counters()["backend_cleared"] == 1


@pytest.mark.parametrize(
    ("opt", "flags", "extra"),
    [
        (OPTION, "SA", b""),  # SYN+ACK is not a first packet
        (b"\x01\x01\x01\x00", "S", OPTION),  # the DSR option is not first
        (OPTION[:1] + b"\x0a" + OPTION[2:] + b"\0\0", "S", b"\0\0"),  # wrong length
    ],
    ids=["syn-ack", "not-first", "bad-length"],
)
def test_backend_ignores_non_dsr_packets(node: Node, opt: bytes, flags: str, extra: bytes) -> None:
    frame = backend_syn(opt, flags, extra)
    res = node.lb(frame)
    assert (res.verdict, res.data) == ("ok", frame)
    assert node.dp.revnat_entries() == []


def test_lb_output_teaches_backend(obj_path: Path, fwd_ns: tuple[str, int]) -> None:
    """The LB's SYN, fed to a second object (the backend node), yields the revnat entry."""
    with DatapathObject.load(obj_path) as lb_dp, DatapathObject.load(obj_path) as be_dp:
        lb, be = Node(lb_dp, *fwd_ns), Node(be_dp, *fwd_ns)
        lb_dp.add_service(VIP, NODE_PORT, "tcp", dsr=True,
                          backends=[BackendEntry(POD_IP, POD_PORT)])
        wire = lb.lb(tcp_frame("S")).data
        res = be.lb(wire)
        assert (res.verdict, res.data) == ("ok", wire)
        assert be_dp.revnat_entries() == [
            RevnatEntry(CLIENT_IP, CLIENT_PORT, POD_IP, POD_PORT, "tcp", VIP, NODE_PORT)
        ]
        assert lb_dp.revnat_entries() == []
