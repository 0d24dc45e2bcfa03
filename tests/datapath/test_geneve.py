"""Geneve dispatch on the lab's datapath, packet by packet (BPF_PROG_TEST_RUN).

The LB node sends a DSR flow's packets to the backend's node in Geneve (the
DSR TLV on the SYN / every UDP datagram); the backend's node checks, learns
from and strips them; malformed Geneve is a named drop; too big is the ICMP
frag-needed with MTU - the Geneve overhead, or a drop.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum, wrpcap

from lab.datapath import BackendEntry, DatapathObject, RevnatEntry, tunnel
from tests.datapath.frames import Node, assert_checksums_valid, tcp_frame, udp_frame
from tests.seed import (
    CLIENT_IP,
    CLIENT_MAC,
    CLIENT_PORT,
    LB_MAC,
    NODE_PORT,
    POD2_CIDR,
    POD2_IP,
    POD_CIDR,
    POD_IP,
    POD_PORT,
    VIP,
    WORKER2_IP,
    WORKER_IP,
    WORKER_MAC,
)

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

OUTER = 14 + 20 + 8  # outer Ethernet, IPv4, UDP: the Geneve header starts here
TLV = (bytes.fromhex("014b8102") + bytes(map(int, VIP.split(".")))
       + struct.pack("!H", NODE_PORT) + b"\0\0")
OVERHEAD_TLV = 20 + 8 + 8 + 12 + 14  # 62: what the MTU must hold beyond the inner packet


def geneve_lb(node: Node, backends: list[BackendEntry] | None = None, *,
              proto: str = "tcp") -> DatapathObject:
    dp = node.dp
    dp.add_service(VIP, NODE_PORT, proto, dsr=True,  # type: ignore[arg-type]
                   backends=backends or [BackendEntry(POD_IP, POD_PORT)])
    tunnel.set_geneve(dp, VIP)
    tunnel.add_route(dp, POD_CIDR, WORKER_IP)
    tunnel.add_route(dp, POD2_CIDR, WORKER2_IP)
    return dp


def inner_syn(flags: str = "S", ttl: int = 63) -> bytes:
    """The client's SYN after the DNAT, as it rides inside Geneve (checksums by scapy)."""
    return bytes(IP(src=CLIENT_IP, dst=POD_IP, ttl=ttl, id=7)
                 / TCP(sport=CLIENT_PORT, dport=POD_PORT, flags=flags, seq=1000,
                       ack=1 if "A" in flags else 0))


def test_syn_leaves_in_geneve_with_the_dsr_tlv(node: Node) -> None:
    geneve_lb(node)
    frame = tcp_frame("S")
    res = node.lb(frame)
    assert res.verdict == "redirect", res
    assert not res.redirect_neigh
    out = res.data
    assert len(out) == len(frame) + OVERHEAD_TLV
    # outer Ethernet from the FIB, outer IPv4 this node -> the pod's node
    assert out[:14] == Ether(src=LB_MAC, dst=WORKER_MAC, type=0x0800).build()
    ip = IP(out[14:34])
    assert (ip.version, ip.ihl, ip.tos, ip.ttl, ip.proto) == (4, 5, 0, 64, 17)
    assert (ip.flags, ip.frag) == (0, 0)
    assert (ip.src, ip.dst, ip.id, ip.len) == (VIP, WORKER_IP, 7, len(out) - 14)
    assert checksum(out[14:34]) == 0, "outer IPv4 checksum"
    sport, dport, ulen, ucsum = struct.unpack("!HHHH", out[34:42])
    assert (dport, ulen, ucsum) == (6081, len(out) - 34, 0)
    assert sport != 0
    # Geneve: version 0, 3 words of options, O/C clear, Ethernet, VNI 2 (world)
    assert out[OUTER : OUTER + 8] == bytes.fromhex("03006558000002" "00")
    assert out[OUTER + 8 : OUTER + 20] == TLV
    # the inner frame: the Ethernet header as received, the DNATed SYN, TTL - 1
    assert out[OUTER + 20 : OUTER + 34] == frame[:14]
    assert out[OUTER + 34 :] == inner_syn()
    assert_checksums_valid(out[OUTER + 20 :])
    c = node.dp.counters()
    assert (c["geneve_encap"], c["opt_inserted"], c["fib_redirect"]) == (1, 0, 1)
    # the same flow, the same source port (from the flow's hash)
    node.dp.clear_ct()
    again = node.lb(frame).data
    assert struct.unpack("!H", again[34:36])[0] == sport


