"""IPv6 on Cilium's own datapath: the headers and maps of a dual-stack node, the
objects through the verifier, and Cilium's IPv6 DSR test vector run by the lab.

The vector is Cilium's ``bpf/tests/tc_nodeport_lb6_dsr_lb.c`` (input from its
``pktgen.h``): client [100::]:111, service [200::]:80, backend [300::]:8080; the
DNATed SYN carries the Destination Options header ``06 02 1b 14`` + the service
address + port + padding, payload length 40 -> 64, TCP checksum 0x0d7c. Cilium's
test fakes the FIB lookup with its own MACs; the lab's run has a real FIB, so
the Ethernet header is the lab node's and the backend's neighbour, and every byte
after it is the vector's.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from lab.datapath.cilium import config as cfg
from lab.datapath.cilium import fill, plan
from lab.datapath.cilium.node import load_node
from lab.datapath.cilium.runner import CiliumRunner, neighbour_mac
from lab.datapath.cilium.source import CiliumSource, CiliumVersion
from lab.datapath.runner import RunConfig
from lab.model.topology import load_topology
from lab.pytest_plugin import require_root
from lab.wire.endpoint import Endpoint

DUAL = load_topology(Path(__file__).parents[3] / "topologies" / "seed-dual-stack.yaml")
SEED = load_topology(Path(__file__).parents[3] / "topologies" / "seed.yaml")
V113, V116 = CiliumVersion.parse("v1.13.0"), CiliumVersion.parse("v1.16.0")

CLIENT, SERVICE, BACKEND = IPv6Address("100::"), IPv6Address("200::"), IPv6Address("300::")
RUN_SERVICE = Endpoint(str(SERVICE), 80)
RUN_BACKEND = Endpoint(str(BACKEND), 8080)
PAYLOAD = b"Should not change!!\0"  # pktgen.h's default_data, with its NUL
DSR_EXT = bytes.fromhex("06021b14") + SERVICE.packed + b"\x00\x50" + b"\x00\x00"


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _tcp6(src: IPv6Address, dst: IPv6Address, sport: int, dport: int, *, seq: bytes,
          ack: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = bytearray(struct.pack("!HH", sport, dport) + seq + struct.pack("!I", ack)
                    + bytes([0x50, flags]) + b"\xff\xff\0\0\0\0" + payload)
    pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(tcp), 6)
    tcp[16:18] = _csum(pseudo + bytes(tcp)).to_bytes(2, "big")
    return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src.packed + dst.packed + tcp


def vector_syn() -> bytes:
    """pktgen's SYN: mac_one -> the LB's MAC, hop limit 64, seq 123456 stored in host
    order, window 65535, default_data (the lab's frame has its checksum filled)."""
    eth = bytes.fromhex("ce72a7038856" "deadbeefdeef" "86dd")
    return eth + _tcp6(CLIENT, SERVICE, 111, 80, seq=(123456).to_bytes(4, "little"), ack=0,
                       flags=0x02, payload=PAYLOAD)


def vector_out() -> bytes:
    """What Cilium's test checks, after the Ethernet header: the DNATed SYN with the
    extension header (next header 60), payload length 64, TCP checksum 0x0d7c."""
    ip = bytearray(_tcp6(CLIENT, BACKEND, 111, 8080, seq=(123456).to_bytes(4, "little"),
                         ack=0, flags=0x02, payload=PAYLOAD))
    tcp = ip[40:]
    assert tcp[16:18] == b"\x0d\x7c"
    ip[4:6] = (len(tcp) + len(DSR_EXT)).to_bytes(2, "big")
    ip[6] = 60  # NEXTHDR_DEST
    return bytes(ip[:40]) + DSR_EXT + bytes(tcp)


def test_a_dual_stack_node_config_has_the_agents_ipv6_defines() -> None:
    p = plan.plan_node(DUAL, "cilium-dsr-control-plane")
    assert p.node.ip6 == IPv6Address("fc00:f853:ccd:e793::2")
    assert p.node.router_ip6 == IPv6Address("fd00:10:244:1::1")
    v116 = cfg.node_config(p.node, plan.lb_params(DUAL), "v1.16")
    v113 = cfg.node_config(p.node, plan.lb_params(DUAL), "v1.13")
    for text in (v113, v116):
        assert "#define ENABLE_IPV6 1" in text
        assert "#define IPV6_DIRECT_ROUTING { .addr = { 0xfc, 0x0, 0xf8, 0x53," in text
        assert "#define SNAT_MAPPING_IPV6 cilium_snat_v6_external" in text
        assert "#define NODEPORT_NEIGH6 cilium_nodeport_neigh6" in text
        assert "#define ROUTER_IP_V" in text
        assert "#define HOST_IP_V" in text
        # the IPv6 SNAT table is sized as the IPv4 one (the CT maps are shared by name)
        assert f"#define SNAT_MAPPING_IPV6_SIZE {cfg.LAB_CT_SIZE}\n" in text
        assert f"#define SNAT_MAPPING_IPV4_SIZE {cfg.LAB_CT_SIZE}\n" in text
    assert "DEFINE_IPV6(ROUTER_IP, 0xfd, 0x0, 0x0, 0x10, 0x2, 0x44, 0x0, 0x1," in v116
    assert "#define WORLD_IPV6_ID 10" in v116
    assert "#define WORLD_IPV4_ID 9" in v116
    # 1.13: the address of ROUTER_IP_1 is its first word, as the agent's loader resolves it
    assert "#define ROUTER_IP_1 (*(__u32 *)0x100000fdUL)" in v113  # fd 00 00 10
    single = cfg.node_config(plan.plan_node(SEED, "cilium-dsr-control-plane").node,
                             plan.lb_params(SEED), "v1.16")
    assert "ENABLE_IPV6" not in single
    assert "ROUTER_IP" not in single


def test_a_dual_stack_pod_has_its_ipv6_in_ep_config() -> None:
    p = plan.plan_node(DUAL, "cilium-dsr-worker")
    pod = p.pods[0]
    assert pod.ip6 == IPv6Address("fd00:10:244:2::7b")
    text = cfg.pod_ep_config(p.node, pod, "v1.16")
    assert "DEFINE_IPV6(LXC_IP, 0xfd, 0x0, 0x0, 0x10, 0x2, 0x44, 0x0, 0x2," in text


def test_a_dual_stack_service_has_a_frontend_per_family() -> None:
    p = plan.plan_node(DUAL, "cilium-dsr-worker")
    assert [(str(f.address), f.port, f.rev_nat_index) for f in p.frontends] == [
        ("172.18.0.4", 32000, 1), ("fc00:f853:ccd:e793::4", 32000, 2)]
    assert [str(a) for a, _ in p.frontends[1].backends] == [
        "fd00:10:244:2::7b", "fd00:10:244::d8"]
    remotes = {str(r.address): r.identity for r in p.remotes}
    assert remotes["fc00:f853:ccd:e793::4"] == cfg.HOST_ID
    assert remotes["fc00:f853:ccd:e793::2"] == cfg.REMOTE_NODE_ID
    assert remotes["fd00:10:244::d8"] == cfg.POD_IDENTITY
    # an IPv4-only service of the same cluster keeps one frontend
    v4only = DUAL.model_copy(update={"services": [
        s.model_copy(update={"ip_families": ["IPv4"]}) for s in DUAL.services]})
    assert len(plan.plan_node(v4only, "cilium-dsr-worker").frontends) == 1


def test_a_run_mixing_families_is_refused() -> None:
    # the run's own config refuses it, for both datapaths
    with pytest.raises(ValueError, match="both must be one family"):
        RunConfig("lb", RUN_SERVICE, (Endpoint("10.0.0.1", 80),))


@pytest.mark.parametrize("node", ["cilium-dsr-control-plane", "cilium-dsr-worker"])
def test_a_dual_stack_node_loads_through_the_verifier(cilium_source: CiliumSource,
                                                      node: str) -> None:
    require_root()
    with load_node(cilium_source, DUAL, node) as loaded:
        host = loaded.node.objects["host"]
        assert "cil_from_netdev" in host.programs
        assert len(loaded.node.objects) == 1 + len(loaded.plan.pods)
        # the IPv6 frontend is in Cilium's lb6 map
        assert fill.SERVICES6 in host.maps


def test_ciliums_ipv6_dsr_vector_comes_out_byte_for_byte(cilium_source: CiliumSource) -> None:
    require_root()
    config = RunConfig("lb", RUN_SERVICE, (RUN_BACKEND,))
    with CiliumRunner(config, cilium_source) as runner:
        got = runner.run(vector_syn())
        eth0_mac = runner.plan.node.eth0_mac
    assert (got.program, got.verdict) == ("cil_from_netdev", "redirect")
    assert got.data is not None
    assert got.data[14:] == vector_out()
    assert got.data[:14] == (bytes.fromhex(neighbour_mac(BACKEND).replace(":", ""))
                             + eth0_mac + b"\x86\xdd")


def test_the_ipv6_backend_learns_the_service_and_rewrites_the_reply(
        cilium_source: CiliumSource) -> None:
    require_root()
    config = RunConfig("backend", RUN_SERVICE, (RUN_BACKEND,))
    with CiliumRunner(config, cilium_source) as runner:
        node_mac = runner.plan.node.eth0_mac
        syn = node_mac + bytes.fromhex("0242deadbeef") + b"\x86\xdd" + vector_out()
        delivered = runner.run(syn)
        reply = bytes(6) + bytes(6) + b"\x86\xdd" + _tcp6(
            BACKEND, CLIENT, 8080, 111, seq=struct.pack("!I", 5000), ack=123457, flags=0x12)
        out = runner.run(reply)
    assert delivered.program == "cil_from_netdev>cil_from_host"
    assert delivered.verdict == "redirect"
    assert out.program == "cil_from_container>cil_to_netdev"
    assert out.verdict == "ok"
    assert out.data is not None
    ip = out.data[14:]
    assert IPv6Address(ip[8:24]) == SERVICE
    assert IPv6Address(ip[24:40]) == CLIENT
    assert struct.unpack("!HH", ip[40:44]) == (80, 111)
    pseudo = ip[8:40] + struct.pack("!IxxxB", len(ip) - 40, 6)
    assert _csum(pseudo + ip[40:]) == 0, "the rewritten reply's TCP checksum is wrong"
    # 1.13's bpf_lxc writes the pod's identity into the flow label (ipv6_store_flowlabel);
    # 1.16 leaves the pod's (zero)
    flow_label = int.from_bytes(ip[:4], "big") & 0xFFFFF
    want = cfg.POD_IDENTITY if not cilium_source.version.at_least(1, 14) else 0
    assert flow_label == want
