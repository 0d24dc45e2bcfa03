"""The kernel probes Cilium's agent runs before it compiles, and their ``features*.h``.

The agent (``pkg/datapath/linux/probes``) asks the running kernel whether a
program type may call a helper (``HaveProgramHelper``), whether a map type
exists, and (1.13) whether a program may hold more than 4096 instructions;
each ``HAVE_*`` define of ``features.h``, ``features_skb.h`` and
``features_xdp.h`` is one probe or the conjunction of a few
(:data:`DEFINES`). This module gives the same answers three ways:

- :func:`probe_running` asks the running kernel through libbpf
  (``libbpf_probe_bpf_helper``, ``libbpf_probe_bpf_map_type``, and a
  4097-instruction socket filter for the large instruction limit), as the
  agent does; it needs the right to load programs (root);
- :func:`from_symbols` reads a kernel's symbol table (``System.map`` or
  ``/proc/kallsyms``): a helper exists for a program type iff its kernel
  function (``bpf_redirect_peer``, ``bpf_get_netns_cookie_sock``...) or
  that function's ``..._proto`` is there; the large instruction limit from
  the release (5.2 and later);
- :func:`from_release` says what a release has from the first release of
  each helper (Debian's ``/boot/System.map-*`` is a stub: the real one is in
  the ``-dbg`` package), which the matrix's host uses for a guest kernel.

:func:`features_for` picks: the live probe for the running kernel (its
kallsyms when it may not load programs), else a real ``System.map``, else
the release. Each way names its source in :attr:`KernelFeatures.source`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.datapath import libbpf
from lab.datapath.errors import DatapathError

# enum bpf_prog_type (uapi/linux/bpf.h)
PROG_TYPES: dict[str, int] = {"socket_filter": 1, "sched_cls": 3, "xdp": 6,
                              "cgroup_sock": 9, "cgroup_sock_addr": 18}
LARGE_INSN_LIMIT_SINCE = (5, 2)
BPF_MAXINSNS = 4096  # the limit before 5.2 (and for unprivileged loads)


@dataclass(frozen=True)
class Helper:
    """One (program type, helper) pair the agent probes."""

    prog_type: str
    name: str  # the helper as in bpf.h, without bpf_
    func_id: int  # enum bpf_func_id
    symbol: str  # the kernel function that implements it for this program type
    since: tuple[int, int]  # first kernel release that offers it to this program type

    @property
    def key(self) -> str:
        return f"{self.prog_type}:{self.name}"


@dataclass(frozen=True)
class MapType:
    name: str
    type_id: int  # enum bpf_map_type
    symbol: str
    since: tuple[int, int]

    @property
    def key(self) -> str:
        return f"map:{self.name}"


LARGE_INSN_KEY = "large_insn_limit"

_H = Helper
HELPERS: dict[str, Helper] = {h.key: h for h in (
    _H("cgroup_sock", "get_netns_cookie", 122, "bpf_get_netns_cookie_sock", (5, 7)),
    _H("cgroup_sock_addr", "get_netns_cookie", 122, "bpf_get_netns_cookie_sock_addr", (5, 7)),
    _H("cgroup_sock_addr", "get_socket_cookie", 46, "bpf_get_socket_cookie_sock_addr", (5, 0)),
    _H("cgroup_sock", "jiffies64", 118, "bpf_jiffies64", (5, 5)),
    _H("cgroup_sock_addr", "jiffies64", 118, "bpf_jiffies64", (5, 5)),
    _H("sched_cls", "jiffies64", 118, "bpf_jiffies64", (5, 5)),
    _H("xdp", "jiffies64", 118, "bpf_jiffies64", (5, 5)),
    _H("cgroup_sock_addr", "sk_lookup_tcp", 84, "bpf_sock_addr_sk_lookup_tcp", (5, 2)),
    _H("cgroup_sock_addr", "sk_lookup_udp", 85, "bpf_sock_addr_sk_lookup_udp", (5, 2)),
    _H("cgroup_sock_addr", "get_current_cgroup_id", 80, "bpf_get_current_cgroup_id", (5, 7)),
    _H("cgroup_sock", "set_retval", 187, "bpf_set_retval", (5, 18)),
    _H("sched_cls", "redirect_neigh", 152, "bpf_redirect_neigh", (5, 10)),
    _H("sched_cls", "redirect_peer", 155, "bpf_redirect_peer", (5, 10)),
    _H("sched_cls", "skb_change_tail", 38, "bpf_skb_change_tail", (4, 9)),
    _H("sched_cls", "fib_lookup", 69, "bpf_skb_fib_lookup", (4, 18)),
    _H("sched_cls", "csum_level", 135, "bpf_csum_level", (5, 7)),
    _H("xdp", "fib_lookup", 69, "bpf_xdp_fib_lookup", (4, 18)),
    _H("xdp", "xdp_get_buff_len", 188, "bpf_xdp_get_buff_len", (5, 18)),
    _H("xdp", "xdp_load_bytes", 189, "bpf_xdp_load_bytes", (5, 18)),
    _H("xdp", "xdp_store_bytes", 190, "bpf_xdp_store_bytes", (5, 18)),
)}
MAP_TYPES: dict[str, MapType] = {m.key: m for m in (
    MapType("lru_hash", 9, "htab_lru_map_update_elem", (4, 10)),
    MapType("lpm_trie", 11, "trie_update_elem", (4, 11)),
)}


def _helpers(*pairs: str) -> tuple[str, ...]:
    for p in pairs:
        if p not in HELPERS:
            raise KeyError(p)
    return pairs


_NETNS = _helpers("cgroup_sock:get_netns_cookie", "cgroup_sock_addr:get_netns_cookie")
_JIFFIES = _helpers("cgroup_sock:jiffies64", "cgroup_sock_addr:jiffies64",
                    "sched_cls:jiffies64", "xdp:jiffies64")
_COMMON = {
    "HAVE_NETNS_COOKIE": _NETNS,
    "HAVE_SOCKET_COOKIE": _helpers("cgroup_sock_addr:get_socket_cookie"),
    "HAVE_JIFFIES": _JIFFIES,
    "HAVE_CGROUP_ID": _helpers("cgroup_sock_addr:get_current_cgroup_id"),
    "HAVE_SET_RETVAL": _helpers("cgroup_sock:set_retval"),
}
# per layout, per header: define -> the probes that must all pass
DEFINES: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "v1.13": {
        "features.h": _COMMON | {
            "HAVE_LRU_HASH_MAP_TYPE": ("map:lru_hash",),
            "HAVE_LPM_TRIE_MAP_TYPE": ("map:lpm_trie",),
            "HAVE_SOCKET_LOOKUP": _helpers("cgroup_sock_addr:sk_lookup_tcp",
                                           "cgroup_sock_addr:sk_lookup_udp"),
            "HAVE_DIRECT_ACCESS_TO_MAP_VALUES": _helpers("sched_cls:fib_lookup"),
            "HAVE_LARGE_INSN_LIMIT": (LARGE_INSN_KEY,),
        },
        "features_skb.h": {
            "HAVE_CHANGE_TAIL": _helpers("sched_cls:skb_change_tail"),
            "HAVE_FIB_LOOKUP": _helpers("sched_cls:fib_lookup"),
            "HAVE_CSUM_LEVEL": _helpers("sched_cls:csum_level"),
        },
    },
    "v1.16": {
        "features.h": _COMMON | {
            "HAVE_FIB_NEIGH": _helpers("sched_cls:redirect_neigh"),
            # HaveFibIfindex: bpf_fib_lookup returns the ifindex since the kernel
            # that brought redirect_peer (5.10); the agent probes that helper
            "HAVE_FIB_IFINDEX": _helpers("sched_cls:redirect_peer"),
        },
        "features_skb.h": {"HAVE_CSUM_LEVEL": _helpers("sched_cls:csum_level")},
        "features_xdp.h": {
            "HAVE_XDP_GET_BUFF_LEN": _helpers("xdp:xdp_get_buff_len"),
            "HAVE_XDP_LOAD_BYTES": _helpers("xdp:xdp_load_bytes"),
            "HAVE_XDP_STORE_BYTES": _helpers("xdp:xdp_store_bytes"),
        },
    },
}
PROBES: tuple[str, ...] = (*HELPERS, *MAP_TYPES, LARGE_INSN_KEY)


def define_symbols(layout: str, define: str) -> list[str]:
    """The kernel symbols a define's prediction looks for (and the release rule)."""
    out: list[str] = []
    for header in DEFINES[layout].values():
        for key in header.get(define, ()):
            if key in HELPERS:
                out.append(HELPERS[key].symbol)
            elif key in MAP_TYPES:
                out.append(MAP_TYPES[key].symbol)
            else:
                out.append("release >= {}.{}".format(*LARGE_INSN_LIMIT_SINCE))
    return out


