"""IPv6 DSR on the lab's datapath, program by program (BPF_PROG_TEST_RUN).

Cilium's bpf/tests style: build the packet with scapy, fill the maps, run
the real program in a scratch namespace shaped by the runner (eth0 with the
service address, a /128 route and a permanent neighbour per backend), check
the bytes. What each test pins:

* the LB path: the Destination Options extension's bytes, payload length
  + 24, hop limit - 1, DNAT keeping the client, TCP/UDP checksums valid
  (scapy recomputes them), on a SYN and every UDP datagram, not on a later
  TCP segment of the flow;
* the backend's node: the extension teaches dsr6_revnat, the packet passes
  unchanged, the reply leaves from the service with a valid checksum, a
  SYN without it clears the entry;
* too big: ICMPv6 Packet Too Big (MTU - 24) with a valid checksum, or the
  named drop with DSR ICMP errors off;
* the extension-header rule and malformed IPv6: a named drop or an
  untouched pass, never a changed packet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from lab.datapath import BackendEntry, DatapathObject, RevnatEntry, build_object
from lab.datapath.runner import DatapathRunner, PacketResult, RunConfig, node_mac
from lab.datapath.selection import Flow, seeded_slot
from lab.wire.endpoint import Endpoint
from tests.datapath.fuzzgen import check_result

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

CLIENT, SVC, BACKEND = "fd00:c::1", "fd00:5::10", "fd00:b::5"
CPORT, SPORT, BPORT = 40000, 80, 8080
CLIENT_MAC, LB_MAC = "02:00:00:00:00:c1", node_mac(SVC)
SVC_ADDR = bytes.fromhex("fd000005000000000000000000000010")


def runner(program: str = "lb", mtu: int = 1500) -> DatapathRunner:
    return DatapathRunner(RunConfig(program, Endpoint(SVC, SPORT),  # type: ignore[arg-type]
                                    (Endpoint(BACKEND, BPORT),), mtu=mtu, seed=1))


@pytest.fixture
def lb() -> Iterator[DatapathRunner]:
    with runner() as r:
        yield r


@pytest.fixture
def backend_node() -> Iterator[DatapathRunner]:
    with runner("backend") as r:
        yield r


def to_service(l4: Packet, *, hlim: int = 64, ext: Packet | None = None,
               dst: str = SVC) -> bytes:
    ip = IPv6(src=CLIENT, dst=dst, hlim=hlim, tc=0x28, fl=0x12345)
    return bytes(Ether(src=CLIENT_MAC, dst=LB_MAC) / ip / (ext / l4 if ext else l4))


def syn(payload: bytes = b"", sport: int = CPORT, **kw: object) -> bytes:
    return to_service(TCP(sport=sport, dport=SPORT, flags="S", seq=1000) / Raw(payload),
                      **kw)  # type: ignore[arg-type]


def dsr_ext(nh: int) -> bytes:
    return bytes([nh, 2, 0x1B, 20]) + SVC_ADDR + SPORT.to_bytes(2, "big") + b"\0\0"


def checksum_valid(pkt: Packet, layer: type[Packet]) -> bool:
    """scapy recomputes the layer's checksum from scratch: the same value means valid."""
    got = pkt[layer].chksum if layer is not ICMPv6PacketTooBig else pkt[layer].cksum
    fresh = pkt.copy()
    if layer is ICMPv6PacketTooBig:
        del fresh[layer].cksum
        return int(Ether(bytes(fresh))[layer].cksum) == got
    del fresh[layer].chksum
    return int(Ether(bytes(fresh))[layer].chksum) == got


def emitted(res: PacketResult) -> bytes:
    assert res.data is not None
    return res.data


# --- the LB node -------------------------------------------------------------------


