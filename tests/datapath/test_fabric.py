"""The lab's fabric program (bpf/fabric.c) frame by frame (BPF_PROG_TEST_RUN): options
stripped with the header made whole again; a foreign source dropped by the
source/destination check, the node's own and its pods' addresses let through; a
port's random loss, near the share asked over many runs; the host-side program
(a fault's loss on a host's own interface) passing with "unspec", so that the
host's own filter after it still runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from lab.datapath.fabric import U32_RANGE, FabricObject, FabricPort, loss_threshold
from lab.datapath.testrun import run_program
from lab.plumbing import nsutil
from tests.datapath.frames import assert_checksums_valid, backend_syn
from tests.seed import CLIENT_IP, OPTION, POD_CIDR, POD_IP, VIP, WORKER_IP

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


@pytest.fixture
def fabric() -> Iterator[FabricObject]:
    with FabricObject.load() as f:
        yield f


def run(fabric: FabricObject, ns: str, ifindex: int, frame: bytes) -> tuple[str, bytes]:
    with nsutil.in_netns(ns):
        res = run_program(fabric.prog_fd, frame, ingress_ifindex=ifindex, ifindex=ifindex)
    return res.verdict, res.data


def test_options_are_stripped_and_the_header_made_whole(
        fabric: FabricObject, fwd_ns: tuple[str, int]) -> None:
    ns, idx = fwd_ns
    fabric.set_port(FabricPort(idx, VIP, strip_options=True))
    frame = backend_syn(OPTION, extra=b"\x01\x01\x01\x00")  # the DSR option and 4 NOPs
    assert Ether(frame)[IP].ihl == 8
    verdict, out = run(fabric, ns, idx, frame)
    assert verdict == "ok"
    pkt = Ether(out)
    assert pkt[IP].ihl == 5
    assert pkt[IP].len == Ether(frame)[IP].len - 12
    assert bytes(pkt[TCP]) == bytes(Ether(frame)[TCP])  # the segment itself untouched
    assert_checksums_valid(out)
    plain = bytes(Ether() / IP(src=CLIENT_IP, dst=POD_IP) / UDP(sport=1, dport=2) / Raw(b"x"))
    assert run(fabric, ns, idx, plain) == ("ok", plain)
    assert fabric.counters()["stripped"] == 1


@pytest.mark.parametrize(("src", "verdict"), [(CLIENT_IP, "shot"), (VIP, "ok"),
                                              (POD_IP, "ok"), ("10.9.9.9", "shot")])
def test_the_source_check_passes_only_the_nodes_addresses(
        fabric: FabricObject, fwd_ns: tuple[str, int], src: str, verdict: str) -> None:
    ns, idx = fwd_ns
    fabric.set_port(FabricPort(idx, VIP, POD_CIDR, source_dest_check=True))
    frame = bytes(Ether() / IP(src=src, dst=WORKER_IP) / TCP(sport=40000, dport=80, flags="S"))
    got, out = run(fabric, ns, idx, frame)
    assert got == verdict
    if verdict == "ok":
        assert out == frame
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT_IP, pdst=VIP))
    assert run(fabric, ns, idx, arp) == ("ok", arp)  # not IPv4: not the check's business


def test_a_port_the_fabric_was_not_told_about_is_left_alone(
        fabric: FabricObject, fwd_ns: tuple[str, int]) -> None:
    ns, idx = fwd_ns
    frame = backend_syn(OPTION)
    assert run(fabric, ns, idx, frame) == ("ok", frame)
    assert fabric.counters() == {"passed": 0, "stripped": 0, "src_dst_dropped": 0,
                                 "strip_failed": 0, "lost": 0, "ipv6_ext_dropped": 0}


@pytest.mark.parametrize(("percent", "threshold"), [(0, 0), (50, 1 << 31), (100, U32_RANGE - 1),
                                                    (0.5, round(U32_RANGE / 200))])
def test_a_loss_share_is_a_threshold_of_the_random_u32(percent: float, threshold: int) -> None:
    assert loss_threshold(percent) == threshold


@pytest.mark.parametrize("percent", [-1, 100.5])
def test_a_loss_share_outside_0_to_100_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.100 %"):
        loss_threshold(percent)


RUNS = 20_000


@pytest.mark.parametrize("percent", [0, 10, 50, 100])
def test_a_ports_loss_drops_about_that_share_of_frames(
        fabric: FabricObject, fwd_ns: tuple[str, int], percent: int) -> None:
    """20,000 runs of one frame: the share lost is the one asked, within 5 standard
    deviations (0 and 100 % exactly); what passes is untouched."""
    ns, idx = fwd_ns
    fabric.set_port(FabricPort(idx, VIP, loss_percent=percent))
    frame = bytes(Ether() / IP(src=POD_IP, dst=CLIENT_IP) / TCP(sport=80, dport=40000,
                                                                 flags="A") / Raw(b"x" * 100))
    with nsutil.in_netns(ns):
        res = run_program(fabric.prog_fd, frame, repeat=RUNS, ingress_ifindex=idx, ifindex=idx)
    counts = fabric.counters()
    assert counts["lost"] + counts["passed"] == RUNS
    p = percent / 100
    margin = 5 * (RUNS * p * (1 - p)) ** 0.5
    assert abs(counts["lost"] - RUNS * p) <= margin, counts
    if percent == 0:
        assert (res.verdict, res.data) == ("ok", frame)
    if percent == 100:
        assert res.verdict == "shot"


def test_on_a_host_a_passed_frame_goes_on_to_the_next_filter(
        fabric: FabricObject, fwd_ns: tuple[str, int]) -> None:
    """``fabric_on_host`` answers "unspec" (TC_ACT_UNSPEC: the next filter on the hook
    runs) for what it lets through, on its port and on any other, and "shot" for a
    frame it loses."""
    ns, idx = fwd_ns
    frame = backend_syn(OPTION)

    def host_run() -> tuple[str, bytes]:
        with nsutil.in_netns(ns):
            res = run_program(fabric.host_prog_fd, frame, ingress_ifindex=idx, ifindex=idx)
        return res.verdict, res.data

    assert host_run() == ("unspec", frame)  # not a port it was told about
    fabric.set_port(FabricPort(idx, VIP, loss_percent=0))
    assert host_run() == ("unspec", frame)
    fabric.set_port(FabricPort(idx, VIP, loss_percent=100))
    assert host_run()[0] == "shot"
    assert fabric.counters()["lost"] == 1


# the DNATed IPv6 SYN as the LB node sends it: the DSR Destination Options header
# (option 0x1B, 20 bytes: service address, port, padding) after the IPv6 header
DSR6_OPT = PadN(otype=0x1B, optdata=bytes.fromhex("fc00f8530ccde7930000000000000002")
                + (32000).to_bytes(2, "big") + bytes(2))
V6_CLIENT, V6_POD = "fc00:f853:ccd:e793::1", "fd00:10:244:2::7b"


def _v6(*ext: object) -> bytes:
    pkt = Ether() / IPv6(src=V6_CLIENT, dst=V6_POD)
    for hdr in ext:
        pkt = pkt / hdr
    return bytes(pkt / TCP(sport=40000, dport=80, flags="S"))


@pytest.mark.parametrize("ext", [
    IPv6ExtHdrDestOpt(options=[DSR6_OPT]), IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(),
    IPv6ExtHdrFragment()], ids=["dsr-dest-opts", "hop-by-hop", "routing", "fragment"])
def test_an_ipv6_frame_with_an_extension_header_is_dropped(
        fabric: FabricObject, fwd_ns: tuple[str, int], ext: object) -> None:
    ns, idx = fwd_ns
    fabric.set_port(FabricPort(idx, VIP, drop_ipv6_ext=True))
    frame = _v6(ext)
    assert run(fabric, ns, idx, frame)[0] == "shot"
    assert fabric.counters()["ipv6_ext_dropped"] == 1


def test_ipv6_without_extension_headers_and_ipv4_pass_the_ext_header_rule(
        fabric: FabricObject, fwd_ns: tuple[str, int]) -> None:
    ns, idx = fwd_ns
    fabric.set_port(FabricPort(idx, VIP, drop_ipv6_ext=True))
    plain6 = _v6()
    assert run(fabric, ns, idx, plain6) == ("ok", plain6)
    # IPv4 with the DSR option (an IPv4 "extension") is not this rule's business
    v4 = backend_syn(OPTION)
    assert run(fabric, ns, idx, v4) == ("ok", v4)
    assert fabric.counters()["ipv6_ext_dropped"] == 0


def test_the_ext_header_rule_is_per_port_and_strip_options_leaves_ipv6_alone(
        fabric: FabricObject, fwd_ns: tuple[str, int]) -> None:
    """A port without the rule passes the DSR header, whatever else it does to IPv4:
    IPv6 has no IPv4 options to strip."""
    ns, idx = fwd_ns
    fabric.set_port(FabricPort(idx, VIP, POD_CIDR, strip_options=True,
                               source_dest_check=True))
    frame = _v6(IPv6ExtHdrDestOpt(options=[DSR6_OPT]))
    assert run(fabric, ns, idx, frame) == ("ok", frame)
    assert fabric.counters()["ipv6_ext_dropped"] == 0
