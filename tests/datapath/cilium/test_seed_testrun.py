"""The seed's SYN through Cilium's own cil_from_netdev on the LB node (a test run in a
namespace wired as the seed's control-plane node): DNATed to a pod, the client's
address kept, the DSR option 9a 08 00 7d 02 00 12 ac appended, checksums right."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.datapath.cilium.attach import attach_node
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


def test_programs_attach_where_the_agent_attaches_them(
        lb_node: LoadedNode, seed_lb_ns: str) -> None:
    with nsutil.in_netns(seed_lb_ns):
        attached = attach_node(lb_node)
        try:
            shown = {(dev, hook): subprocess.run(
                ["tc", "filter", "show", "dev", dev, hook], capture_output=True, text=True,
                check=True).stdout for dev, hook in (("eth0", "ingress"), ("eth0", "egress"),
                                                     ("cilium_host", "egress"))}
        finally:
            for a in attached:
                a.detach()
    assert "cil_from_netdev" in shown["eth0", "ingress"]
    assert "cil_to_netdev" in shown["eth0", "egress"]
    assert "cil_from_host" in shown["cilium_host", "egress"]
    assert [a.program for a in attached][:2] == ["cil_from_netdev", "cil_to_netdev"]
