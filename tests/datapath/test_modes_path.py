"""The service path's other modes, packet by packet (BPF_PROG_TEST_RUN): SNAT (the
node's address as source, replies back through the node and reverse-translated),
externalTrafficPolicy=Local, and Maglev selection from a user-space table."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab.datapath import BackendEntry
from lab.datapath.maglev import build_table
from lab.datapath.selection import Flow, maglev_index
from tests.datapath.frames import Node, assert_checksums_valid, tcp_frame, udp_frame
from tests.seed import (
    CLIENT_IP,
    CLIENT_PORT,
    LB_MAC,
    NODE_PORT,
    POD2_IP,
    POD_IP,
    POD_PORT,
    VIP,
    WORKER_MAC,
)

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

SNAT_PORTS = range(32768, 61000)  # SNAT_PORT_MIN..SNAT_PORT_MAX of bpf/dsr.h


def _snat_service(node: Node, proto: str = "tcp") -> None:
    node.dp.set_node_addr(VIP)
    node.dp.add_service(VIP, NODE_PORT, proto, dsr=False, snat=True,  # type: ignore[arg-type]
                        backends=[BackendEntry(POD_IP, POD_PORT)])


def _reply(nat_port: int, flags: str = "SA") -> bytes:
    """The backend's answer as the LB node's eth0 receives it: to the node's address."""
    return bytes(Ether(src=WORKER_MAC, dst=LB_MAC) / IP(src=POD_IP, dst=VIP, ttl=63)
                 / TCP(sport=POD_PORT, dport=nat_port, flags=flags, seq=5000, ack=1001))


def test_snat_syn_leaves_from_the_node_and_the_reply_returns_to_the_client(
        node: Node) -> None:
    _snat_service(node)
    res = node.lb(tcp_frame("S"))
    assert res.verdict == "redirect", res
    out = Ether(res.data)
    ip, tcp = out[IP], out[TCP]
    assert (ip.src, ip.dst, tcp.dport) == (VIP, POD_IP, POD_PORT)
    assert tcp.sport in SNAT_PORTS
    assert ip.ihl == 5  # no DSR option in SNAT mode
    assert_checksums_valid(res.data)
    (ct,) = node.dp.ct_entries()
    assert (ct.snat, ct.dsr, ct.nat_port) == (True, False, tcp.sport)
    (entry,) = node.dp.snat_entries()
    assert (entry.backend_ip, entry.backend_port, entry.nat_port) == (POD_IP, POD_PORT,
                                                                      tcp.sport)
    assert (entry.client_ip, entry.client_port) == (CLIENT_IP, CLIENT_PORT)
    assert (entry.service_ip, entry.service_port) == (VIP, NODE_PORT)

    back = node.lb(_reply(tcp.sport))
    assert back.verdict == "redirect", back
    pkt = Ether(back.data)
    assert (pkt[IP].src, pkt[TCP].sport) == (VIP, NODE_PORT)
    assert (pkt[IP].dst, pkt[TCP].dport) == (CLIENT_IP, CLIENT_PORT)
    assert pkt[TCP].flags == "SA"
    assert pkt[IP].ttl == 62
    assert_checksums_valid(back.data)
    counters = node.dp.counters()
    assert (counters["snat"], counters["snat_reverse"], counters["opt_inserted"]) == (1, 1, 0)


def test_a_snat_flow_keeps_its_port_and_another_flow_gets_its_own(node: Node) -> None:
    _snat_service(node)
    first = Ether(node.lb(tcp_frame("S")).data)[TCP].sport
    again = Ether(node.lb(tcp_frame("A", payload=b"GET /")).data)[TCP].sport
    other = Ether(node.lb(tcp_frame("S", sport=CLIENT_PORT + 1)).data)[TCP].sport
    assert again == first
    assert other != first
    assert {e.nat_port for e in node.dp.snat_entries()} == {first, other}
    assert node.dp.counters()["snat"] == 3


def test_snat_udp_datagram_and_its_answer(node: Node) -> None:
    _snat_service(node, "udp")
    res = node.lb(udp_frame(payload=b"ping"))
    out = Ether(res.data)
    assert (out[IP].src, out[IP].dst, out[UDP].dport) == (VIP, POD_IP, POD_PORT)
    assert out[IP].ihl == 5
    nat_port = out[UDP].sport
    answer = bytes(Ether(src=WORKER_MAC, dst=LB_MAC) / IP(src=POD_IP, dst=VIP, ttl=63)
                   / UDP(sport=POD_PORT, dport=nat_port) / Raw(b"ping"))
    back = Ether(node.lb(answer).data)
    assert (back[IP].src, back[UDP].sport, back[IP].dst, back[UDP].dport) == (
        VIP, NODE_PORT, CLIENT_IP, CLIENT_PORT)
    assert bytes(back[Raw]) == b"ping"
    assert_checksums_valid(bytes(back))


def test_snat_without_the_node_address_drops_and_remembers_nothing(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=False, snat=True,
                        backends=[BackendEntry(POD_IP, POD_PORT)])
    res = node.lb(tcp_frame("S"))
    assert (res.verdict, res.drop_reason) == ("shot", "no_node_addr")
    assert node.dp.ct_entries() == []
    assert node.dp.snat_entries() == []


