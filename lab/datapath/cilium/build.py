"""Compile Cilium's ``bpf_host.c`` and ``bpf_lxc.c`` as the agent does, cached.

The source tree is copied once per source hash into the cache
(``<cache>/cilium/<hash>/bpf``) and prepared there
(:func:`lab.datapath.cilium.tree.prepare`, the kernel feature headers);
each object is compiled with the agent's flags and the headers of one
endpoint and named by the hash of the source, the headers, the flags and
clang's version, so a node or pod whose configuration has not changed
reuses its object. A compile error carries clang's message and the Cilium
version.

The feature headers follow a kernel (:mod:`.probes`: the running kernel's
probes by default, or a prediction for another kernel's release, as the
matrix's host builds for its guests): a tree whose features are not the full
set (every probe passes) is prepared in a folder of its own
(``<hash>-f<features>``), so its objects are other objects; the full set
keeps the folder it always had (``<hash>``), and with it the cached objects.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.datapath.build import _clang_version, arch_include_dirs, default_cache_dir, find_clang
from lab.datapath.cilium import config as cfg
from lab.datapath.cilium import probes
from lab.datapath.cilium.probes import KernelFeatures
from lab.datapath.cilium.source import CiliumSource
from lab.datapath.cilium.tree import prepare
from lab.datapath.errors import DatapathError

# pkg/datapath/loader/compile.go's standard flags (1.13 to 1.16), plus -g for
# the BTF that libbpf's BTF-defined maps need and the v3 ISA the agent picks on
# kernels with the probes it wants
AGENT_CFLAGS: tuple[str, ...] = (
    "-O2", "-g", "--target=bpf", "-std=gnu89", "-nostdinc",
    "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wno-address-of-packed-member",
    "-Wno-unknown-warning-option", "-Wno-gnu-variable-sized-type-not-at-end",
    "-Wdeclaration-after-statement", "-Wimplicit-int-conversion", "-Wenum-conversion",
    "-mcpu=v3",
)
TREE_READY = ".dsrlab-prepared"


@dataclass(frozen=True)
class BuiltObject:
    """One compiled object and what went into it."""

    program: str  # "bpf_host" | "bpf_lxc"
    path: Path
    cached: bool
    seconds: float


def cache_root(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()).parent / "cilium"


def tree_folder(source: CiliumSource, features: KernelFeatures) -> str:
    """The cache folder of ``source`` prepared for ``features``: the source hash, and a
    digest of the feature headers unless every probe passes."""
    folder = source.sha256[:20]
    if features.full():
        return folder
    headers = probes.feature_headers(cfg.layout_for(source.version), features)
    return f"{folder}-f{probes.header_digest(headers)}"


def prepared_tree(source: CiliumSource, cache_dir: Path | None = None,
                  features: KernelFeatures | None = None) -> Path:
    """The prepared copy of ``source``'s ``bpf/`` for ``features``' kernel (default: the
    running kernel), made once per source hash and feature set."""
    layout = cfg.layout_for(source.version)
    features = features or probes.running()
    base = cache_root(cache_dir) / tree_folder(source, features)
    tree = base / "bpf"
    if (tree / TREE_READY).is_file():
        return tree
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tree-", dir=base))
    try:
        bpf = source.extract_to(staging)
        changes = prepare(bpf)
        for name, text in cfg.feature_headers(layout, features).items():
            (bpf / "include" / "bpf" / name).write_text(text)
        (bpf / TREE_READY).write_text(
            f"{source.describe()}\n{changes.summary()}\n{features.describe()}\n")
        try:
            os.rename(bpf, tree)
        except OSError:
            if not (tree / TREE_READY).is_file():  # not a concurrent builder's win
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tree


def _digest(source: CiliumSource, headers: Mapping[str, str], flags: list[str],
            clang: str) -> str:
    h = hashlib.sha256(source.sha256.encode())
    for name, text in sorted(headers.items()):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    h.update("\0".join(flags).encode())
    h.update(_clang_version(clang).encode())
    return h.hexdigest()[:20]


def compile_object(source: CiliumSource, program: str, headers: Mapping[str, str],
                   cache_dir: Path | None = None, *,
                   features: KernelFeatures | None = None) -> BuiltObject:
    """Compile ``<program>.c`` of ``source`` with ``headers`` (file name -> text, e.g.
    ``node_config.h``, ``ep_config.h``) for ``features``' kernel; cached by content."""
    tree = prepared_tree(source, cache_dir, features)
    clang = find_clang()
    flags = [*AGENT_CFLAGS, f"-D__NR_CPUS__={os.cpu_count() or 1}"]
    digest = _digest(source, headers, flags, clang)
    out_dir = tree.parent / "obj"
    target = out_dir / f"{program}-{digest}.o"
    if target.is_file():
        return BuiltObject(program, target, True, 0.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = Path(tempfile.mkdtemp(prefix=f".gen-{program}-", dir=out_dir))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{program}-", suffix=".o", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    started = time.monotonic()
    try:
        for name, text in headers.items():
            (gen / name).write_text(text)
        argv = [clang, *flags, f"-I{gen}", f"-I{tree}", f"-I{tree / 'include'}",
                *arch_include_dirs(), "-c", str(tree / f"{program}.c"), "-o", str(tmp)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DatapathError(
                f"clang failed to compile {source.describe()}'s {program}.c "
                f"(exit {proc.returncode})", proc.stderr.strip())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(gen, ignore_errors=True)
    return BuiltObject(program, target, False, time.monotonic() - started)


def build_overlay(source: CiliumSource, node: cfg.NodeParams, lb: cfg.LbParams,
                  cache_dir: Path | None = None, *, features: KernelFeatures | None = None,
                  ) -> BuiltObject:
    """``bpf_overlay.o`` for the node's tunnel device (1.16 layout)."""
    layout = cfg.layout_for(source.version)
    if layout == "v1.13":
        raise DatapathError(f"Cilium {source.version}: the lab builds bpf_overlay for 1.14 "
                            "and later (Geneve dispatch)")
    return compile_object(source, "bpf_overlay", {
        "node_config.h": cfg.node_config(node, lb, layout),
        "netdev_config.h": cfg.overlay_config(node, lb)}, cache_dir, features=features)


def build_node(source: CiliumSource, node: cfg.NodeParams, pods: list[cfg.PodParams],
               lb: cfg.LbParams, cache_dir: Path | None = None, *,
               features: KernelFeatures | None = None,
               ) -> tuple[BuiltObject, dict[str, BuiltObject]]:
    """``bpf_host.o`` for ``node``'s eth0 and ``bpf_lxc.o`` for each pod (by pod name)."""
    layout = cfg.layout_for(source.version)
    node_h = cfg.node_config(node, lb, layout)
    host = compile_object(source, "bpf_host", {
        "node_config.h": node_h, "ep_config.h": cfg.host_ep_config(node, layout)}, cache_dir,
        features=features)
    lxcs = {pod.name: compile_object(source, "bpf_lxc", {
        "node_config.h": node_h, "ep_config.h": cfg.pod_ep_config(node, pod, layout)},
        cache_dir, features=features) for pod in pods}
    return host, lxcs
