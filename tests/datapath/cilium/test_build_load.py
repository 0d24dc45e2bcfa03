"""Cilium's own bpf_host and bpf_lxc, built with the lab's headers and loaded through
the running kernel's verifier, for every source DSRLAB_CILIUM_SRC names."""

from __future__ import annotations

import ctypes
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.datapath import libbpf
from lab.datapath.cilium import config as cfg
from lab.datapath.cilium.build import build_node, compile_object
from lab.datapath.cilium.load import POLICY_CALL_MAP, CiliumNode
from lab.datapath.cilium.source import CiliumSource, CiliumVersion
from lab.datapath.errors import DatapathError
from lab.pytest_plugin import require_root

WORKER = cfg.NodeParams(
    "cilium-dsr-worker", IPv4Address("172.18.0.4"), 10, bytes.fromhex("0242ac120004"),
    11, bytes.fromhex("02000a000201"), 12, bytes.fromhex("02000a000202"),
    IPv4Address("10.0.2.1"), IPv4Network("10.0.2.0/24"))
POD = cfg.PodParams("cni-8zxj9", 100, IPv4Address("10.0.2.123"), 13,
                    bytes.fromhex("02000a00020d"))


def map_id(fd: int) -> int:
    info = libbpf.BpfMapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    libbpf.check(libbpf.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
                 "map info")
    return int(info.id)


def slot_filled(map_fd: int, slot: int) -> bool:
    key, value = ctypes.c_uint32(slot), ctypes.c_uint32(0)
    rc = libbpf.lib().bpf_map_lookup_elem(map_fd, ctypes.byref(key), ctypes.byref(value))
    return bool(rc == 0)


def test_both_objects_build_cached_and_load_with_tail_calls_filled(
        cilium_source: CiliumSource) -> None:
    require_root()
    # the lab's own build cache (as dsr.c's tests): a warm make test compiles nothing
    host, lxcs = build_node(cilium_source, WORKER, [POD], cfg.LbParams())
    again, _ = build_node(cilium_source, WORKER, [POD], cfg.LbParams())
    assert again.cached
    assert again.path == host.path
    with CiliumNode(WORKER.name) as node:
        h = node.load("host", host.path)
        node.load(POD.name, lxcs[POD.name].path)
        node.set_policy_program(POD.name, POD.lxc_id)
        for program in ("cil_from_netdev", "cil_to_netdev", "cil_from_host", "cil_to_host"):
            assert h.program_fd(program) > 0
        assert "cil_from_container" in node.objects[POD.name].programs
        # both objects share the node's maps: one cilium_lb4_services_v2, one CT map
        lxc_maps = node.objects[POD.name].maps
        for shared in ("cilium_ct4_global", "cilium_lb4_services_v2", POLICY_CALL_MAP):
            assert map_id(lxc_maps[shared]) == map_id(h.maps[shared])
        assert map_id(lxc_maps[cfg.calls_map_pod(POD.lxc_id)]) != map_id(
            h.maps[cfg.calls_map_netdev(WORKER.eth0_ifindex)])
        calls = node.map_fd(cfg.calls_map_netdev(WORKER.eth0_ifindex))
        assert slot_filled(calls, 7)  # the from-netdev handler, every packet's next step
        assert slot_filled(calls, 20)  # tail_nodeport_ipv4_dsr: the option and the redirect
        assert slot_filled(node.map_fd(POLICY_CALL_MAP), POD.lxc_id)
        assert not slot_filled(node.map_fd(POLICY_CALL_MAP), POD.lxc_id + 1)


def test_a_compile_error_shows_clangs_message_and_the_version(
        cilium_source: CiliumSource, tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.getbasetemp() / "cilium-cache" / "bpf"
    with pytest.raises(DatapathError) as err:
        compile_object(cilium_source, "bpf_host", {
            "node_config.h": "#error this node config is wrong\n", "ep_config.h": ""}, cache)
    text = str(err.value)
    assert f"Cilium {cilium_source.version}" in text
    assert "this node config is wrong" in text
    assert not list(Path(cache.parent / "cilium").rglob(".bpf_host-*.o"))  # no temp left


def test_a_cilium_line_the_lab_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.13 to 1\.16 only"):
        cfg.layout_for(CiliumVersion.parse("1.12.9"))
    assert cfg.layout_for(CiliumVersion.parse("v1.15.4")) == "v1.16"