def test_syn_gets_the_extension_dnat_and_hop_limit(lb: DatapathRunner) -> None:
    frame = syn(b"x" * 20)
    res = lb.run(frame)
    assert (res.verdict, res.redirect, res.reason) == ("redirect", "eth0", None)
    out = emitted(res)
    assert len(out) == len(frame) + 24
    assert out[14 + 40 : 14 + 64] == dsr_ext(6)  # 06 02 1b 14, service, port, 00 00
    pkt = Ether(out)
    ip = pkt[IPv6]
    assert (ip.nh, ip.plen, ip.hlim) == (60, 20 + 20 + 24, 63)
    assert (ip.src, ip.dst, ip.tc, ip.fl) == (CLIENT, BACKEND, 0x28, 0x12345)
    assert (pkt[TCP].sport, pkt[TCP].dport) == (CPORT, BPORT)
    assert checksum_valid(pkt, TCP)
    assert bytes(pkt[TCP].payload) == b"x" * 20
    assert (pkt.src, pkt.dst) == (LB_MAC, node_mac(BACKEND))  # from the FIB's neighbour
    counters = lb.counters()
    assert counters["opt_inserted"] == counters["dnat"] == counters["ct_new"] == 1
    [ct] = lb.datapath.ct_entries()
    assert (ct.client_ip, ct.service_ip, ct.backend_ip, ct.dsr) == (CLIENT, SVC, BACKEND, True)


def test_later_segments_are_dnated_without_the_extension(lb: DatapathRunner) -> None:
    lb.run(syn())
    ack = to_service(TCP(sport=CPORT, dport=SPORT, flags="A", seq=1001, ack=5) / Raw(b"GET"))
    res = lb.run(ack)
    pkt = Ether(emitted(res))
    assert res.verdict == "redirect"
    assert len(res.data or b"") == len(ack)
    assert (pkt[IPv6].nh, pkt[IPv6].plen, pkt[IPv6].dst) == (6, 23, BACKEND)
    assert checksum_valid(pkt, TCP)
    assert lb.counters()["ct_hit"] == 1


def test_every_udp_datagram_gets_the_extension(lb: DatapathRunner) -> None:
    for n in range(3):
        dgram = to_service(UDP(sport=CPORT, dport=SPORT) / Raw(b"q%d" % n))
        pkt = Ether(emitted(lb.run(dgram)))
        assert pkt[IPv6].nh == 60
        assert pkt[IPv6].plen == 8 + 2 + 24
        assert bytes(pkt[IPv6ExtHdrDestOpt])[:24] == dsr_ext(17)
        assert (pkt[UDP].dport, pkt[IPv6].dst) == (BPORT, BACKEND)
        assert checksum_valid(pkt, UDP)
    assert lb.counters()["opt_inserted"] == 3


def test_hop_limit_one_is_left_to_the_stack(lb: DatapathRunner) -> None:
    res = lb.run(syn(hlim=1))
    assert res.verdict == "ok"
    assert lb.counters()["ttl_expired_pass"] == 1


def test_a_local_backend_is_dnated_and_its_reply_rewritten(lb: DatapathRunner) -> None:
    lb.datapath.add_service(SVC, SPORT, "tcp", dsr=True,
                            backends=[BackendEntry(BACKEND, BPORT, local=True)])
    pkt = Ether(emitted(lb.run(syn())))
    assert (pkt[IPv6].nh, pkt[IPv6].dst, pkt[TCP].dport) == (6, BACKEND, BPORT)
    assert checksum_valid(pkt, TCP)
    assert lb.counters()["local_dnat"] == 1
    reply = bytes(Ether() / IPv6(src=BACKEND, dst=CLIENT)
                  / TCP(sport=BPORT, dport=CPORT, flags="SA"))
    out = Ether(emitted(lb.datapath.test_run("dsr_to_netdev", reply)))
    assert (out[IPv6].src, out[TCP].sport) == (SVC, SPORT)
    assert checksum_valid(out, TCP)


# --- the backend's node ------------------------------------------------------------


def _with_ext(l4: Packet) -> bytes:
    """What the LB sends the backend's node: DNATed, the extension after the header."""
    base = bytes(Ether(dst=node_mac(BACKEND)) / IPv6(src=CLIENT, dst=BACKEND, hlim=63) / l4)
    ip = bytearray(base[14:54])
    ip[6] = 60
    ip[4:6] = (int.from_bytes(ip[4:6], "big") + 24).to_bytes(2, "big")
    proto = 6 if isinstance(l4, TCP) else 17
    return base[:14] + bytes(ip) + dsr_ext(proto) + base[54:]


