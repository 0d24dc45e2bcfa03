"""The seed's SYN through Cilium's own cil_from_netdev on the LB node (a test run in a
namespace wired as the seed's control-plane node): DNATed to a pod, the client's
address kept, the DSR option 9a 08 00 7d 02 00 12 ac appended, checksums right."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.datapath.cilium.node import LoadedNode, load_node
from lab.datapath.cilium.source import CiliumSource
from lab.datapath.testrun import run_program
from lab.plumbing import nsutil
from tests.datapath.frames import assert_checksums_valid, tcp_frame
from tests.seed import CLIENT_IP, CLIENT_PORT, POD_PORT, TOPOLOGY

SEED_OPTION = bytes.fromhex("9a08007d020012ac")


@pytest.fixture(scope="module")
def lb_node(cilium_source: CiliumSource, seed_lb_ns: str) -> Iterator[LoadedNode]:
    with load_node(cilium_source, TOPOLOGY, "cilium-dsr-control-plane") as loaded:
        yield loaded


def test_the_seed_syn_leaves_the_lb_node_dnated_with_the_option(
        lb_node: LoadedNode, seed_lb_ns: str) -> None:
    prog = lb_node.node.objects["host"].program_fd("cil_from_netdev")
    with nsutil.in_netns(seed_lb_ns):
        result = run_program(prog, tcp_frame("S"), ingress_ifindex=10, ifindex=10)
    assert result.verdict == "redirect"
    out = Ether(result.data)
    ip = out[IP]
    assert ip.src == CLIENT_IP
    assert ip.dst in {str(p.ip) for p in TOPOLOGY.backends("serversvc")}
    assert out[TCP].sport == CLIENT_PORT
    assert out[TCP].dport == POD_PORT
    assert ip.ihl == 7
    assert bytes(result.data[14 + 20:14 + 28]) == SEED_OPTION
    assert len(result.data) == len(tcp_frame("S")) + 8
    assert_checksums_valid(result.data)
