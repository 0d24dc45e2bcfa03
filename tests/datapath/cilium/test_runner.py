"""``datapath run`` on Cilium's own programs: the same frames as the lab's datapath,
compared byte for byte where the two should agree (one backend, so no choice)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.datapath.cilium.runner import CiliumRunner
from lab.datapath.cilium.source import CiliumSource
from lab.datapath.runner import DatapathRunner, RunConfig
from lab.pytest_plugin import require_root
from lab.wire.endpoint import Endpoint
from tests.datapath.frames import assert_checksums_valid, backend_syn, tcp_frame
from tests.seed import CLIENT_IP, CLIENT_PORT, NODE_PORT, OPTION, POD_IP, POD_PORT, VIP

SERVICE = Endpoint(VIP, NODE_PORT)
TTL = 14 + 8
IP_CSUM = slice(14 + 10, 14 + 12)


def masked(frame: bytes) -> bytes:
    """The frame with its TTL and IPv4 header checksum zeroed."""
    out = bytearray(frame)
    out[TTL] = 0
    out[IP_CSUM] = b"\0\0"
    return bytes(out)

BACKEND = Endpoint(POD_IP, POD_PORT)


def synack_from_pod() -> bytes:
    return bytes(Ether(src="02:03:0a:00:02:7b", dst="02:02:0a:00:02:7b")
                 / IP(src=POD_IP, dst=CLIENT_IP, ttl=64, id=1)
                 / TCP(sport=POD_PORT, dport=CLIENT_PORT, flags="SA", seq=5000, ack=1001))


def test_the_lb_syn_is_byte_for_byte_the_labs(cilium_source: CiliumSource) -> None:
    require_root()
    config = RunConfig("lb", SERVICE, (BACKEND,))
    with CiliumRunner(config, cilium_source) as cilium, DatapathRunner(config) as lab:
        got = cilium.run(tcp_frame("S"))
        want = lab.run(tcp_frame("S"))
    assert got.program == "cil_from_netdev"
    assert (got.verdict, want.verdict) == ("redirect", "redirect")
    assert got.data is not None
    assert got.data[14 + 20:14 + 28] == OPTION
    assert want.data is not None
    # one difference: the lab's datapath decrements the TTL on the forward, as Cilium
    # 1.16 does; Cilium 1.13's NodePort DSR path leaves the client's TTL
    ttl_in = tcp_frame("S")[TTL]
    assert want.data[TTL] == ttl_in - 1
    assert got.data[TTL] == (ttl_in - 1 if cilium_source.version.at_least(1, 16) else ttl_in)
    assert masked(got.data) == masked(want.data)


def test_the_backend_learns_the_service_and_rewrites_the_reply(
        cilium_source: CiliumSource) -> None:
    require_root()
    config = RunConfig("backend", SERVICE, (BACKEND,))
    with CiliumRunner(config, cilium_source) as cilium:
        syn = cilium.run(backend_syn(OPTION))
        reply = cilium.run(synack_from_pod())
    assert syn.program == "cil_from_netdev>cil_from_host"
    assert syn.verdict == "redirect"  # delivered to the pod's lxc
    assert reply.program.startswith("cil_from_container")
    assert reply.data is not None
    out = Ether(reply.data)
    assert (out[IP].src, out[TCP].sport) == (VIP, NODE_PORT)
    assert (out[IP].dst, out[TCP].dport) == (CLIENT_IP, CLIENT_PORT)
    assert_checksums_valid(reply.data)
    if cilium_source.version.at_least(1, 14):
        assert reply.program == "cil_from_container>cil_to_netdev"  # rewritten on eth0