def test_a_packet_to_the_node_that_is_no_snat_reply_passes_untouched(node: Node) -> None:
    _snat_service(node)
    frame = _reply(45000)  # no flow was given port 45000
    res = node.lb(frame)
    assert res.verdict == "ok"
    assert res.data == frame
    assert node.dp.counters()["snat_reverse"] == 0


def test_dsr_and_snat_together_is_refused(node: Node) -> None:
    with pytest.raises(ValueError, match="dsr or snat, not both"):
        node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, snat=True)


@pytest.mark.parametrize(("local_only", "reason"), [(True, "no_local_backend"),
                                                    (False, "no_backend")])
def test_a_node_without_backends_drops_with_the_policys_reason(
        node: Node, local_only: bool, reason: str) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, local_only=local_only, backends=[])
    res = node.lb(tcp_frame("S"))
    assert (res.verdict, res.drop_reason) == ("shot", reason)
    (svc,) = node.dp.services()
    assert svc.local_only is local_only


def test_maglev_picks_the_tables_backend_for_the_flow(node: Node) -> None:
    backends = [BackendEntry(POD_IP, POD_PORT), BackendEntry(POD2_IP, POD_PORT)]
    table = build_table([f"{b.ip}:{b.port}" for b in backends], size=251)
    by_name = {f"{b.ip}:{b.port}": b for b in backends}
    ordered = [by_name[n] for n in table.backends]
    node.dp.set_maglev_seed(7)
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, maglev=list(table.entries),
                        backends=ordered)
    assert node.dp.maglev_table(VIP, NODE_PORT) == list(table.slots())
    seen = set()
    for sport in range(40000, 40040):
        res = node.lb(tcp_frame("S", sport=sport))
        got = Ether(res.data)[IP].dst
        want = table.backends[table.entries[maglev_index(7, 251, Flow(CLIENT_IP, VIP, sport,
                                                                       NODE_PORT))]]
        assert f"{got}:{POD_PORT}" == want, sport
        seen.add(got)
    assert seen == {POD_IP, POD2_IP}
    assert node.dp.counters()["maglev"] == 40


def test_maglev_ignores_which_node_address_the_flow_came_to(node: Node) -> None:
    """Two NodePort frontends (two nodes' addresses) with the same table: a flow gets
    the same backend at either; a random service would not promise that."""
    backends = [BackendEntry(f"10.0.2.{i}", POD_PORT) for i in range(10, 15)]
    table = build_table([f"{b.ip}:{b.port}" for b in backends], size=251)
    by_name = {f"{b.ip}:{b.port}": b for b in backends}
    ordered = [by_name[n] for n in table.backends]
    other_vip = "172.18.0.3"
    for vip in (VIP, other_vip):
        node.dp.add_service(vip, NODE_PORT, "tcp", dsr=False, maglev=list(table.entries),
                            backends=ordered)
    for sport in range(41000, 41020):
        a = Ether(node.lb(tcp_frame("S", sport=sport)).data)[IP].dst
        b = Ether(node.lb(tcp_frame("S", sport=sport, dst=other_vip)).data)[IP].dst
        assert a == b, sport


def test_maglev_tables_of_one_node_share_their_size(node: Node) -> None:
    node.dp.add_service(VIP, NODE_PORT, "tcp", maglev=[0] * 251,
                        backends=[BackendEntry(POD_IP, POD_PORT)])
    with pytest.raises(ValueError, match="have 251 entries, not 509"):
        node.dp.add_service(VIP, NODE_PORT + 1, "tcp", maglev=[0] * 509,
                            backends=[BackendEntry(POD_IP, POD_PORT)])
    with pytest.raises(ValueError, match="index the 1 backends"):
        node.dp.add_service(VIP, NODE_PORT + 2, "tcp", maglev=[1] * 251,
                            backends=[BackendEntry(POD_IP, POD_PORT)])


def _maglev_choices(node: Node, backends: list[BackendEntry], ports: range) -> dict[int, str]:
    """The backend the datapath gives each flow (client port) of a fresh CT table."""
    names = [f"{b.ip}:{b.port}" for b in backends]
    table = build_table(names, size=16381)
    by_name = dict(zip(names, backends, strict=True))
    node.dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, maglev=list(table.entries),
                        backends=[by_name[n] for n in table.backends])
    node.dp.clear_ct()
    return {p: Ether(node.lb(tcp_frame("S", sport=p)).data)[IP].dst for p in ports}


def test_maglev_moves_about_one_flow_in_n_when_a_backend_goes(node: Node) -> None:
    """1,000 flows over 5 backends through the real program; one backend removed: its
    flows move (they must), about 1/5 of all, and of the others' flows at most the
    table's own disruption (measured 0.3 % at N=5 for the table alone)."""
    backends = [BackendEntry(f"10.0.2.{i}", POD_PORT) for i in range(10, 15)]
    ports = range(20000, 21000)
    before = _maglev_choices(node, backends, ports)
    gone = backends[2].ip
    after = _maglev_choices(node, [b for b in backends if b.ip != gone], ports)
    moved = [p for p in ports if before[p] != after[p]]
    had_gone = [p for p in ports if before[p] == gone]
    assert set(had_gone) <= set(moved)  # every flow of the removed backend moved
    others_moved = len(set(moved) - set(had_gone)) / (len(ports) - len(had_gone))
    share = len(moved) / len(ports)
    assert 0.15 <= share <= 0.25, share  # about 1/N = 0.2
    assert others_moved <= 0.02, others_moved
    assert gone not in after.values()
    assert len(set(before.values())) == 5
