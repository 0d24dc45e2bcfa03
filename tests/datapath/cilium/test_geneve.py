"""Geneve dispatch on Cilium 1.16's own datapath: the tunnel defines the agent writes,
``bpf_overlay`` for the tunnel device, both through the verifier, and the LB's
verdict on a SYN.

This kernel has no Geneve driver (``ip link add ... type geneve`` fails), so no
tunnel device exists here: ``ENCAP_IFINDEX`` names an index no device holds.
``BPF_PROG_TEST_RUN`` still runs the LB program: it DNATs the SYN, writes the
tunnel key and the DSR option into the packet's metadata and redirects to the
tunnel device. The test run returns the packet and the verdict, not the
metadata, so what is checked is the verdict, the untouched-but-DNATed inner
packet (no IP option, no extension header) and Cilium's own trace
notification: to the overlay, on ``ENCAP_IFINDEX``, with the backend's identity.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.datapath import libbpf
from lab.datapath.cilium import config as cfg
from lab.datapath.cilium import plan
from lab.datapath.cilium.attach import add_geneve_device
from lab.datapath.cilium.fill import TUNNEL_MAP
from lab.datapath.cilium.node import OVERLAY, load_node
from lab.datapath.cilium.runner import BACKEND_NODE_IP, CiliumRunner, run_plan
from lab.datapath.cilium.source import CiliumSource, CiliumVersion
from lab.datapath.errors import DatapathError
from lab.datapath.loader import BpfMap
from lab.datapath.runner import RunConfig
from lab.model.topology import Topology, load_topology
from lab.plumbing import nsutil
from lab.pytest_plugin import require_root
from lab.wire.endpoint import Endpoint
from tests.datapath.cilium.test_ipv6 import RUN_BACKEND, RUN_SERVICE, vector_syn
from tests.datapath.frames import scratch_name, tcp_frame
from tests.seed import NODE_PORT, POD_IP, POD_PORT, VIP

ROOT = Path(__file__).parents[3] / "topologies"
V116 = CiliumVersion.parse("v1.16.0")


def _geneve(name: str, routing: str = "native") -> Topology:
    t = load_topology(ROOT / name)
    return t.model_copy(update={
        "load_balancer": t.load_balancer.model_copy(update={"dispatch": "geneve"}),
        "cluster": t.cluster.model_copy(update={"tunnel_protocol": "geneve",
                                                "cilium_version": "1.16.0",
                                                "routing": routing})})


def _needs_geneve(source: CiliumSource) -> None:
    if not source.version.at_least(1, 14):
        pytest.skip(f"Cilium {source.version} has no Geneve dispatch (1.14 and later)")


def test_geneve_dispatch_writes_the_agents_tunnel_defines() -> None:
    t = _geneve("seed.yaml")
    p = plan.plan_node(t, "cilium-dsr-control-plane")
    text = cfg.node_config(p.node, plan.lb_params(t), "v1.16")
    for line in ("DSR_ENCAP_MODE 3", "DSR_ENCAP_GENEVE 3", "TUNNEL_PROTOCOL 2",
                 "TUNNEL_PROTOCOL_GENEVE 2", "TUNNEL_PROTOCOL_VXLAN 1", "TUNNEL_PORT 6081",
                 f"ENCAP_IFINDEX {plan.CILIUM_GENEVE_INDEX}"):
        assert f"#define {line}\n" in text
    assert "TUNNEL_MODE" not in text  # native routing: the tunnel carries DSR only
    tunnel = _geneve("seed.yaml", routing="tunnel")
    p = plan.plan_node(tunnel, "cilium-dsr-control-plane")
    assert "#define TUNNEL_MODE 1\n" in cfg.node_config(p.node, plan.lb_params(tunnel), "v1.16")
    # the option dispatch has no tunnel
    seed = load_topology(ROOT / "seed.yaml")
    p = plan.plan_node(seed, "cilium-dsr-control-plane")
    assert "ENCAP_IFINDEX" not in cfg.node_config(p.node, plan.lb_params(seed), "v1.16")


def test_remote_pods_have_their_node_as_tunnel_endpoint() -> None:
    p = plan.plan_node(_geneve("seed.yaml"), "cilium-dsr-worker")
    endpoints = {str(r.address): r.tunnel_endpoint for r in p.remotes}
    assert str(endpoints["10.0.0.216"]) == "172.18.0.3"  # on worker2
    assert endpoints["10.0.2.123"] is None  # this node's own pod


def test_the_tunnel_map_holds_each_other_nodes_pod_cidrs() -> None:
    p = plan.plan_node(_geneve("seed-dual-stack.yaml"), "cilium-dsr-worker")
    assert sorted((str(a), str(n)) for a, n in p.tunnels) == [
        ("10.0.0.0", "172.18.0.3"), ("10.0.1.0", "172.18.0.2"),
        ("fd00:10:244:1::", "172.18.0.2"), ("fd00:10:244::", "172.18.0.3")]
    seed = load_topology(ROOT / "seed.yaml")
    assert plan.plan_node(seed, "cilium-dsr-worker").tunnels == []


def test_the_overlay_config_is_what_the_agent_passes_to_clang() -> None:
    p = plan.plan_node(_geneve("seed-dual-stack.yaml"), "cilium-dsr-worker")
    text = cfg.overlay_config(p.node, plan.lb_params(_geneve("seed-dual-stack.yaml")))
    for line in ("SECLABEL 2", "SECLABEL_IPV4 9", "SECLABEL_IPV6 10",
                 "CALLS_MAP cilium_calls_overlay_2", "DISABLE_LOOPBACK_LB 1",
                 f"NATIVE_DEV_IFINDEX {plan.CILIUM_GENEVE_INDEX}"):
        assert f"#define {line}\n" in text


@pytest.mark.parametrize("name", ["seed.yaml", "seed-dual-stack.yaml"])
def test_geneve_nodes_load_with_the_overlay_through_the_verifier(
        cilium_source: CiliumSource, name: str) -> None:
    require_root()
    _needs_geneve(cilium_source)
    with load_node(cilium_source, _geneve(name), "cilium-dsr-worker") as loaded:
        overlay = loaded.node.objects[OVERLAY]
        assert {"cil_from_overlay", "cil_to_overlay"} <= set(overlay.programs)
        assert "tail_nodeport_ipv4_dsr" in loaded.node.objects["host"].programs
        fd = loaded.node.map_fd(TUNNEL_MAP)
        _, key_size, value_size = libbpf.map_info(fd)
        entries = BpfMap(TUNNEL_MAP, fd, key_size, value_size).items()
        assert len(entries) == len(loaded.plan.tunnels) > 0
        # every value is a node's IPv4 address (the underlay's family)
        nodes = {n.packed for _, n in loaded.plan.tunnels}
        assert {v[:4] for _, v in entries} <= nodes


def test_geneve_dispatch_needs_cilium_1_14(cilium_source: CiliumSource) -> None:
    if cilium_source.version.at_least(1, 14):
        pytest.skip("this Cilium has Geneve dispatch")
    with pytest.raises(DatapathError, match=r"Geneve dispatch needs 1\.14"):
        CiliumRunner(RunConfig("lb", Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, POD_PORT),)),
                     cilium_source, dispatch="geneve")


def test_the_run_plan_gives_backends_a_tunnel_endpoint() -> None:
    p = run_plan(RunConfig("lb", Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, POD_PORT),)),
                 "geneve")
    assert p.node.encap_ifindex == plan.CILIUM_GENEVE_INDEX
    assert [r.tunnel_endpoint for r in p.remotes if str(r.address) == POD_IP] == [
        BACKEND_NODE_IP]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_the_lb_sends_the_syn_to_the_tunnel_dnated_without_an_option(
        cilium_source: CiliumSource, family: str) -> None:
    require_root()
    _needs_geneve(cilium_source)
    if family == "ipv4":
        config = RunConfig("lb", Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, POD_PORT),))
        frame = tcp_frame("S")
    else:
        config = RunConfig("lb", RUN_SERVICE, (RUN_BACKEND,))
        frame = vector_syn()
    with CiliumRunner(config, cilium_source, dispatch="geneve") as runner:
        got = runner.run(frame)
        runner.counters()  # flushes the events
        events = list(runner.events)
    assert (got.program, got.verdict) == ("cil_from_netdev", "redirect")
    assert got.data is not None
    assert len(got.data) == len(frame)  # the option rides in the tunnel, not the packet
    if family == "ipv4":
        assert got.data[14] == 0x45
        assert got.data[30:34] == bytes(int(x) for x in POD_IP.split("."))
    else:
        assert got.data[20] == 6  # next header TCP: no Destination Options header
        assert got.data[14 + 40 + 16:14 + 40 + 18] == b"\x0d\x7c"  # the vector's checksum
    out = [e for e in events if e.what == "TRACE_TO_OVERLAY"]
    assert len(out) == 1
    assert out[0].ifindex == plan.CILIUM_GENEVE_INDEX
    assert out[0].dst_label == cfg.POD_IDENTITY


def test_the_tunnel_device_is_made_or_refused_in_the_kernels_words() -> None:
    """cilium_geneve at ENCAP_IFINDEX where the kernel has Geneve; elsewhere (this
    machine's 6.18 has no CONFIG_GENEVE) one clear error, as ``ip`` itself fails."""
    require_root()
    name = scratch_name("cil-gnv")
    with nsutil.scratch(name):
        ip = subprocess.run(["ip", "-n", name, "link", "add", "probe0", "type", "geneve",
                             "external"], capture_output=True, text=True, check=False)
        if ip.returncode != 0:
            with pytest.raises(DatapathError) as err:
                add_geneve_device(name, plan.CILIUM_GENEVE_INDEX, b"\x02\x04\0\0\0\x01")
            assert "CONFIG_GENEVE" in str(err.value)
            assert "\n" not in str(err.value)
            return
        add_geneve_device(name, plan.CILIUM_GENEVE_INDEX, b"\x02\x04\0\0\0\x01")
        shown = subprocess.run(["ip", "-n", name, "-d", "link", "show", "cilium_geneve"],
                               capture_output=True, text=True, check=True).stdout
        assert shown.startswith(f"{plan.CILIUM_GENEVE_INDEX}: cilium_geneve")
        assert "geneve external" in shown