def reply(flags: str = "SA") -> bytes:
    return bytes(Ether(src=node_mac(BACKEND)) / IPv6(src=BACKEND, dst=CLIENT)
                 / TCP(sport=BPORT, dport=CPORT, flags=flags, seq=77, ack=1001) / Raw(b"hi"))


def test_backend_learns_from_the_extension_and_rewrites_the_reply(
        backend_node: DatapathRunner) -> None:
    frame = _with_ext(TCP(sport=CPORT, dport=BPORT, flags="S", seq=1000))
    assert Ether(frame)[TCP].dport == BPORT  # scapy reads it: a well-formed extension
    res = backend_node.run(frame)
    assert (res.program, res.verdict, res.data) == ("dsr_from_netdev", "ok", frame)
    assert backend_node.datapath.revnat_entries() == [
        RevnatEntry(CLIENT, CPORT, BACKEND, BPORT, "tcp", SVC, SPORT)]
    res = backend_node.run(reply())
    assert res.program == "dsr_to_netdev"
    out = Ether(emitted(res))
    assert (out[IPv6].src, out[TCP].sport, out[IPv6].dst, out[TCP].dport) == (
        SVC, SPORT, CLIENT, CPORT)
    assert checksum_valid(out, TCP)
    assert bytes(out[TCP].payload) == b"hi"
    counters = backend_node.counters()
    assert counters["backend_learned"] == counters["revnat_rewrite"] == 1


def test_backend_learns_udp_and_a_plain_syn_clears(backend_node: DatapathRunner) -> None:
    dgram = _with_ext(UDP(sport=CPORT, dport=BPORT) / Raw(b"q"))
    assert backend_node.run(dgram).data == dgram
    [entry] = backend_node.datapath.revnat_entries()
    assert (entry.proto, entry.service_ip, entry.service_port) == ("udp", SVC, SPORT)
    backend_node.run(_with_ext(TCP(sport=CPORT, dport=BPORT, flags="S")))
    plain = bytes(Ether() / IPv6(src=CLIENT, dst=BACKEND) / TCP(sport=CPORT, dport=BPORT,
                                                                  flags="S"))
    assert backend_node.run(plain).data == plain
    assert [e.proto for e in backend_node.datapath.revnat_entries()] == ["udp"]
    assert backend_node.counters()["backend_cleared"] == 1
    res = backend_node.run(reply())
    assert res.data == reply()  # no entry: the reply leaves as it is


# --- too big -------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [1200, 10])
def test_too_big_answers_packet_too_big(payload: int) -> None:
    mtu = 1280 if payload > 100 else 80  # below IPv6's 1280: the datapath's figure only
    with runner(mtu=1280) as r:
        r.datapath.set_mtu(mtu)
        r.datapath.set_icmp_errors(True)
        frame = syn(b"z" * payload)
        assert 40 + 20 + payload + 24 > mtu
        res = r.run(frame)
        counted = r.counters()["icmp6_pkt_too_big"]
    assert counted == 1
    assert (res.verdict, res.redirect) == ("redirect", "eth0")
    pkt = Ether(emitted(res))
    assert (pkt.src, pkt.dst) == (LB_MAC, CLIENT_MAC)  # MACs swapped, back where it came
    ip = pkt[IPv6]
    assert (ip.src, ip.dst, ip.nh, ip.hlim, ip.tc, ip.fl) == (BACKEND, CLIENT, 58, 64,
                                                               0x28, 0x12345)
    ptb = pkt[ICMPv6PacketTooBig]
    assert (ptb.type, ptb.code, ptb.mtu) == (2, 0, mtu - 24)
    quoted = 64 if 20 + payload >= 64 else 8
    assert bytes(ptb.payload) == frame[14 : 14 + 40 + quoted]  # untranslated, to the service
    assert ip.plen == 8 + 40 + quoted
    assert checksum_valid(pkt, ICMPv6PacketTooBig)


def test_too_big_with_icmp_errors_off_is_a_named_drop() -> None:
    with runner(mtu=1280) as r:
        res = r.run(syn(b"z" * 1200))
        assert (res.verdict, res.reason) == ("drop", "frag_needed")
        assert r.datapath.ct_entries() == []  # nothing remembered for a refused packet
        fits = syn(b"z" * (1280 - 40 - 20 - 24))
        assert r.run(fits).verdict == "redirect"