@dataclass(frozen=True)
class KernelFeatures:
    """Which probes pass on one kernel, and how that was learnt."""

    release: str
    source: str  # "probe", "kallsyms", "System.map", "release"
    passed: frozenset[str]  # keys of PROBES that pass

    def defines(self, layout: str) -> dict[str, tuple[str, ...]]:
        """Per header, the ``HAVE_*`` defines whose probes all pass."""
        return {name: tuple(d for d, keys in sorted(header.items())
                            if all(k in self.passed for k in keys))
                for name, header in DEFINES[layout].items()}

    def missing(self, layout: str) -> list[str]:
        """The defines of ``layout`` that this kernel does not get."""
        return sorted(d for header in DEFINES[layout].values() for d, keys in header.items()
                      if not all(k in self.passed for k in keys))

    def full(self) -> bool:
        """Every probe passes (the set the lab wrote for every kernel before)."""
        return self.passed >= set(PROBES)

    def describe(self) -> str:
        missing = sorted(set(PROBES) - self.passed)
        return (f"kernel {self.release} ({self.source}): "
                + ("every probe passes" if not missing else "no " + ", ".join(missing)))


def release_version(release: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise DatapathError(f"cannot read a kernel version from {release[:40]!r}")
    return int(m[1]), int(m[2])


def from_release(release: str) -> KernelFeatures:
    """What ``release`` offers, from the first release of each helper and map type."""
    version = release_version(release)
    passed = {k for k, h in HELPERS.items() if version >= h.since}
    passed |= {k for k, m in MAP_TYPES.items() if version >= m.since}
    if version >= LARGE_INSN_LIMIT_SINCE:
        passed.add(LARGE_INSN_KEY)
    return KernelFeatures(release, "release", frozenset(passed))


def read_symbols(path: Path) -> set[str] | None:
    """The symbol names of a ``System.map``/``kallsyms`` file; None for a stub without
    BPF symbols (Debian's ``/boot/System.map-*``) or a file that cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    names = {parts[2] for line in text.splitlines()
             if len(parts := line.split()) >= 3}
    return names if any(n.startswith("bpf_") for n in names) else None


def from_symbols(release: str, symbols: Iterable[str], source: str) -> KernelFeatures:
    """What a kernel offers by its symbol table: a helper iff its function or the
    function's ``_proto`` is there; the large instruction limit by release."""
    names = set(symbols)

    def has(symbol: str) -> bool:
        return symbol in names or f"{symbol}_proto" in names

    passed = {k for k, h in HELPERS.items() if has(h.symbol)}
    passed |= {k for k, m in MAP_TYPES.items() if has(m.symbol)}
    if release_version(release) >= LARGE_INSN_LIMIT_SINCE:
        passed.add(LARGE_INSN_KEY)
    return KernelFeatures(release, source, frozenset(passed))


def _large_insn_limit() -> bool:
    """A privileged socket filter of 4097 instructions loads (1M limit) or is refused."""
    mov_r0_0 = (0xB7).to_bytes(1, "little") + bytes(7)  # BPF_ALU64|BPF_MOV|BPF_K r0 = 0
    exit_ = (0x95).to_bytes(1, "little") + bytes(7)
    insns = mov_r0_0 * BPF_MAXINSNS + exit_
    buf = ctypes.create_string_buffer(insns, len(insns))
    fd = libbpf.lib().bpf_prog_load(PROG_TYPES["socket_filter"], b"dsrlab_large", b"GPL",
                                    buf, BPF_MAXINSNS + 1, None)
    if fd >= 0:
        os.close(fd)
        return True
    return False


def probe_running() -> KernelFeatures:
    """Ask the running kernel, as the agent does (needs the right to load programs)."""
    lib = libbpf.lib()
    passed: set[str] = set()
    for key, h in HELPERS.items():
        rc = lib.libbpf_probe_bpf_helper(PROG_TYPES[h.prog_type], h.func_id, None)
        libbpf.check(rc, f"probing {h.prog_type} for bpf_{h.name}")
        if rc == 1:
            passed.add(key)
    for key, m in MAP_TYPES.items():
        rc = lib.libbpf_probe_bpf_map_type(m.type_id, None)
        libbpf.check(rc, f"probing map type {m.name}")
        if rc == 1:
            passed.add(key)
    if _large_insn_limit():
        passed.add(LARGE_INSN_KEY)
    return KernelFeatures(platform.release(), "probe", frozenset(passed))


KALLSYMS = Path("/proc/kallsyms")


def system_map(release: str, boot: Path = Path("/boot")) -> Path:
    return boot / f"System.map-{release}"


@functools.cache
def running() -> KernelFeatures:
    """The running kernel's features: probed, or from its kallsyms without the right
    to load programs (memoized: the kernel does not change under a process)."""
    try:
        return probe_running()
    except DatapathError:
        symbols = read_symbols(KALLSYMS)
        if symbols is None:
            return from_release(platform.release())
        return from_symbols(platform.release(), symbols, "kallsyms")


def predict(release: str, boot: Path = Path("/boot")) -> KernelFeatures:
    """A kernel that is not running: its real ``System.map`` where there is one,
    else its release."""
    symbols = read_symbols(system_map(release, boot))
    if symbols is not None:
        return from_symbols(release, symbols, "System.map")
    return from_release(release)


def features_for(release: str | None = None) -> KernelFeatures:
    """The features of ``release`` (default: the running kernel)."""
    if release is None or release == platform.release():
        return running()
    return predict(release)


def feature_headers(layout: str, features: KernelFeatures) -> dict[str, str]:
    """``include/bpf/features*.h`` by file name, as the agent writes them for a kernel."""
    def header(names: tuple[str, ...], include: str = "") -> str:
        body = "".join(f"#define {n} 1\n" for n in names)
        return "/* kernel probe results (written by dsrlab) */\n#pragma once\n" + include + body

    defines = features.defines(layout)
    return {name: header(names, "" if name == "features.h" else '#include "features.h"\n')
            for name, names in defines.items()}


def header_digest(headers: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for name, text in sorted(headers.items()):
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:8]
