"""Cilium's kernel probes: the live probe of the running kernel, the predictions from
a symbol table and from a release, and the feature headers that follow them.

The live tests run in the kernel matrix's guests too (group ``cilium-seed``):
there the prediction the host made for the guest's release is checked against
the guest's own probe."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from lab.datapath.cilium import config as cfg
from lab.datapath.cilium import probes
from lab.datapath.cilium.build import prepared_tree, tree_folder
from lab.datapath.cilium.source import CiliumSource

# what the lab wrote for every kernel before it probed (the full set): the feature
# headers of a kernel where every probe passes must stay these, byte for byte
# (the build cache of such a kernel keeps its objects)
OLD_HEADERS = {
    "v1.13": {
        "features.h": ("HAVE_CGROUP_ID", "HAVE_DIRECT_ACCESS_TO_MAP_VALUES", "HAVE_JIFFIES",
                       "HAVE_LARGE_INSN_LIMIT", "HAVE_LPM_TRIE_MAP_TYPE",
                       "HAVE_LRU_HASH_MAP_TYPE", "HAVE_NETNS_COOKIE", "HAVE_SET_RETVAL",
                       "HAVE_SOCKET_COOKIE", "HAVE_SOCKET_LOOKUP"),
        "features_skb.h": ("HAVE_CHANGE_TAIL", "HAVE_CSUM_LEVEL", "HAVE_FIB_LOOKUP"),
    },
    "v1.16": {
        "features.h": ("HAVE_CGROUP_ID", "HAVE_FIB_IFINDEX", "HAVE_FIB_NEIGH", "HAVE_JIFFIES",
                       "HAVE_NETNS_COOKIE", "HAVE_SET_RETVAL", "HAVE_SOCKET_COOKIE"),
        "features_skb.h": ("HAVE_CSUM_LEVEL",),
        "features_xdp.h": ("HAVE_XDP_GET_BUFF_LEN", "HAVE_XDP_LOAD_BYTES",
                           "HAVE_XDP_STORE_BYTES"),
    },
}
HEAD = "/* kernel probe results (written by dsrlab) */\n#pragma once\n"


def _old_text(name: str, defines: tuple[str, ...]) -> str:
    include = "" if name == "features.h" else '#include "features.h"\n'
    return HEAD + include + "".join(f"#define {d} 1\n" for d in defines)


def _every_probe() -> probes.KernelFeatures:
    return probes.KernelFeatures("6.18.0", "release", frozenset(probes.PROBES))


@pytest.mark.parametrize("layout", ["v1.13", "v1.16"])
def test_a_kernel_where_every_probe_passes_gets_the_headers_of_old(layout: str) -> None:
    got = cfg.feature_headers(layout, _every_probe())  # type: ignore[arg-type]
    assert got == {n: _old_text(n, d) for n, d in OLD_HEADERS[layout].items()}


def test_5_10_has_no_set_retval_nor_the_xdp_buffer_helpers() -> None:
    """bpf_set_retval and the XDP buffer helpers came with 5.18: 5.10's headers lack
    them (the lab used to write them for every kernel)."""
    f = probes.from_release("5.10.0-35-amd64")
    assert f.missing("v1.13") == ["HAVE_SET_RETVAL"]
    assert f.missing("v1.16") == ["HAVE_SET_RETVAL", "HAVE_XDP_GET_BUFF_LEN",
                                  "HAVE_XDP_LOAD_BYTES", "HAVE_XDP_STORE_BYTES"]
    headers = cfg.feature_headers("v1.16", f)
    assert "HAVE_SET_RETVAL" not in headers["features.h"]
    assert "HAVE_FIB_IFINDEX" in headers["features.h"]  # redirect_peer: 5.10
    assert headers["features_xdp.h"] == HEAD + '#include "features.h"\n'
    assert probes.from_release("6.1.0-57-amd64").full()
    old = probes.from_release("5.1.0")
    assert "HAVE_LARGE_INSN_LIMIT" in old.missing("v1.13")
    assert "HAVE_LARGE_INSN_LIMIT" not in probes.from_release("5.2.0").missing("v1.13")


def test_each_define_names_the_kernel_symbols_its_prediction_reads() -> None:
    assert probes.define_symbols("v1.16", "HAVE_FIB_IFINDEX") == ["bpf_redirect_peer"]
    assert probes.define_symbols("v1.13", "HAVE_SET_RETVAL") == ["bpf_set_retval"]
    assert probes.define_symbols("v1.13", "HAVE_NETNS_COOKIE") == [
        "bpf_get_netns_cookie_sock", "bpf_get_netns_cookie_sock_addr"]
    assert probes.define_symbols("v1.13", "HAVE_LARGE_INSN_LIMIT") == ["release >= 5.2"]
    for layout, headers in probes.DEFINES.items():
        for header in headers.values():
            for define in header:
                assert probes.define_symbols(layout, define)


def test_a_symbol_table_predicts_by_function_or_proto(tmp_path: Path) -> None:
    """A helper is there iff its kernel function or that function's ``_proto`` is; the
    large instruction limit goes by release."""
    every = {h.symbol for h in probes.HELPERS.values()} | {
        m.symbol for m in probes.MAP_TYPES.values()}
    symbols = every - {"bpf_set_retval", "bpf_redirect_peer"} | {"bpf_redirect_peer_proto"}
    path = tmp_path / "System.map-5.15.0-1-amd64"
    path.write_text("".join(f"ffffffff81000000 T {s}\n" for s in sorted(symbols)))
    f = probes.predict("5.15.0-1-amd64", boot=tmp_path)
    assert f.source == "System.map"
    assert f.missing("v1.16") == ["HAVE_SET_RETVAL"]
    assert f.missing("v1.13") == ["HAVE_SET_RETVAL"]


def test_a_stub_system_map_falls_back_to_the_release(tmp_path: Path) -> None:
    """Debian's /boot/System.map-* says the real one is in the -dbg package."""
    (tmp_path / "System.map-5.10.0-35-amd64").write_text(
        "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    f = probes.predict("5.10.0-35-amd64", boot=tmp_path)
    assert f.source == "release"
    assert f.passed == probes.from_release("5.10.0-35-amd64").passed
    assert probes.predict("5.10.0-35-amd64", boot=tmp_path / "none").source == "release"


def _live() -> probes.KernelFeatures:
    if os.geteuid() != 0:
        pytest.skip("needs root (loads probe programs)")
    return probes.probe_running()


@pytest.mark.bpf
def test_the_live_probe_matches_the_prediction_from_kallsyms() -> None:
    live = _live()
    symbols = probes.read_symbols(probes.KALLSYMS)
    if symbols is None:
        pytest.skip("no readable /proc/kallsyms with BPF symbols")
    predicted = probes.from_symbols(platform.release(), symbols, "kallsyms")
    for layout in probes.DEFINES:
        assert predicted.defines(layout) == live.defines(layout), layout


@pytest.mark.bpf
def test_the_live_probe_matches_the_prediction_from_the_release() -> None:
    """What the matrix's host predicts for a guest kernel (Debian ships no real
    System.map) is what the guest's own probe finds."""
    live = _live()
    predicted = probes.from_release(platform.release())
    for layout in probes.DEFINES:
        assert predicted.defines(layout) == live.defines(layout), (layout, live.describe())


@pytest.mark.bpf
def test_the_live_probe_matches_this_kernels_system_map() -> None:
    live = _live()
    path = probes.system_map(platform.release())
    if probes.read_symbols(path) is None:
        pytest.skip(f"no System.map with symbols at {path}")
    predicted = probes.predict(platform.release())
    for layout in probes.DEFINES:
        assert predicted.defines(layout) == live.defines(layout), layout


@pytest.mark.bpf
def test_the_large_instruction_limit_probe_loads_past_4096() -> None:
    live = _live()
    assert (probes.LARGE_INSN_KEY in live.passed) == (
        probes.release_version(platform.release()) >= probes.LARGE_INSN_LIMIT_SINCE)


def test_features_other_than_the_full_set_prepare_a_tree_of_their_own(
        cilium_source: CiliumSource, tmp_path: Path) -> None:
    """The full set keeps the cache folder it always had; 5.10's is another, whose
    features.h lacks HAVE_SET_RETVAL."""
    full = _every_probe()
    old = probes.from_release("5.10.0-35-amd64")
    assert tree_folder(cilium_source, full) == cilium_source.sha256[:20]
    assert tree_folder(cilium_source, old) != tree_folder(cilium_source, full)
    cache = tmp_path / "bpf"
    tree_full = prepared_tree(cilium_source, cache, full)
    tree_old = prepared_tree(cilium_source, cache, old)
    assert tree_full != tree_old
    assert "HAVE_SET_RETVAL" in (tree_full / "include/bpf/features.h").read_text()
    assert "HAVE_SET_RETVAL" not in (tree_old / "include/bpf/features.h").read_text()