# --- extension headers and malformed IPv6 ---------------------------------------------


@pytest.mark.parametrize("ext", [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(),
                                 IPv6ExtHdrDestOpt(), IPv6ExtHdrFragment(m=1, id=9),
                                 IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()],
                         ids=["hop", "routing", "destopt", "fragment", "hop+destopt"])
def test_extension_headers_to_a_service_are_a_named_drop(lb: DatapathRunner,
                                                          ext: Packet) -> None:
    res = lb.run(syn(ext=ext))
    assert (res.verdict, res.reason) == ("drop", "ipv6_exthdr")
    assert lb.counters()["drop_ipv6_exthdr"] == 1


def test_extension_headers_elsewhere_pass_untouched(lb: DatapathRunner) -> None:
    for frame in (syn(ext=IPv6ExtHdrHopByHop(), dst="fd00:9::9"),
                  syn(ext=IPv6ExtHdrFragment(offset=100, id=9)),  # a later fragment
                  syn(ext=IPv6ExtHdrHopByHop() / IPv6ExtHdrHopByHop() / IPv6ExtHdrHopByHop()
                      / IPv6ExtHdrHopByHop() / IPv6ExtHdrHopByHop())):  # beyond 4: not read
        res = lb.run(frame)
        assert (res.verdict, res.data) == ("ok", frame)


def test_the_dsr_extension_on_a_packet_to_the_service_is_refused(lb: DatapathRunner) -> None:
    base = syn()
    ip = bytearray(base[14:54])
    ip[6] = 60
    ip[4:6] = (20 + 24).to_bytes(2, "big")
    res = lb.run(base[:14] + bytes(ip) + dsr_ext(6) + base[54:])
    assert (res.verdict, res.reason) == ("drop", "ipv6_exthdr")


def malformed() -> list[tuple[str, bytes, str]]:
    good = syn(b"abcd")
    short_plen = bytearray(good)
    short_plen[18:20] = (10).to_bytes(2, "big")  # payload shorter than the TCP header
    long_plen = bytearray(good)
    long_plen[18:20] = (500).to_bytes(2, "big")  # beyond the frame
    version = bytearray(good)
    version[14] = 0x40
    chain = bytearray(syn(ext=IPv6ExtHdrHopByHop()))
    chain[18:20] = (4).to_bytes(2, "big")  # the extension runs out of the payload
    return [("plen below tcp", bytes(short_plen), "truncated_l4"),
            ("plen beyond frame", bytes(long_plen), "bad_tot_len"),
            ("version 4", bytes(version), "bad_version"),
            ("chain beyond payload", bytes(chain), "truncated_l4")]


@pytest.mark.parametrize(("name", "frame", "reason"), malformed(),
                         ids=[m[0] for m in malformed()])
def test_malformed_ipv6_is_a_named_drop_at_ingress_and_untouched_at_egress(
        lb: DatapathRunner, name: str, frame: bytes, reason: str) -> None:
    res = lb.run(frame)
    assert (res.verdict, res.reason) == ("drop", reason), name
    out = lb.datapath.test_run("dsr_to_netdev", frame)
    assert (out.verdict, out.data) == ("ok", frame)


def test_a_cut_header_never_comes_out_changed(lb: DatapathRunner) -> None:
    """Shorter than the IPv6 header: the kernel refuses it before the program runs (or
    the program drops it); it never comes out."""
    res = lb.run(syn()[: 14 + 30])
    assert (res.verdict, res.reason) in {("rejected", "kernel_refused"),
                                         ("drop", "truncated_ip")}


def test_short_payload_trailer_is_kept(lb: DatapathRunner) -> None:
    """A frame longer than its payload length (Ethernet padding): the padding stays
    behind the packet, the lengths count only the packet."""
    frame = syn(b"p") + b"\0" * 9
    pkt = Ether(emitted(lb.run(frame)))
    assert pkt[IPv6].plen == 21 + 24
    assert checksum_valid(Ether(bytes(pkt)[: 14 + 40 + 21 + 24]), TCP)


# --- selection -------------------------------------------------------------------------


