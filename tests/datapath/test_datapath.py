"""The lab's DSR datapath, packet by packet (BPF_PROG_TEST_RUN), Cilium style.

Each test builds a frame with scapy, fills the maps of a freshly loaded
object, runs the real program and asserts on the bytes that come out. Test
runs happen inside a scratch network namespace (the FIB lookup and the
ifindex in the run context resolve there); one test attaches the programs
to veths and pushes a real TCP connection through LB and backend.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR, in4_chksum
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import checksum

from lab.datapath import (
    EVENT_NAMES,
    BackendEntry,
    DatapathError,
    DatapathObject,
    RevnatEntry,
    TestRunResult,
    build_object,
)
from lab.datapath import build as dp_build
from lab.datapath import tc as dp_tc
from lab.plumbing import nsutil
from lab.plumbing.names import netns_name, new_run_id
from lab.wire import dsropt

CLIENT, CLIENT_PORT = "172.18.0.1", 40000
VIP, NODEPORT = "172.18.0.2", 32000
POD, POD2, POD_PORT = "10.0.2.123", "10.0.0.216", 80
WORKER, WORKER2 = "172.18.0.4", "172.18.0.3"
CLIENT_MAC, NODE_MAC, WORKER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:04"
SEED_OPT = bytes.fromhex("9a08007d020012ac")
NEIGH_PERMANENT = 0x80
DSR_H = Path(__file__).resolve().parents[2] / "bpf" / "dsr.h"


# --- fixtures ----------------------------------------------------------------


@dataclass
class Node:
    """A loaded datapath plus the namespace/interface its test runs pretend to be on."""

    dp: DatapathObject
    netns: str
    ifindex: int

    def run(self, program: str, frame: bytes, repeat: int = 1) -> TestRunResult:
        with nsutil.in_netns(self.netns):
            return self.dp.test_run(
                program, frame, repeat=repeat, ingress_ifindex=self.ifindex, ifindex=self.ifindex
            )

    def lb(self, frame: bytes) -> TestRunResult:
        return self.run("dsr_from_netdev", frame)

    def egress(self, frame: bytes) -> TestRunResult:
        return self.run("dsr_to_netdev", frame)


def scratch_name(tag: str) -> str:
    return netns_name(new_run_id(), tag)


@pytest.fixture(scope="session")
def obj_path() -> Path:
    return build_object()


@pytest.fixture(scope="module")
def fwd_ns() -> Iterator[tuple[str, int]]:
    """A namespace shaped like the LB node: eth0 172.18.0.2/24, routes to the pod CIDRs,
    a permanent neighbour for worker (172.18.0.4) and none for worker2 (172.18.0.3)."""
    name = scratch_name("dp-fwd")
    with nsutil.scratch(name):
        nsutil.write_sysctl(name, "net.ipv4.ip_forward", 1)
        with nsutil.open_iproute(name) as ipr:
            ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": "peer0"})
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=idx, address=NODE_MAC, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="peer0")[0], state="up")
            ipr.addr("add", index=idx, address=VIP, prefixlen=24)
            ipr.route("add", dst="10.0.2.0/24", gateway=WORKER)
            ipr.route("add", dst="10.0.0.0/24", gateway=WORKER2)
            ipr.neigh("add", dst=WORKER, lladdr=WORKER_MAC, ifindex=idx, state=NEIGH_PERMANENT)
        yield name, idx


@pytest.fixture(scope="module")
def bare_ns() -> Iterator[str]:
    """A namespace with only lo: every FIB lookup fails there."""
    name = scratch_name("dp-bare")
    with nsutil.scratch(name):
        yield name


@pytest.fixture
def dp(obj_path: Path) -> Iterator[DatapathObject]:
    with DatapathObject.load(obj_path) as obj:
        yield obj


@pytest.fixture
def node(dp: DatapathObject, fwd_ns: tuple[str, int]) -> Node:
    return Node(dp, *fwd_ns)


@pytest.fixture
def bare_node(dp: DatapathObject, bare_ns: str) -> Node:
    return Node(dp, bare_ns, 0)


# --- frames and checks ---------------------------------------------------------


def tcp_frame(
    flags: str = "S",
    *,
    sport: int = CLIENT_PORT,
    dst: str = VIP,
    dport: int = NODEPORT,
    options: Sequence[object] = (),
    payload: bytes = b"",
) -> bytes:
    ip = IP(src=CLIENT, dst=dst, ttl=64, id=7, options=list(options))
    frame = (
        Ether(src=CLIENT_MAC, dst=NODE_MAC)
        / ip
        / TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if "A" in flags else 0)
    )
    if payload:
        frame = frame / Raw(payload)
    return bytes(frame)


def udp_frame(sport: int = CLIENT_PORT, dport: int = NODEPORT, payload: bytes = b"ping") -> bytes:
    frame = (
        Ether(src=CLIENT_MAC, dst=NODE_MAC)
        / IP(src=CLIENT, dst=VIP, ttl=64)
        / UDP(sport=sport, dport=dport)
    )
    return bytes(frame / Raw(payload))


def ip_header(frame: bytes) -> bytes:
    ihl = (frame[14] & 0x0F) * 4
    return frame[14 : 14 + ihl]


def ones_complement_ok(data: bytes) -> bool:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def assert_checksums_valid(frame: bytes) -> None:
    """IPv4 header checksum, and the L4 checksum recomputed by scapy over the pseudo-header."""
    ip = Ether(frame)[IP]
    assert ones_complement_ok(ip_header(frame)), "IPv4 header checksum is wrong"
    ihl = ip.ihl * 4
    l4 = frame[14 + ihl : 14 + ip.len]
    if ip.proto == 17 and l4[6:8] == b"\0\0":
        return  # UDP without checksum
    assert in4_chksum(ip.proto, ip, l4) == 0, f"{ip.proto} checksum is wrong"


def ct_backend(dp: DatapathObject, sport: int = CLIENT_PORT) -> str:
    (entry,) = [e for e in dp.ct_entries() if e.client_port == sport]
    return entry.backend_ip


# --- loading and building ------------------------------------------------------


def test_object_loads_through_verifier(obj_path: Path) -> None:
    try:
        obj = DatapathObject.load(obj_path)
    except DatapathError as exc:  # pragma: no cover - the message carries the verifier log
        pytest.fail(f"dsr.o was rejected:\n{exc}")
    with obj:
        assert obj.program_fd("dsr_from_netdev") > 0
        assert obj.program_fd("dsr_to_netdev") > 0
        assert obj.option_order() == "host"
    assert obj.closed
    with pytest.raises(DatapathError, match="closed"):
        obj.counters()


def test_missing_object_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatapathError, match="bpf_object__open_file"):
        DatapathObject.load(tmp_path / "missing.o")


def test_build_is_cached(obj_path: Path) -> None:
    mtime = obj_path.stat().st_mtime_ns
    assert build_object() == obj_path
    assert obj_path.stat().st_mtime_ns == mtime


def test_clang_error_is_reported(tmp_path: Path) -> None:
    (tmp_path / "dsr.c").write_text("int broken(void) { return nope; }\n")
    with pytest.raises(DatapathError, match="nope") as info:
        build_object(source_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert "error" in info.value.log


def test_verifier_rejection_carries_log(tmp_path: Path) -> None:
    src = dp_build.bpf_source_dir()
    for header in src.glob("*.h"):
        (tmp_path / header.name).write_text(header.read_text())
    # the real programs, plus an unchecked packet read in dsr_to_netdev
    broken = (
        (src / "dsr.c")
        .read_text()
        .replace(
            "\tif (parse(skb, &p) != PARSE_L4)\n\t\treturn TC_ACT_OK;\n",
            "\tif (((__u8 *)(long)skb->data)[40] == 1)\n\t\treturn TC_ACT_SHOT;\n"
            "\tif (parse(skb, &p) != PARSE_L4)\n\t\treturn TC_ACT_OK;\n",
        )
    )
    assert broken != (src / "dsr.c").read_text()
    (tmp_path / "dsr.c").write_text(broken)
    obj = build_object(source_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(DatapathError, match="verifier log") as info:
        DatapathObject.load(obj)
    assert "invalid access to packet" in info.value.log


def test_event_names_match_c_enum() -> None:
    enum = dict(
        (int(value), name.lower().removeprefix("ev_"))
        for name, value in re.findall(
            r"^\s*((?:EV|DROP)_[A-Z0-9_]+) = (\d+),", DSR_H.read_text(), re.M
        )
        if name not in ("EV_NONE", "EV_MAX")
    )
    assert enum == EVENT_NAMES


# --- the LB node: service path --------------------------------------------------


def test_syn_gets_cilium_option_and_is_redirected(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
    frame = tcp_frame("S")
    res = node.lb(frame)

    assert res.verdict == "redirect", res
    out = res.data
    assert len(out) == len(frame) + 8
    pkt = Ether(out)
    ip, tcp = pkt[IP], pkt[TCP]
    assert out[14 + 20 : 14 + 28] == SEED_OPT == dsropt.encode(VIP, NODEPORT)
    assert ip.ihl == 7
    assert ip.len == Ether(frame)[IP].len + 8
    assert (ip.src, tcp.sport) == (CLIENT, CLIENT_PORT)
    assert (ip.dst, tcp.dport) == (POD, POD_PORT)
    assert ip.ttl == 63
    assert (pkt.dst, pkt.src) == (WORKER_MAC, NODE_MAC)
    assert tcp.flags == "S"
    assert tcp.seq == 1000
    assert_checksums_valid(out)
    counters = node.dp.counters()
    assert counters["opt_inserted"] == 1
    assert counters["fib_redirect"] == 1


def test_non_syn_keeps_backend_and_gets_no_option(node: Node) -> None:
    backends = [BackendEntry(POD, POD_PORT), BackendEntry("10.0.2.124", 8080)]
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=backends)
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
        assert pkt[TCP].dport == (POD_PORT if chosen == POD else 8080)
        assert pkt[IP].src == CLIENT
        assert pkt[TCP].sport == CLIENT_PORT
        assert pkt[IP].ttl == 63
        assert_checksums_valid(res.data)
    assert node.dp.counters()["ct_hit"] == 3
    assert node.dp.counters()["opt_inserted"] == 1


def test_random_selection_uses_every_backend(node: Node) -> None:
    node.dp.add_service(
        VIP, NODEPORT, "tcp", dsr=True,
        backends=[BackendEntry(POD, POD_PORT), BackendEntry(POD2, POD_PORT)]
    )
    for sport in range(41000, 41064):
        node.lb(tcp_frame("S", sport=sport))
    chosen = {e.backend_ip for e in node.dp.ct_entries()}
    assert chosen == {POD, POD2}  # 64 flows all on one backend: p = 2**-63
    assert len(node.dp.ct_entries()) == 64


def test_udp_gets_option_on_every_datagram(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "udp", dsr=True, backends=[BackendEntry(POD, 53)])
    for i in range(3):
        frame = udp_frame(payload=b"datagram %d" % i)
        res = node.lb(frame)
        assert res.verdict == "redirect"
        pkt = Ether(res.data)
        assert res.data[34:42] == SEED_OPT
        assert pkt[IP].ihl == 7
        assert pkt[IP].len == Ether(frame)[IP].len + 8
        assert (pkt[IP].dst, pkt[UDP].dport) == (POD, 53)
        assert pkt[Raw].load == b"datagram %d" % i
        assert_checksums_valid(res.data)
    assert node.dp.counters()["opt_inserted"] == 3


def test_udp_zero_checksum_stays_zero(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "udp", dsr=True, backends=[BackendEntry(POD, 53)])
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
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
    out = node.lb(tcp_frame("S")).data
    assert out[34:42] == dsropt.encode(VIP, NODEPORT, order)
    if order == "network":
        assert out[34:42] == bytes.fromhex("9a087d00ac120002")
    assert dsropt.decode(out[34:42], order) == (VIP, NODEPORT)


def test_non_dsr_service_is_plain_dnat(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=False, backends=[BackendEntry(POD, POD_PORT)])
    frame = tcp_frame("S")
    res = node.lb(frame)
    pkt = Ether(res.data)
    assert res.verdict == "redirect"
    assert len(res.data) == len(frame)
    assert pkt[IP].ihl == 5
    assert pkt[IP].dst == POD
    assert pkt[IP].src == CLIENT
    assert_checksums_valid(res.data)


def test_local_backend_dnat_without_option_and_revnat(node: Node) -> None:
    node.dp.add_service(
        VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT, local=True)]
    )
    frame = tcp_frame("S")
    res = node.lb(frame)
    assert res.verdict == "ok"
    pkt = Ether(res.data)
    assert len(res.data) == len(frame)
    assert pkt[IP].ihl == 5
    assert (pkt[IP].dst, pkt[TCP].dport) == (POD, POD_PORT)
    assert pkt[IP].ttl == 64  # the stack forwards it to the pod (and lowers the TTL)
    assert_checksums_valid(res.data)
    assert node.dp.revnat_entries() == [
        RevnatEntry(CLIENT, CLIENT_PORT, POD, POD_PORT, "tcp", VIP, NODEPORT)
    ]
    (ct,) = node.dp.ct_entries()
    assert ct.local
    assert not ct.dsr

    reply = bytes(
        Ether(src=NODE_MAC, dst=CLIENT_MAC)
        / IP(src=POD, dst=CLIENT)
        / TCP(sport=POD_PORT, dport=CLIENT_PORT, flags="SA", seq=5, ack=1001)
    )
    out = node.egress(reply)
    assert out.verdict == "ok"
    rpkt = Ether(out.data)
    assert (rpkt[IP].src, rpkt[TCP].sport) == (VIP, NODEPORT)
    assert (rpkt[IP].dst, rpkt[TCP].dport) == (CLIENT, CLIENT_PORT)
    assert_checksums_valid(out.data)


def test_fib_without_neighbour_uses_redirect_neigh(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD2, POD_PORT)])
    res = node.lb(tcp_frame("S"))
    assert res.verdict == "redirect"
    pkt = Ether(res.data)
    assert pkt[IP].dst == POD2
    assert pkt[IP].ttl == 63
    assert (pkt.src, pkt.dst) == (CLIENT_MAC, NODE_MAC)  # the neighbour layer fills MACs
    assert node.dp.counters()["fib_redirect_neigh"] == 1


def test_no_route_leaves_forwarding_to_the_stack(bare_node: Node) -> None:
    bare_node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
    res = bare_node.lb(tcp_frame("S"))
    assert res.verdict == "ok"
    pkt = Ether(res.data)
    assert res.data[34:42] == SEED_OPT
    assert pkt[IP].dst == POD
    assert pkt[IP].ttl == 64  # not lowered: the stack does it when it forwards
    assert_checksums_valid(res.data)
    assert bare_node.dp.counters()["fib_pass"] == 1


def test_service_without_backends_drops(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[])
    frame = tcp_frame("S")
    res = node.lb(frame)
    assert (res.verdict, res.drop_reason) == ("shot", "no_backend")
    assert res.data == frame


def test_service_update_and_removal(dp: DatapathObject) -> None:
    three = [BackendEntry(POD, 80), BackendEntry(POD2, 80),
             BackendEntry("10.0.1.5", 81, local=True)]
    dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=three)
    dp.add_service(VIP, NODEPORT, "udp", dsr=False, backends=three[:1])
    (svc,) = [s for s in dp.services() if s.proto == "tcp"]
    assert svc.backends == tuple(three)
    assert svc.dsr
    dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=three[:1])
    assert len(dp.map("lb_backends").keys()) == 2  # stale slots 2 and 3 removed
    assert dp.remove_service(VIP, NODEPORT, "tcp")
    assert not dp.remove_service(VIP, NODEPORT, "tcp")
    assert [s.proto for s in dp.services()] == ["udp"]


# --- existing IP options ---------------------------------------------------------


def test_existing_options_follow_the_dsr_option(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
    options = [IPOption_RR(routers=["0.0.0.0", "0.0.0.0"]), IPOption_NOP()]
    frame = tcp_frame("S", options=options)
    existing = ip_header(frame)[20:]
    assert len(existing) == 12
    res = node.lb(frame)
    assert res.verdict == "redirect"
    hdr = ip_header(res.data)
    assert len(hdr) == 40
    assert Ether(res.data)[IP].ihl == 10
    assert hdr[20:28] == SEED_OPT
    assert hdr[28:40] == existing
    assert_checksums_valid(res.data)


def test_options_filling_the_header_exactly_are_accepted(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
    frame = tcp_frame("S", options=[IPOption_RR(routers=["0.0.0.0"] * 7), IPOption_NOP()])
    assert len(ip_header(frame)) == 52  # 32 bytes of options: 20 + 32 + 8 = 60
    res = node.lb(frame)
    assert res.verdict == "redirect"
    assert Ether(res.data)[IP].ihl == 15
    assert ip_header(res.data)[20:28] == SEED_OPT
    assert_checksums_valid(res.data)


def test_options_too_long_for_the_dsr_option_are_dropped(node: Node) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
    frame = tcp_frame("S", options=[IPOption_RR(routers=["0.0.0.0"] * 8), IPOption_NOP()])
    assert len(ip_header(frame)) == 56  # 36 bytes of options
    res = node.lb(frame)
    assert res.verdict == "shot"
    assert res.drop_reason == "opt_too_long"
    assert res.data == frame
    assert node.dp.counters()["drop_opt_too_long"] == 1
    assert node.dp.ct_entries() == []


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
    node.dp.add_service(VIP, NODEPORT, "udp", dsr=True, backends=[BackendEntry(POD, 53)])
    frame = sized_udp(ip_len)
    res = node.lb(frame)
    counters = node.dp.counters()
    if fits:
        assert res.verdict == "redirect"
        assert len(res.data) == 14 + 1500 == len(frame) + 8
        pkt = Ether(res.data)
        assert (pkt[IP].len, pkt[IP].ihl) == (ip_len + 8, 7)
        assert res.data[34:42] == SEED_OPT
        assert (pkt[IP].dst, pkt[UDP].dport) == (POD, 53)
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
    node.dp.add_service(VIP, NODEPORT, "udp", dsr=True, backends=[BackendEntry(POD, 53)])
    assert node.lb(sized_udp(100)).verdict == "redirect"
    res = node.lb(sized_udp(1500))
    assert (res.verdict, res.drop_reason) == ("shot", "frag_needed")
    assert node.lb(sized_udp(1492)).verdict == "redirect"
    assert [e.backend_ip for e in node.dp.ct_entries()] == [POD]
    counters = node.dp.counters()
    assert (counters["ct_hit"], counters["opt_inserted"], counters["drop_frag_needed"]) == (
        2, 2, 1)


def test_full_size_tcp_syn_is_dropped_and_later_segments_are_not(node: Node) -> None:
    node.dp.set_mtu(1500)
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
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
    assert (pkt[IP].dst, pkt[TCP].dport) == (POD, POD_PORT)
    assert pkt[IP].ttl == 63
    assert_checksums_valid(res.data)
    counters = node.dp.counters()
    assert (counters["drop_frag_needed"], counters["opt_inserted"], counters["ct_hit"]) == (
        1, 1, 1)


def test_local_and_non_dsr_backends_ignore_the_mtu(node: Node) -> None:
    node.dp.set_mtu(1500)
    node.dp.add_service(VIP, NODEPORT, "udp", dsr=True,
                        backends=[BackendEntry(POD, 53, local=True)])
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=False, backends=[BackendEntry(POD, POD_PORT)])
    for frame, verdict in ((sized_udp(1500), "ok"), (sized_tcp(1500, "S"), "redirect")):
        res = node.lb(frame)  # DNAT without the option: the packet does not grow
        assert (res.verdict, len(res.data)) == (verdict, len(frame))
        assert Ether(res.data)[IP].dst == POD
    assert node.dp.counters()["drop_frag_needed"] == 0


def test_mtu_zero_disables_the_check(node: Node) -> None:
    assert node.dp.mtu() == 0  # a fresh object does not check
    node.dp.set_mtu(1500)
    node.dp.set_mtu(0)
    node.dp.add_service(VIP, NODEPORT, "udp", dsr=True, backends=[BackendEntry(POD, 53)])
    frame = sized_udp(1500)
    res = node.lb(frame)
    assert len(res.data) == len(frame) + 8
    assert Ether(res.data)[IP].len == 1508
    assert res.data[34:42] == SEED_OPT
    assert_checksums_valid(res.data)
    # the datapath let it grow; the FIB lookup (tot_len 1508 > eth0's 1500) then
    # declines the redirect and leaves the packet to the stack
    assert res.verdict == "ok"
    counters = node.dp.counters()
    assert (counters["opt_inserted"], counters["fib_pass"]) == (1, 1)
    assert counters["drop_frag_needed"] == 0


def test_mtu_setting_keeps_the_other_config_fields(dp: DatapathObject) -> None:
    dp.set_option_order("network")
    dp.set_selection_seed(77)
    dp.set_mtu(9000)
    assert (dp.option_order(), dp.selection_seed(), dp.mtu()) == ("network", 77, 9000)
    dp.set_option_order("host")
    dp.set_selection_seed(None)
    assert dp.mtu() == 9000
    dp.set_selection_seed(5)
    dp.set_mtu(1500)
    assert (dp.option_order(), dp.selection_seed(), dp.mtu()) == ("host", 5, 1500)
    for bad in (-1, 1, 67, 65536):
        with pytest.raises(ValueError, match="mtu"):
            dp.set_mtu(bad)
    assert dp.mtu() == 1500


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
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
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
    "arp": bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT, pdst=VIP)),
    "ipv6": bytes(
        Ether(src=CLIENT_MAC, dst=NODE_MAC) / IPv6(src="fd00::1", dst="fd00::2") / TCP(dport=32000)
    ),
    "icmp-to-vip": bytes(Ether(src=CLIENT_MAC, dst=NODE_MAC) / IP(src=CLIENT, dst=VIP) / ICMP()),
    "fragment-to-service": bytes(
        Ether(src=CLIENT_MAC, dst=NODE_MAC)
        / IP(src=CLIENT, dst=VIP, flags="MF", frag=0)
        / TCP(sport=CLIENT_PORT, dport=NODEPORT, flags="S")
    ),
    "later-fragment": bytes(
        Ether(src=CLIENT_MAC, dst=NODE_MAC)
        / IP(src=CLIENT, dst=VIP, frag=3, proto=6)
        / Raw(bytes(24))
    ),
    "bare-ethernet": bytes(Ether(src=CLIENT_MAC, dst=NODE_MAC, type=0x88B5)),
}


@pytest.mark.parametrize("program", ["dsr_from_netdev", "dsr_to_netdev"])
@pytest.mark.parametrize("case", sorted(NOT_OURS))
def test_foreign_traffic_passes_untouched(node: Node, program: str, case: str) -> None:
    node.dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
    frame = NOT_OURS[case]
    res = node.run(program, frame)
    assert (res.verdict, res.data) == ("ok", frame)
    assert node.dp.ct_entries() == []


def test_test_run_of_a_truncated_ipv4_header_is_refused_by_the_kernel(node: Node) -> None:
    # Linux refuses BPF_PROG_TEST_RUN input whose IPv4 header cannot be pulled,
    # so a frame cut inside the IPv4 header cannot reach the program here.
    with pytest.raises(DatapathError, match="EINVAL"):
        node.lb(tcp_frame("S")[: 14 + 10])


def test_repeat_reports_duration(node: Node) -> None:
    # repeats run on the same skb, so use a frame the program leaves unchanged
    frame = backend_syn(SEED_OPT)
    res = node.run("dsr_from_netdev", frame, repeat=1000)
    assert (res.verdict, res.data) == ("ok", frame)
    assert res.duration_ns > 0
    assert node.dp.counters()["backend_learned"] == 1000


# --- the backend node ---------------------------------------------------------------


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
        Ether(src=WORKER_MAC, dst=NODE_MAC)
        / IP(src=CLIENT, dst=POD, ttl=63)
        / TCP(sport=CLIENT_PORT, dport=POD_PORT, flags=flags)
    )
    return splice_ip_options(bytes(pkt), (opt or b"") + extra)


def test_backend_learns_service_from_option(node: Node) -> None:
    frame = backend_syn(SEED_OPT)
    assert Ether(frame)[IP].ihl == 7
    res = node.lb(frame)
    assert (res.verdict, res.data) == ("ok", frame)  # the option is never stripped
    assert node.dp.revnat_entries() == [
        RevnatEntry(CLIENT, CLIENT_PORT, POD, POD_PORT, "tcp", VIP, NODEPORT)
    ]
    assert node.dp.counters()["backend_learned"] == 1

    reply = bytes(
        Ether(src=NODE_MAC, dst=CLIENT_MAC)
        / IP(src=POD, dst=CLIENT, ttl=64)
        / TCP(sport=POD_PORT, dport=CLIENT_PORT, flags="SA", seq=77, ack=1001)
    )
    out = node.egress(reply)
    assert out.verdict == "ok"
    pkt = Ether(out.data)
    assert (pkt[IP].src, pkt[TCP].sport) == (VIP, NODEPORT)
    assert (pkt[IP].dst, pkt[TCP].dport) == (CLIENT, CLIENT_PORT)
    assert pkt[TCP].flags == "SA"
    assert pkt[TCP].seq == 77
    assert_checksums_valid(out.data)

    unrelated = bytes(
        Ether() / IP(src=POD, dst="172.18.0.9") / TCP(sport=POD_PORT, dport=CLIENT_PORT, flags="A")
    )
    assert node.egress(unrelated).data == unrelated


def test_backend_reads_network_order_when_configured(node: Node) -> None:
    node.dp.set_option_order("network")
    node.lb(backend_syn(dsropt.encode(VIP, NODEPORT, "network")))
    (entry,) = node.dp.revnat_entries()
    assert (entry.service_ip, entry.service_port) == (VIP, NODEPORT)


def test_backend_udp_learns_on_any_datagram(node: Node) -> None:
    plain = (
        Ether(src=WORKER_MAC, dst=NODE_MAC) / IP(src=CLIENT, dst=POD) / UDP(sport=5353, dport=53)
    )
    frame = splice_ip_options(bytes(plain / Raw(b"q")), SEED_OPT)
    res = node.lb(frame)
    assert res.verdict == "ok"
    (entry,) = node.dp.revnat_entries()
    assert (entry.proto, entry.client_port, entry.service_port) == ("udp", 5353, NODEPORT)


def test_backend_syn_without_option_clears_state(node: Node) -> None:
    node.lb(backend_syn(SEED_OPT))
    assert len(node.dp.revnat_entries()) == 1
    node.lb(backend_syn(None, flags="A"))  # a non-SYN changes nothing
    assert len(node.dp.revnat_entries()) == 1
    node.lb(backend_syn(None))
    assert node.dp.revnat_entries() == []
    assert node.dp.counters()["backend_cleared"] == 1


@pytest.mark.parametrize(
    ("opt", "flags", "extra"),
    [
        (SEED_OPT, "SA", b""),  # SYN+ACK is not a first packet
        (b"\x01\x01\x01\x00", "S", SEED_OPT),  # the DSR option is not first
        (bytes.fromhex("9a0a007d020012ac0000"), "S", b"\0\0"),  # wrong length
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
        lb_dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
        wire = lb.lb(tcp_frame("S")).data
        res = be.lb(wire)
        assert (res.verdict, res.data) == ("ok", wire)
        assert be_dp.revnat_entries() == [
            RevnatEntry(CLIENT, CLIENT_PORT, POD, POD_PORT, "tcp", VIP, NODEPORT)
        ]
        assert lb_dp.revnat_entries() == []


# --- tc attachment --------------------------------------------------------------------


def _tc_filters(netns: str, dev: str, direction: str) -> str:
    argv = nsutil.exec_argv(netns, ["tc", "filter", "show", "dev", dev, direction])
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_attach_and_detach_on_veth(obj_path: Path, bare_ns: str) -> None:
    name = scratch_name("dp-tc")
    with nsutil.scratch(name):
        with nsutil.open_iproute(name) as ipr:
            ipr.link("add", ifname="a", kind="veth", peer={"ifname": "b"})
            idx = ipr.link_lookup(ifname="a")[0]
        with nsutil.in_netns(name):
            with DatapathObject.load(obj_path) as dp:
                dp.add_service(VIP, NODEPORT, "tcp", dsr=True,
                               backends=[BackendEntry(POD, POD_PORT)])
                ingress = dp.attach_tc(idx, "ingress", "dsr_from_netdev")
                egress = dp.attach_tc(idx, "egress", "dsr_to_netdev")
                again = dp.attach_tc(idx, "ingress", "dsr_from_netdev")  # replaces
                assert again.prog_id == ingress.prog_id
            # the object is closed: the filters keep the programs alive
            assert ingress.query_prog_id() == ingress.prog_id > 0
            assert egress.query_prog_id() == egress.prog_id > 0
            # another process (here: a new handle) finds the running datapath again
            found = dp_tc.find(idx, "ingress", "dsr_from_netdev")
            assert found is not None
            assert found.prog_id == ingress.prog_id
            with DatapathObject.from_prog_ids([found.prog_id]) as running:
                assert [s.vip for s in running.services()] == [VIP]
                res = running.test_run("dsr_from_netdev", tcp_frame("S"))
                assert res.data[34:42] == SEED_OPT
                assert running.counters()["opt_inserted"] == 1
                with pytest.raises(DatapathError, match="unknown program"):
                    running.test_run("dsr_to_netdev", tcp_frame("S"))
            assert dp_tc.find(idx, "egress", "x", priority=7) is None
        shown = _tc_filters(name, "a", "ingress")
        assert "dsr_from_netdev" in shown
        assert "direct-action" in shown
        assert "dsr_to_netdev" in _tc_filters(name, "a", "egress")

        with nsutil.in_netns(bare_ns), pytest.raises(DatapathError, match="namespace"):
            ingress.detach()  # not from another namespace than the one it attached in
        with nsutil.in_netns(name):
            with ingress, egress:
                pass
            assert ingress.query_prog_id() is None
            assert egress.query_prog_id() is None
            ingress.detach()  # idempotent
        assert "dsr_from_netdev" not in _tc_filters(name, "a", "ingress")


def test_attach_to_missing_interface_fails_cleanly(dp: DatapathObject, bare_ns: str) -> None:
    with nsutil.in_netns(bare_ns), pytest.raises(DatapathError, match="ifindex 4242"):
        dp.attach_tc(4242, "ingress", "dsr_from_netdev")
    with nsutil.in_netns(bare_ns), pytest.raises(DatapathError, match="unknown program"):
        dp.attach_tc(1, "ingress", "nope")


# --- a real connection through attached programs ---------------------------------------


@dataclass
class Lan:
    client: str
    lb: str
    backend: str


def _build_lan(sw: str, lan: Lan) -> None:
    """Three hosts on a bridge in ``sw``: client .1, LB .2, worker .4 with the pod address."""
    hosts = {lan.client: ("c", "172.18.0.1"), lan.lb: ("l", VIP), lan.backend: ("w", WORKER)}
    with nsutil.open_iproute(sw) as ipr:
        ipr.link("add", ifname="br0", kind="bridge")
        br = ipr.link_lookup(ifname="br0")[0]
        ipr.link("set", index=br, state="up")
        for host, (tag, _) in hosts.items():
            ipr.link("add", ifname=f"p-{tag}", kind="veth", peer={"ifname": f"h-{tag}"})
            ipr.link("set", index=ipr.link_lookup(ifname=f"p-{tag}")[0], master=br, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=f"h-{tag}")[0], net_ns_fd=host)
    for host, (tag, addr) in hosts.items():
        with nsutil.open_iproute(host) as ipr:
            idx = ipr.link_lookup(ifname=f"h-{tag}")[0]
            ipr.link("set", index=idx, ifname="eth0", state="up")
            ipr.addr("add", index=idx, address=addr, prefixlen=24)
    nsutil.write_sysctl(lan.lb, "net.ipv4.ip_forward", 1)
    with nsutil.open_iproute(lan.lb) as ipr:
        ipr.route("add", dst="10.0.2.0/24", gateway=WORKER)
    with nsutil.open_iproute(lan.backend) as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname="lo")[0], address=POD, prefixlen=32)


def _ifindex(netns: str, ifname: str) -> int:
    with nsutil.open_iproute(netns) as ipr:
        return int(ipr.link_lookup(ifname=ifname)[0])


def test_tcp_connection_through_lb_and_backend(obj_path: Path) -> None:
    """curl-like: client -> VIP:NodePort, LB adds the option, backend replies as the VIP."""
    run = new_run_id()
    lan = Lan(netns_name(run, "client"), netns_name(run, "lb"), netns_name(run, "worker"))
    sw = netns_name(run, "switch")
    with (
        nsutil.scratch(sw),
        nsutil.scratch(lan.client),
        nsutil.scratch(lan.lb),
        nsutil.scratch(lan.backend),
        DatapathObject.load(obj_path) as lb_dp,
        DatapathObject.load(obj_path) as be_dp,
    ):
        _build_lan(sw, lan)
        lb_dp.add_service(VIP, NODEPORT, "tcp", dsr=True, backends=[BackendEntry(POD, POD_PORT)])
        attachments = []
        for netns, obj in ((lan.lb, lb_dp), (lan.backend, be_dp)):
            with nsutil.in_netns(netns):
                idx = _ifindex(netns, "eth0")
                attachments.append((netns, obj.attach_tc(idx, "ingress", "dsr_from_netdev")))
                attachments.append((netns, obj.attach_tc(idx, "egress", "dsr_to_netdev")))

        server = nsutil.socket_in(lan.backend, socket.AF_INET, socket.SOCK_STREAM)
        client = nsutil.socket_in(lan.client, socket.AF_INET, socket.SOCK_STREAM)
        with server, client:
            server.bind((POD, POD_PORT))
            server.listen(1)
            server.settimeout(5)
            client.settimeout(5)
            client.connect((VIP, NODEPORT))
            assert client.getpeername() == (VIP, NODEPORT)
            conn, peer = server.accept()
            with conn:
                assert peer == (CLIENT, client.getsockname()[1])  # the pod sees the client
                client.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert conn.recv(100).startswith(b"GET /")
                conn.sendall(b"PodName: worker | PodIP: eth0 10.0.2.123/32")
                assert client.recv(100).endswith(b"10.0.2.123/32")

        lb_counts, be_counts = lb_dp.counters(), be_dp.counters()
        assert lb_counts["opt_inserted"] == 1  # only the SYN
        assert lb_counts["ct_hit"] >= 2  # ACK, data, FIN: DNATed without option
        assert be_counts["backend_learned"] == 1
        assert be_counts["revnat_rewrite"] >= 2  # SYN+ACK and the reply data
        assert lb_counts["revnat_rewrite"] == 0  # the LB never sees a reply
        for netns, att in attachments:
            with nsutil.in_netns(netns):
                att.detach()