def test_scapy_and_tshark_read_it_as_geneve(node: Node, tmp_path: Path) -> None:
    geneve_lb(node)
    out = node.lb(tcp_frame("S")).data
    pkt = Ether(out)
    g = pkt[GENEVE]
    assert (g.version, g.optionlen, g.proto, g.vni) == (0, 3, 0x6558, 2)
    assert g.options[0].classid == 0x014B
    assert g.options[0].type == 0x81
    assert g.payload[IP].dst == POD_IP
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    pcap = tmp_path / "geneve.pcap"
    wrpcap(str(pcap), [pkt])
    fields = subprocess.run(
        [tshark, "-r", str(pcap), "-T", "fields", "-e", "geneve.vni",
         "-e", "geneve.option.class", "-e", "geneve.option.type", "-e", "ip.dst"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip().split("\t")
    assert int(fields[0], 0) == 2
    assert int(fields[1], 0) == 0x014B
    assert int(fields[2], 0) == 0x81
    assert fields[3].split(",") == [WORKER_IP, POD_IP]


def test_later_packets_go_in_geneve_without_the_tlv(node: Node) -> None:
    geneve_lb(node)
    node.lb(tcp_frame("S"))
    ack = tcp_frame("A", payload=b"GET / HTTP/1.1\r\n\r\n")
    out = node.lb(ack).data
    assert len(out) == len(ack) + OVERHEAD_TLV - 12
    assert out[OUTER : OUTER + 8] == bytes.fromhex("00006558000002" "00")
    assert out[OUTER + 8 : OUTER + 22] == ack[:14]
    inner = IP(out[OUTER + 22 :])
    assert (inner.src, inner.dst, inner[TCP].dport) == (CLIENT_IP, POD_IP, POD_PORT)
    assert_checksums_valid(out[OUTER + 8 :])


def test_udp_datagrams_all_carry_the_tlv(node: Node) -> None:
    geneve_lb(node, proto="udp")
    for _ in range(2):
        out = node.lb(udp_frame()).data
        assert out[OUTER + 8 : OUTER + 20] == TLV
        assert IP(out[OUTER + 34 :])[UDP].dport == POD_PORT


def test_unknown_node_neighbour_uses_redirect_neigh(node: Node) -> None:
    geneve_lb(node, [BackendEntry(POD2_IP, POD_PORT)])
    res = node.lb(tcp_frame("S"))
    assert res.verdict == "redirect", res
    assert res.redirect_neigh
    assert IP(res.data[14:34]).dst == WORKER2_IP


def test_no_tunnel_entry_is_a_named_drop_and_no_flow(node: Node) -> None:
    geneve_lb(node)
    tunnel.remove_route(node.dp, POD_CIDR)
    frame = tcp_frame("S")
    res = node.lb(frame)
    assert (res.verdict, res.drop_reason) == ("shot", "no_tunnel_endpoint")
    assert res.data == frame
    assert node.dp.ct_entries() == []


def test_local_backend_is_not_tunnelled(node: Node) -> None:
    geneve_lb(node, [BackendEntry(POD_IP, POD_PORT, local=True)])
    res = node.lb(tcp_frame("S"))
    assert res.verdict == "ok"
    assert Ether(res.data)[IP].dst == POD_IP
    assert len(res.data) == len(tcp_frame("S"))


def test_too_big_gets_frag_needed_with_the_geneve_overhead(node: Node) -> None:
    dp = geneve_lb(node)
    dp.set_mtu(1500)
    big = tcp_frame("S", payload=bytes(1500 - 40 - OVERHEAD_TLV + 1))
    res = node.lb(big)
    assert (res.verdict, res.drop_reason) == ("shot", "frag_needed")
    dp.set_icmp_errors(True)
    res = node.lb(big)
    assert res.verdict == "redirect", res
    icmp = Ether(res.data)[ICMP]
    assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, 1500 - OVERHEAD_TLV)
    # one byte less fits
    fits = tcp_frame("S", sport=CLIENT_PORT + 1, payload=bytes(1500 - 40 - OVERHEAD_TLV))
    out = node.lb(fits).data
    assert IP(out[14:34]).len == 1500


# --- the backend's node ----------------------------------------------------------


def backend_node(obj_path: Path, node: Node) -> Node:
    dp = DatapathObject.load(obj_path)
    tunnel.set_geneve(dp, WORKER_IP)
    return Node(dp, node.netns, node.ifindex)


def test_decap_delivers_the_inner_packet_and_learns_the_service(node: Node, obj_path: Path) -> None:
    geneve_lb(node)
    wire = node.lb(tcp_frame("S")).data
    worker = backend_node(obj_path, node)
    with worker.dp:
        res = worker.lb(wire)
        assert res.verdict == "ok", res
        # the outer Ethernet header (to this node) in front of the inner IPv4 packet
        assert res.data == wire[:14] + inner_syn()
        assert worker.dp.revnat_entries() == [
            RevnatEntry(CLIENT_IP, CLIENT_PORT, POD_IP, POD_PORT, "tcp", VIP, NODE_PORT)]
        c = worker.dp.counters()
        assert (c["geneve_decap"], c["geneve_learned"]) == (1, 1)
        # the pod's SYN+ACK leaves from the service address, not encapsulated
        synack = bytes(Ether(src=WORKER_MAC, dst=CLIENT_MAC)
                       / IP(src=POD_IP, dst=CLIENT_IP) / TCP(sport=POD_PORT, dport=CLIENT_PORT,
                                                             flags="SA", seq=5000, ack=1001))
        out = worker.egress(synack)
        assert out.verdict == "ok"
        ip = Ether(out.data)[IP]
        assert (ip.src, ip[TCP].sport, len(out.data)) == (VIP, NODE_PORT, len(synack))
        assert_checksums_valid(out.data)


def test_decap_of_a_syn_without_tlv_clears_the_flow(node: Node, obj_path: Path) -> None:
    geneve_lb(node)
    wire = node.lb(tcp_frame("S")).data
    bare = geneve(inner_syn(), opts=b"")
    worker = backend_node(obj_path, node)
    with worker.dp:
        worker.lb(wire)
        assert len(worker.dp.revnat_entries()) == 1
        res = worker.lb(bare)
        assert res.verdict == "ok"
        assert res.data[14:] == inner_syn()
        assert worker.dp.revnat_entries() == []


def geneve(inner_ip: bytes, *, opts: bytes = TLV, first: int | None = None, flags: int = 0,
           proto: int = 0x6558, inner_type: int = 0x0800, dst: str = WORKER_IP,
           ulen_delta: int = 0, cut: int = 0) -> bytes:
    """A Geneve frame from the LB node to ``dst`` around ``inner_ip`` (hand-built,
    so every field can lie); ``cut`` bytes are taken off the end, lengths kept."""
    first = len(opts) // 4 if first is None else first
    hdr = bytes([first, flags]) + struct.pack("!H", proto) + bytes([0, 0, 2, 0])
    inner_eth = Ether(src=CLIENT_MAC, dst=LB_MAC, type=inner_type).build()
    payload = hdr + opts + inner_eth + inner_ip
    udp = struct.pack("!HHHH", 51000, 6081, 8 + len(payload) + ulen_delta, 0)
    ip = IP(src=VIP, dst=dst, ttl=64, proto=17, len=20 + 8 + len(payload) - cut)
    frame = bytes(Ether(src=LB_MAC, dst=WORKER_MAC) / ip / Raw(udp + payload))
    return frame[: len(frame) - cut] if cut else frame


UNKNOWN = bytes.fromhex("01020101") + bytes(4)  # class 0x0102 type 0x01, 1 word: skipped
MALFORMED = {
    "short geneve header": (geneve(b"", opts=b"", cut=18), "geneve_truncated"),
    "options longer than the packet": (geneve(inner_syn(), first=63), "geneve_truncated"),
    "udp length lies": (geneve(inner_syn(), ulen_delta=4), "geneve_bad_hdr"),
    "version 1": (geneve(inner_syn(), first=0x43), "geneve_bad_hdr"),
    "control packet": (geneve(inner_syn(), flags=0x80), "geneve_bad_hdr"),
    "not ethernet inside": (geneve(inner_syn(), proto=0x0800), "geneve_bad_hdr"),
    "option runs past the options": (
        geneve(inner_syn(), opts=bytes.fromhex("014b8103") + TLV[4:]), "geneve_bad_opt"),
    "dsr tlv of the ipv6 size": (
        geneve(inner_syn(), opts=bytes.fromhex("014b8105") + bytes(20)), "geneve_bad_opt"),
    "option of 31 words in 3": (
        geneve(inner_syn(), opts=bytes.fromhex("0102011f") + bytes(8)), "geneve_bad_opt"),
    "nine options": (geneve(inner_syn(), opts=UNKNOWN[:4] * 9), "geneve_bad_opt"),
    "unknown critical option": (
        geneve(inner_syn(), opts=bytes.fromhex("01028001") + bytes(4) + TLV), "geneve_crit_opt"),
    "inner not ipv4": (geneve(inner_syn(), inner_type=0x86DD), "geneve_inner"),
    "inner length lies": (geneve(inner_syn()[:-4]), "geneve_inner"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_geneve_is_a_named_drop(node: Node, obj_path: Path, case: str) -> None:
    frame, reason = MALFORMED[case]
    worker = backend_node(obj_path, node)
    with worker.dp:
        res = worker.lb(frame)
        assert (res.verdict, res.drop_reason) == ("shot", reason), res
        assert worker.dp.revnat_entries() == []


def test_inner_length_lie_is_caught(node: Node, obj_path: Path) -> None:
    """The inner IPv4 header saying more than the frame holds (its own tot_len)."""
    bad = bytearray(inner_syn())
    bad[2:4] = struct.pack("!H", len(bad) + 8)
    worker = backend_node(obj_path, node)
    with worker.dp:
        res = worker.lb(geneve(bytes(bad)))
        assert (res.verdict, res.drop_reason) == ("shot", "geneve_inner")


def test_unknown_optional_option_is_skipped(node: Node, obj_path: Path) -> None:
    worker = backend_node(obj_path, node)
    with worker.dp:
        res = worker.lb(geneve(inner_syn(), opts=UNKNOWN + TLV))
        assert res.verdict == "ok"
        assert res.data[14:] == inner_syn()
        assert len(worker.dp.revnat_entries()) == 1


def test_geneve_not_for_this_node_passes_untouched(node: Node, obj_path: Path) -> None:
    frame = geneve(inner_syn(), dst=WORKER2_IP)
    worker = backend_node(obj_path, node)
    with worker.dp:
        res = worker.lb(frame)
        assert (res.verdict, res.data) == ("ok", frame)
        assert worker.dp.counters()["geneve_decap"] == 0


def test_geneve_off_passes_untouched(node: Node) -> None:
    frame = geneve(inner_syn(), dst=VIP)
    res = node.lb(frame)
    assert (res.verdict, res.data) == ("ok", frame)


def test_no_mtu_set_means_no_mtu_verdict_from_the_fib(node: Node) -> None:
    """The MTU is the datapath's call (dsr_config, before anything is written): with none
    set, a packet that grows past eth0's 1500 bytes is still sent (the FIB is asked for
    the route only; a GSO packet's length is not its segments')."""
    geneve_lb(node)
    big = tcp_frame("S", payload=bytes(1500 - 40))
    res = node.lb(big)
    assert res.verdict == "redirect", res
    assert IP(res.data[14:34]).len == 1500 + OVERHEAD_TLV