def test_seeded_selection_of_ipv6_flows_is_predicted() -> None:
    """--seed on IPv6: the Python mirror (addresses folded to 32 bits) names the
    backend each flow gets, and the flows spread over all four."""
    backends = tuple(Endpoint(f"fd00:b::{n}", BPORT) for n in range(1, 5))
    with DatapathRunner(RunConfig("lb", Endpoint(SVC, SPORT), backends, seed=7)) as r:
        got = {}
        for sport in range(40000, 40040):
            pkt = Ether(emitted(r.run(syn(sport=sport))))
            got[sport] = pkt[IPv6].dst
    want = {sport: backends[seeded_slot(7, 4, Flow(CLIENT, SVC, sport, SPORT, 6))].ip
            for sport in got}
    assert got == want
    assert len(set(got.values())) == 4


# --- the maps, from plain values -----------------------------------------------------------


def test_ipv6_services_and_revnat_from_plain_values() -> None:
    """add_service fills lb6_services/lb6_backends from IPv6 text (what a topology's
    wiring calls); services(), remove_service and add_revnat read both families; mixed
    families and IPv6 SNAT are refused with the reason."""
    with DatapathObject.load(build_object()) as dp:
        dp.add_service(SVC, SPORT, "udp", dsr=True, backends=[BackendEntry(BACKEND, BPORT)])
        dp.add_service("10.0.0.1", 80, "tcp", dsr=True,
                       backends=[BackendEntry("10.0.1.1", 8080)])
        assert [(s.vip, s.proto, s.backends) for s in dp.services()] == [
            ("10.0.0.1", "tcp", (BackendEntry("10.0.1.1", 8080),)),
            (SVC, "udp", (BackendEntry(BACKEND, BPORT),))]
        assert len(dp.map("lb6_backends").keys()) == 1
        with pytest.raises(ValueError, match="not of the service"):
            dp.add_service(SVC, SPORT, "tcp", backends=[BackendEntry("10.0.1.1", 8080)])
        with pytest.raises(ValueError, match="IPv4 only"):
            dp.add_service(SVC, SPORT, "tcp", dsr=False, snat=True,
                           backends=[BackendEntry(BACKEND, BPORT)])
        with pytest.raises(ValueError, match="all IPv4 or all IPv6"):
            dp.add_revnat(RevnatEntry(CLIENT, 1, "10.0.1.1", 2, "tcp", SVC, 3))
        entry = RevnatEntry(CLIENT, CPORT, BACKEND, BPORT, "tcp", SVC, SPORT)
        dp.add_revnat(entry)
        assert dp.revnat_entries() == [entry]
        assert dp.remove_service(SVC, SPORT, "udp")
        assert len(dp.map("lb6_backends").keys()) == 0
        assert [s.vip for s in dp.services()] == ["10.0.0.1"]


# --- the fuzz invariant on IPv6 ----------------------------------------------------------


@pytest.mark.parametrize(("where", "change", "problem"), [
    (14 + 64 + 16, 0x01, "TCP checksum wrong"),
    (14 + 5, 0x04, "payload length changed"),
    (14 + 5, 0x01, "payload length 53 beyond the frame"),
    (14 + 7, 0x03, "hop limit"),
    (14 + 40 + 22, 0x01, "padding"),
    (14 + 40 + 2, 0x10, "does not start with the DSR extension"),
    (14 + 64 + 20 + 3, 0x01, "L4 payload changed"),
    (14 + 3, 0x01, "flow label changed"),
], ids=["l4-csum", "plen", "plen-beyond", "hop-limit", "padding", "ext-type", "payload",
        "flow-label"])
def test_the_fuzz_invariant_catches_broken_ipv6_outputs(lb: DatapathRunner, where: int,
                                                         change: int, problem: str) -> None:
    frame = syn(b"x" * 8)
    with lb.inside():
        res = lb.datapath.test_run("dsr_from_netdev", frame, ifindex=lb.ifindex)
    assert check_result(frame, res, validating=True) == []
    bad = bytearray(res.data)
    bad[where] ^= change
    problems = check_result(frame, replace(res, data=bytes(bad)), validating=True)
    assert any(problem in p for p in problems), problems
