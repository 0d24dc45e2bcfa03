"""A loaded datapath object: its programs and typed access to its maps.

:class:`DatapathObject` opens ``dsr.o`` with libbpf, loads it through the
verifier (the verifier log is in the :class:`DatapathError` when that
fails), and then offers the lab's operations: configure the option byte
order, the selection seed and the MTU, add/remove services, read the
CT/revnat tables and counters, run a program on a frame (BPF_PROG_TEST_RUN)
and attach programs to tc. Each lab node loads its own object, so each node
has its own maps.

``close()`` frees the object; programs attached to tc stay attached (the
filter holds them) until detached.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import mmap
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.datapath import libbpf, maps, requires, tc, testrun
from lab.datapath.build import build_object
from lab.datapath.errors import DatapathError
from lab.datapath.maps import BackendEntry, CtEntry, RevnatEntry, ServiceEntry
from lab.wire.dsropt import OptionOrder

PROGRAMS: tuple[str, ...] = ("dsr_from_netdev", "dsr_to_netdev")

VERIFIER_LOG_SIZE = 8 * 1024 * 1024
VERIFIER_MARK, LIBBPF_MARK = "--- verifier log ---", "--- libbpf ---"  # the parts of the log
BPF_ANY = 0
BPF_LOG_STATS = 4  # the verifier's statistics only (kernel 5.2+)
STATS_LOG_SIZE = 64 * 1024  # room for the statistics and any warning beside them
_PROCESSED = re.compile(rb"processed (\d+) insns")
_NO_BATCH = (-errno.EINVAL, -errno.EOPNOTSUPP, -524)  # 524: the kernel's ENOTSUPP
MIN_MTU, MAX_MTU = 68, 0xFFFF  # IPv4's minimum; tot_len is 16 bits


class BpfMap:
    """One map of the loaded object, addressed by raw key/value bytes."""

    def __init__(self, name: str, fd: int, key_size: int, value_size: int) -> None:
        self.name = name
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        self._zeroed: tuple[bytes, bytes, int] | None = None  # reset()'s batch, an array's

    def _key(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        if len(key) != self.key_size:
            raise DatapathError(f"{self.name}: key is {len(key)} bytes, map wants {self.key_size}")
        return ctypes.create_string_buffer(key, self.key_size)

    def lookup(self, key: bytes) -> bytes | None:
        value = ctypes.create_string_buffer(self.value_size)
        rc = libbpf.lib().bpf_map_lookup_elem(self.fd, self._key(key), value)
        if rc == -errno.ENOENT:
            return None
        libbpf.check(rc, f"lookup in {self.name}")
        return value.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.value_size:
            raise DatapathError(
                f"{self.name}: value is {len(value)} bytes, map wants {self.value_size}"
            )
        buf = ctypes.create_string_buffer(value, self.value_size)
        rc = libbpf.lib().bpf_map_update_elem(self.fd, self._key(key), buf, flags)
        libbpf.check(rc, f"update of {self.name}")

    def update_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Write many entries in one ``BPF_MAP_UPDATE_BATCH`` (one by one on a kernel
        whose map type has no batch operations)."""
        if not items:
            return
        for key, value in items:
            if len(key) != self.key_size or len(value) != self.value_size:
                raise DatapathError(f"{self.name}: batch entry of {len(key)}/{len(value)} "
                                    f"bytes, map wants {self.key_size}/{self.value_size}")
        self._update_raw(b"".join(k for k, _ in items), b"".join(v for _, v in items),
                         len(items))

    def _update_raw(self, keys: bytes, values: bytes, count: int) -> None:
        """``count`` entries, their keys and values laid end to end, in one batch."""
        n = ctypes.c_uint(count)
        rc = libbpf.lib().bpf_map_update_batch(self.fd, keys, values, ctypes.byref(n), None)
        if rc in _NO_BATCH:
            ks, vs = self.key_size, self.value_size
            for i in range(count):
                self.update(keys[i * ks:(i + 1) * ks], values[i * vs:(i + 1) * vs])
            return
        libbpf.check(rc, f"batch update of {self.name} ({count} entries)")

    def delete(self, key: bytes) -> bool:
        """Delete ``key``; False when it was not there."""
        rc = libbpf.lib().bpf_map_delete_elem(self.fd, self._key(key))
        if rc == -errno.ENOENT:
            return False
        libbpf.check(rc, f"delete from {self.name}")
        return True

    def keys(self) -> list[bytes]:
        found: list[bytes] = []
        cur: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        lib = libbpf.lib()
        while True:
            rc = lib.bpf_map_get_next_key(self.fd, cur, nxt)
            if rc == -errno.ENOENT:
                return found
            libbpf.check(rc, f"iterating {self.name}")
            found.append(nxt.raw)
            cur = ctypes.create_string_buffer(nxt.raw, self.key_size)

    def items(self) -> list[tuple[bytes, bytes]]:
        """Snapshot of (key, value); entries deleted meanwhile are skipped."""
        out: list[tuple[bytes, bytes]] = []
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                out.append((key, value))
        return out

    def clear(self) -> int:
        """Delete every entry (hash maps); returns how many were removed."""
        return sum(1 for key in self.keys() if self.delete(key))

    def reset(self) -> None:
        """Back to the state at load: an array's entries zeroed, anything else emptied."""
        if not libbpf.map_is_array(self.fd):
            self.clear()
            return
        if self._zeroed is None:  # an array's every index, and zeros: made once
            entries = libbpf.map_max_entries(self.fd)
            self._zeroed = (b"".join(maps.U32.pack(i) for i in range(entries)),
                            bytes(self.value_size * entries), entries)
        self._update_raw(*self._zeroed)


def _check_u32(what: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} must be in 0..{0xFFFFFFFF}, not {value}")


def sized_map(name: str, fd: int, got: tuple[int, int], want: tuple[int, int], ncpus: int,
              *, per_cpu: bool = False) -> BpfMap:
    """A map whose C key/value sizes (``got``) must be the Python layout's (``want``);
    a per-CPU map's values hold one slot per possible CPU."""
    if got != want:
        raise DatapathError(f"map {name}: C layout {got[0]}/{got[1]} bytes, Python expects "
                            f"{want[0]}/{want[1]}")
    ks, vs = want
    return BpfMap(name, fd, ks, vs * ncpus if per_cpu else vs)


def _checked_map(name: str, fd: int, ks: int, vs: int, ncpus: int) -> BpfMap:
    """One of the datapath's maps, checked against :data:`maps.LAYOUTS`."""
    return sized_map(name, fd, (ks, vs), maps.LAYOUTS[name], ncpus,
                     per_cpu=name == "dsr_counters")


def object_program_fd(obj: int, path: Path, name: str) -> int:
    """The fd of program ``name`` of a loaded libbpf object."""
    lib = libbpf.lib()
    prog = lib.bpf_object__find_program_by_name(obj, name.encode())
    if not prog:
        raise DatapathError(f"{path} has no program {name}")
    return libbpf.check(lib.bpf_program__fd(prog), f"fd of {name}")


def object_map(obj: int, path: Path, name: str, want: tuple[int, int], ncpus: int, *,
               per_cpu: bool = False) -> BpfMap:
    """Map ``name`` of a loaded libbpf object, its sizes checked against ``want``."""
    lib = libbpf.lib()
    m = lib.bpf_object__find_map_by_name(obj, name.encode())
    if not m:
        raise DatapathError(f"{path} has no map {name}")
    fd = libbpf.check(lib.bpf_map__fd(m), f"fd of {name}")
    got = (int(lib.bpf_map__key_size(m)), int(lib.bpf_map__value_size(m)))
    return sized_map(name, fd, got, want, ncpus, per_cpu=per_cpu)


def _log_buffer() -> ctypes.Array[ctypes.c_char]:
    """The verifier log buffer: anonymous memory (no 8 MiB zero-fill by the interpreter;
    the kernel's pages are zero and are touched only when the verifier writes)."""
    return (ctypes.c_char * VERIFIER_LOG_SIZE).from_buffer(mmap.mmap(-1, VERIFIER_LOG_SIZE))


def _set_max_entries(obj: int, path: Path, max_entries: Mapping[str, int]) -> None:
    lib = libbpf.lib()
    for name, n in max_entries.items():
        m = lib.bpf_object__find_map_by_name(obj, name.encode())
        if not m:
            raise DatapathError(f"{path} has no map {name}")
        libbpf.check(lib.bpf_map__set_max_entries(m, n), f"max_entries of {name}")


def with_processed(sizes: tuple[int | None, int], logged: int | None
                   ) -> tuple[int | None, int]:
    """``(verified, translated)`` with the statistics log's count where the kernel
    gave none (before 5.16)."""
    verified, translated = sizes
    return (verified if verified is not None else logged), translated


class _StatsLogs:
    """A small log per program at the verifier's statistics level (``BPF_LOG_STATS``,
    since 5.2): its ``processed N insns`` line is the count the kernel reports as
    ``verified_insns`` only since 5.16. At this level a rejection logs only its last
    lines: the caller loads again without it for the whole log."""

    def __init__(self, obj: int) -> None:
        lib = libbpf.lib()
        self._bufs: dict[str, ctypes.Array[ctypes.c_char]] = {}
        for prog, name in libbpf.object_programs(obj):
            buf = ctypes.create_string_buffer(STATS_LOG_SIZE)
            libbpf.check(lib.bpf_program__set_log_buf(prog, buf, STATS_LOG_SIZE),
                         f"log buffer of {name}")
            libbpf.check(lib.bpf_program__set_log_level(prog, BPF_LOG_STATS),
                         f"log level of {name}")
            self._bufs[name] = buf

    def processed(self) -> dict[str, int]:
        """Instructions processed, by program name (the programs the kernel loaded)."""
        found = {name: _PROCESSED.search(buf.value) for name, buf in self._bufs.items()}
        return {name: int(m[1]) for name, m in found.items() if m}


def open_and_load(path: Path, max_entries: Mapping[str, int] | None = None,
                  before_load: Callable[[int], None] | None = None,
                  ) -> tuple[int, ctypes.Array[ctypes.c_char]]:
    """:func:`load_counted` without the counts."""
    obj, log_buf, _processed = load_counted(path, max_entries, before_load)
    return obj, log_buf


def load_counted(path: Path, max_entries: Mapping[str, int] | None = None,
                 before_load: Callable[[int], None] | None = None, *, stats: bool = True,
                 ) -> tuple[int, ctypes.Array[ctypes.c_char], dict[str, int]]:
    """``bpf_object__open_file`` + ``bpf_object__load`` through the verifier, and the
    instructions the verifier processed per program (from its statistics log, on
    every kernel from 5.2; empty with ``stats=False``).

    ``max_entries`` sizes maps before they are created (a lab node needs far
    fewer CT entries than the object's default). Returns the object and the
    verifier log buffer (libbpf keeps a pointer to it: hold it as long as the
    object). ``before_load`` is called with the opened object before the load
    (to reuse another object's maps, say). A failed load raises a
    :class:`DatapathError` carrying the verifier log and libbpf's messages.
    """
    lib = libbpf.lib()
    log_buf = _log_buffer()
    opts = libbpf.new_opts(libbpf.BpfObjectOpenOpts)
    opts.kernel_log_buf = ctypes.cast(log_buf, ctypes.c_void_p)
    opts.kernel_log_size = VERIFIER_LOG_SIZE
    opts.kernel_log_level = 0  # libbpf retries a failed load with a log
    with libbpf.capture_messages() as messages:
        ctypes.set_errno(0)
        obj = lib.bpf_object__open_file(str(path).encode(), ctypes.byref(opts))
        if not obj:
            err = ctypes.get_errno() or errno.EINVAL
            raise DatapathError(
                f"bpf_object__open_file({path}) failed: {libbpf.errno_text(err)}",
                "\n".join(messages),
            )
        try:
            _set_max_entries(obj, path, max_entries or {})
            if before_load is not None:
                before_load(obj)
            logs = _StatsLogs(obj) if stats else None
            # an interrupt during the load is raised when it returns (libbpf.CALLS_BACK)
            rc = lib.bpf_object__load(obj)
        except BaseException:
            lib.bpf_object__close(obj)
            raise
        if rc < 0 and logs is not None:
            # the statistics level kept only the rejection's last lines: again, for all
            lib.bpf_object__close(obj)
            return load_counted(path, max_entries, before_load, stats=False)
        if rc < 0:
            verifier = log_buf.value.decode(errors="replace").strip()
            lib.bpf_object__close(obj)
            text = "\n".join([VERIFIER_MARK, verifier, LIBBPF_MARK, *messages])
            raise DatapathError(
                f"loading {path} failed: {libbpf.errno_text(rc)} (verifier log below)", text
            )
    return int(obj), log_buf, logs.processed() if logs is not None else {}


class DatapathObject:
    """The datapath's programs and maps: :meth:`load` a fresh object, or reopen a
    running one with :meth:`from_prog_ids`; use as a context manager."""

    def __init__(
        self,
        path: Path | None,
        prog_fds: dict[str, int],
        maps_by_name: dict[str, BpfMap],
        *,
        obj: int | None = None,
        log_buf: ctypes.Array[ctypes.c_char] | None = None,
        owned_fds: list[int] | None = None,
        processed: Mapping[str, int] | None = None,
    ) -> None:
        self.path = path
        self._processed = dict(processed or {})  # from the load's statistics log
        self._obj = obj
        self._log_buf = log_buf  # libbpf keeps a pointer to it in the object
        self._owned_fds = owned_fds or []
        self._prog_fds = prog_fds
        self._maps = maps_by_name
        self._closed = False
        self._attachments: list[tc.TcAttachment] = []

    @classmethod
    def load(cls, path: Path | str | None = None, *,
             max_entries: Mapping[str, int] | None = None) -> DatapathObject:
        """Open and load the object (building it first when ``path`` is None).

        ``max_entries`` resizes maps by name before they are created. A kernel
        older than the datapath's stated minimum (``bpf/dsr.h``) is refused
        first, with the reason (:class:`~lab.datapath.requires.KernelTooOld`).
        """
        requires.check_kernel()
        if path is None:
            path = build_object()
        path = Path(path)
        obj, log_buf, processed = load_counted(path, max_entries)
        lib = libbpf.lib()
        try:
            prog_fds, found = cls._resolve(obj, path)
        except BaseException:
            lib.bpf_object__close(obj)
            raise
        return cls(path, prog_fds, found, obj=obj, log_buf=log_buf, processed=processed)

    @staticmethod
    def _resolve(obj: int, path: Path) -> tuple[dict[str, int], dict[str, BpfMap]]:
        ncpus = libbpf.check(libbpf.lib().libbpf_num_possible_cpus(), "possible CPUs")
        prog_fds = {name: object_program_fd(obj, path, name) for name in PROGRAMS}
        found = {name: object_map(obj, path, name, layout, ncpus,
                                  per_cpu=name == "dsr_counters")
                 for name, layout in maps.LAYOUTS.items()}
        return prog_fds, found

    @classmethod
    def from_prog_ids(cls, prog_ids: Sequence[int]) -> DatapathObject:
        """Reopen a running datapath by the ids of its attached programs.

        For a lab left running by another process: get the id with
        :func:`lab.datapath.tc.find` (in the lab's namespace). The maps are the
        ones those programs use (``dsr_from_netdev`` uses all of them).
        """
        lib = libbpf.lib()
        owned: list[int] = []
        prog_fds: dict[str, int] = {}
        found: dict[str, BpfMap] = {}
        try:
            ncpus = libbpf.check(lib.libbpf_num_possible_cpus(), "possible CPUs")
            seen: set[int] = set()
            for prog_id in prog_ids:
                fd = libbpf.check(lib.bpf_prog_get_fd_by_id(prog_id), f"program id {prog_id}")
                owned.append(fd)
                name, map_ids = libbpf.prog_info(fd)
                if name not in PROGRAMS:
                    raise DatapathError(f"program id {prog_id} is {name!r}, not a dsrlab program")
                prog_fds[name] = fd
                for map_id in map_ids:
                    if map_id in seen:
                        continue
                    seen.add(map_id)
                    mfd = libbpf.check(lib.bpf_map_get_fd_by_id(map_id), f"map id {map_id}")
                    owned.append(mfd)
                    mname, ks, vs = libbpf.map_info(mfd)
                    if mname in maps.LAYOUTS:
                        found[mname] = _checked_map(mname, mfd, ks, vs, ncpus)
        except BaseException:
            for fd in owned:
                os.close(fd)
            raise
        return cls(None, prog_fds, found, owned_fds=owned)

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        """Release the object/fds (tc filters keep attached programs alive)."""
        if self._closed:
            return
        self._closed = True
        if self._obj is not None:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None
        for fd in self._owned_fds:
            os.close(fd)
        self._owned_fds.clear()
        self._prog_fds.clear()
        self._maps.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def reset(self) -> None:
        """Every map back to its state at load (arrays zeroed, the rest emptied):
        configuration, services, connection state and counters. What a fresh load
        gives, without the verifier's time: tests share one loaded object this way."""
        self._live()
        for found in self._maps.values():
            found.reset()

    def __enter__(self) -> DatapathObject:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _live(self) -> None:
        if self._closed:
            raise DatapathError(f"datapath object {self.path or '(by id)'} is closed")

    def program_sizes(self) -> dict[str, tuple[int | None, int]]:
        """Per program: (instructions the verifier processed: the kernel's count, or
        before 5.16 the load's statistics log, None for a program reopened by id
        there; instructions of the loaded, translated program)."""
        self._live()
        return {name: with_processed(libbpf.prog_sizes(fd), self._processed.get(name))
                for name, fd in self._prog_fds.items()}

    def program_fd(self, name: str) -> int:
        self._live()
        try:
            return self._prog_fds[name]
        except KeyError:
            have = ", ".join(self._prog_fds) or "none"
            raise DatapathError(f"unknown program {name!r} (this handle has: {have})") from None

    def map(self, name: str) -> BpfMap:
        self._live()
        try:
            return self._maps[name]
        except KeyError:
            raise DatapathError(f"map {name!r} is not available on this handle") from None

    # -- configuration ----------------------------------------------------

    def _config(self) -> maps.Config:
        """dsr_config[0]."""
        raw = self.map("dsr_config").lookup(maps.U32.pack(0))
        return maps.Config() if raw is None else maps.Config.unpack(raw)

    def _set_config(self, cfg: maps.Config) -> None:
        self.map("dsr_config").update(maps.U32.pack(0), cfg.pack())

    def _change_config(self, **fields: Any) -> None:
        self._set_config(dataclasses.replace(self._config(), **fields))

    def set_option_order(self, order: OptionOrder) -> None:
        """Byte order of the DSR option's port/address (host = Cilium's)."""
        if order not in ("host", "network"):
            raise ValueError(f"option order must be host or network, not {order!r}")
        flags = self._config().flags & ~maps.CFG_F_OPT_NETWORK_ORDER
        if order == "network":
            flags |= maps.CFG_F_OPT_NETWORK_ORDER
        self._change_config(flags=flags)

    def option_order(self) -> OptionOrder:
        return "network" if self._config().flags & maps.CFG_F_OPT_NETWORK_ORDER else "host"

    def set_selection_seed(self, seed: int | None) -> None:
        """Backend choice of new flows: ``None`` = random (the default, Cilium's
        ``random`` algorithm), an int = a hash of the flow tuple seeded with it,
        so the same seed and flow always get the same backend
        (:func:`lab.datapath.selection.seeded_slot` computes it in Python)."""
        flags = self._config().flags
        if seed is None:
            self._change_config(flags=flags & ~maps.CFG_F_SEEDED_SELECT, seed=0)
            return
        _check_u32("seed", seed)
        self._change_config(flags=flags | maps.CFG_F_SEEDED_SELECT, seed=seed)

    def selection_seed(self) -> int | None:
        """The seed of seeded selection, ``None`` when selection is random."""
        cfg = self._config()
        return cfg.seed if cfg.flags & maps.CFG_F_SEEDED_SELECT else None

    def set_node_addr(self, ip: str | None) -> None:
        """This node's address: the source SNAT services give their flows to remote
        backends, and where their replies come back to (``None``: no SNAT)."""
        if ip is not None:
            maps.ip_bytes(ip)  # a ValueError for anything but IPv4 text
        self._change_config(node_addr=ip)

    def node_addr(self) -> str | None:
        return self._config().node_addr

    def set_maglev_seed(self, seed: int) -> None:
        """The seed of Maglev's flow hash (the same on every node, so every node
        picks the same backend for a flow; :func:`lab.datapath.selection.maglev_hash`)."""
        _check_u32("seed", seed)
        self._change_config(maglev_seed=seed)

    def set_mtu(self, mtu: int) -> None:
        """The device MTU the DSR option must fit in: a packet whose tot_len + 8
        would exceed it is dropped (reason ``frag_needed``) instead of growing,
        as Cilium does with DSR ICMP errors off. 0 turns the check off (the
        default of a fresh object). The datapath cannot ask the kernel itself:
        ``bpf_check_mtu`` needs 5.12 and the lab supports 5.10."""
        if mtu != 0 and not MIN_MTU <= mtu <= MAX_MTU:
            raise ValueError(f"mtu must be 0 (no check) or in {MIN_MTU}..{MAX_MTU}, not {mtu}")
        self._change_config(mtu=mtu)

    def mtu(self) -> int:
        """The MTU the datapath checks against, 0 when it does not check."""
        return self._config().mtu

    def set_icmp_errors(self, on: bool) -> None:
        """DSR ICMP errors (Cilium's ``ENABLE_DSR_ICMP_ERRORS``): a packet too big for
        the option is answered with ICMP fragmentation needed (MTU - 8) instead of
        dropped; needs an MTU (:meth:`set_mtu`). Off in a fresh object."""
        flags = self._config().flags & ~maps.CFG_F_ICMP_ERRORS
        self._change_config(flags=flags | (maps.CFG_F_ICMP_ERRORS if on else 0))

    def icmp_errors(self) -> bool:
        return bool(self._config().flags & maps.CFG_F_ICMP_ERRORS)

    def set_fragment_tracking(self, on: bool) -> None:
        """IPv4 fragment tracking (Cilium's ``enable-ipv4-fragment-tracking``): a first
        fragment's ports are remembered, so the later fragments of a datagram (no L4
        header) are DNATed, given the option and rev-NATed with it; off, a first
        fragment is still translated (it has the ports) and the later ones pass
        untranslated. Off in a fresh object."""
        flags = self._config().flags & ~maps.CFG_F_FRAGMENTS
        self._change_config(flags=flags | (maps.CFG_F_FRAGMENTS if on else 0))

    def fragment_tracking(self) -> bool:
        return bool(self._config().flags & maps.CFG_F_FRAGMENTS)

    # -- services ---------------------------------------------------------

    def add_service(
        self,
        vip: str,
        port: int,
        proto: maps.Proto = "tcp",
        *,
        dsr: bool = True,
        snat: bool = False,
        local_only: bool = False,
        maglev: Sequence[int] | None = None,
        backends: Sequence[BackendEntry] = (),
    ) -> None:
        """Create or replace a service and its backends (slots 1..n).

        Remote backends get the DSR option (``dsr``), the node's address as
        source (``snat``, see :meth:`set_node_addr`) or a plain DNAT (neither).
        ``local_only`` marks externalTrafficPolicy=Local (the caller passes
        this node's backends only; none: drop with ``no_local_backend``).
        ``maglev`` is the service's Maglev table, each entry an index into
        ``backends`` (:mod:`lab.datapath.maglev` builds it); every Maglev
        service of a node has the same table size. Backends are written before
        the service's count grows and stale slots deleted after it shrinks, so
        the datapath never sees a count that points at a missing slot.

        IPv6 alike: an IPv6 ``vip`` (and backends of its family) goes to the
        IPv6 maps (``lb6_services``, ``lb6_backends``); its remote backends get
        the DSR Destination Options extension instead of the IPv4 option; SNAT
        is IPv4 only. This is the call that fills the IPv6 maps from plain
        values, e.g. ``add_service("fd00::10", 80, "tcp", dsr=True,
        backends=[BackendEntry("fd00:1::5", 8080)])``.
        """
        if dsr and snat:
            raise ValueError("a service is dsr or snat, not both")
        if len(backends) > 0xFFFF:
            raise ValueError("at most 65535 backends per service")
        v6 = maps.is_ipv6(vip)
        if snat and v6:
            raise ValueError("SNAT services are IPv4 only")
        for backend in backends:
            if maps.is_ipv6(backend.ip) != v6:
                raise ValueError(f"backend {backend.ip} is not of the service {vip}'s family")
        svc_map = self.map(maps.family_map("lb_services", vip))
        be_map = self.map(maps.family_map("lb_backends", vip))
        key = maps.svc_key(vip, port, proto)
        old = svc_map.lookup(key)
        old_count, old_flags, old_id = maps.SVC_VAL.unpack(old) if old else (0, 0, 0)
        maglev_id = None
        if maglev is not None:
            maglev_id = old_id if old_flags & maps.SVC_F_MAGLEV else self._free_maglev_id()
            self._write_maglev(maglev_id, maglev, len(backends))
        be_map.update_batch([(maps.be_key(vip, port, proto, slot), maps.be_val(backend))
                             for slot, backend in enumerate(backends, start=1)])
        svc_map.update(key, maps.svc_val(len(backends), dsr, snat=snat, maglev_id=maglev_id,
                                         local_only=local_only))
        for slot in range(len(backends) + 1, old_count + 1):
            be_map.delete(maps.be_key(vip, port, proto, slot))

    def _free_maglev_id(self) -> int:
        """The lowest Maglev table id no service of either family holds."""
        used = {maglev_id for name in ("lb_services", "lb6_services")
                for _k, v in self.map(name).items()
                for _c, flags, maglev_id in [maps.SVC_VAL.unpack(v)]
                if flags & maps.SVC_F_MAGLEV}
        return min(set(range(len(used) + 1)) - used)

    def _write_maglev(self, maglev_id: int, table: Sequence[int], count: int) -> None:
        size = len(table)
        cfg = self._config()
        if cfg.maglev_size not in (0, size):
            raise ValueError(f"this node's Maglev tables have {cfg.maglev_size} entries, "
                             f"not {size}")
        if not table or not all(0 <= i < count for i in table):
            raise ValueError(f"a Maglev table's entries index the {count} backends")
        lb_maglev = self.map("lb_maglev")
        capacity = libbpf.map_max_entries(lb_maglev.fd) // size
        if maglev_id >= capacity:
            raise DatapathError(f"lb_maglev holds {capacity} table(s) of {size} entries; "
                                f"load the object with max_entries lb_maglev >= "
                                f"{(maglev_id + 1) * size}")
        base = maglev_id * size
        lb_maglev.update_batch([(maps.U32.pack(base + n), maps.U16.pack(i + 1))
                                for n, i in enumerate(table)])
        if cfg.maglev_size == 0:
            self._change_config(maglev_size=size)

    def remove_service(self, vip: str, port: int, proto: maps.Proto = "tcp") -> bool:
        """Remove a service and its backends; False when it did not exist."""
        svc_map = self.map(maps.family_map("lb_services", vip))
        be_map = self.map(maps.family_map("lb_backends", vip))
        key = maps.svc_key(vip, port, proto)
        old = svc_map.lookup(key)
        if old is None:
            return False
        svc_map.delete(key)
        for slot in range(1, maps.SVC_VAL.unpack(old)[0] + 1):
            be_map.delete(maps.be_key(vip, port, proto, slot))
        return True

    def services(self) -> list[ServiceEntry]:
        """Every service, IPv4 then IPv6."""
        out: list[ServiceEntry] = []
        for key, val in [*self.map("lb_services").items(), *self.map("lb6_services").items()]:
            vip, port, proto, count, flags, _ = maps.unpack_svc(key, val)
            be_map = self.map(maps.family_map("lb_backends", vip))
            backends: list[BackendEntry] = []
            for slot in range(1, count + 1):
                raw = be_map.lookup(maps.be_key(vip, port, proto, slot))
                if raw is not None:
                    backends.append(maps.unpack_backend(raw))
            out.append(ServiceEntry(vip, port, proto, bool(flags & maps.SVC_F_DSR),
                                    tuple(backends), snat=bool(flags & maps.SVC_F_SNAT),
                                    maglev=bool(flags & maps.SVC_F_MAGLEV),
                                    local_only=bool(flags & maps.SVC_F_LOCAL_ONLY)))
        return out

    def maglev_table(self, vip: str, port: int, proto: maps.Proto = "tcp") -> list[int]:
        """The service's Maglev table as the datapath holds it: backend slots (1..n)."""
        raw = self.map(maps.family_map("lb_services", vip)).lookup(
            maps.svc_key(vip, port, proto))
        if raw is None:
            raise DatapathError(f"no service {vip}:{port}/{proto}")
        _, flags, maglev_id = maps.SVC_VAL.unpack(raw)
        size = self._config().maglev_size
        if not flags & maps.SVC_F_MAGLEV or not size:
            raise DatapathError(f"service {vip}:{port}/{proto} has no Maglev table")
        lb_maglev = self.map("lb_maglev")
        out = []
        for n in range(maglev_id * size, (maglev_id + 1) * size):
            raw_slot = lb_maglev.lookup(maps.U32.pack(n))
            out.append(maps.U16.unpack(raw_slot)[0] if raw_slot else 0)
        return out

    def snat_entries(self) -> list[maps.SnatEntry]:
        return [maps.unpack_snat(k, v) for k, v in self.map("lb_snat").items()]

    # -- state tables -----------------------------------------------------

    def ct_entries(self) -> list[CtEntry]:
        """The LB's flows, IPv4 (lb_ct) then IPv6 (lb6_ct)."""
        return [maps.unpack_ct(k, v) for name in ("lb_ct", "lb6_ct")
                for k, v in self.map(name).items()]

    def clear_ct(self) -> int:
        return self.map("lb_ct").clear() + self.map("lb6_ct").clear()

    def revnat_entries(self) -> list[RevnatEntry]:
        """The learned (and local) reverse-NAT entries, IPv4 then IPv6."""
        return [maps.unpack_revnat(k, v) for name in ("dsr_revnat", "dsr6_revnat")
                for k, v in self.map(name).items()]

    def add_revnat(self, entry: RevnatEntry) -> None:
        """Write one reverse-NAT entry (dsr_revnat or dsr6_revnat, by its addresses)."""
        addrs = (entry.client_ip, entry.backend_ip, entry.service_ip)
        if len({maps.is_ipv6(a) for a in addrs}) != 1:
            raise ValueError("a revnat entry's addresses are all IPv4 or all IPv6")
        self.map(maps.family_map("dsr_revnat", entry.client_ip)).update(
            maps.revnat_key(entry), maps.revnat_val(entry))

    def clear_revnat(self) -> int:
        return self.map("dsr_revnat").clear() + self.map("dsr6_revnat").clear()

    def clear_snat(self) -> int:
        return self.map("lb_snat").clear()

    def counters(self) -> dict[str, int]:
        """Every event/drop counter summed over CPUs, by name (see maps.EVENT_NAMES)."""
        m = self.map("dsr_counters")
        out: dict[str, int] = {}
        for idx, name in maps.EVENT_NAMES.items():
            raw = m.lookup(maps.U32.pack(idx)) or b""
            out[name] = sum(v for (v,) in maps.U64.iter_unpack(raw))
        return out

    def reset_counters(self) -> None:
        m = self.map("dsr_counters")
        zero = bytes(m.value_size)
        for idx in maps.EVENT_NAMES:
            m.update(maps.U32.pack(idx), zero)

    # -- running ----------------------------------------------------------

    def test_run(
        self,
        program: str,
        packet: bytes,
        *,
        repeat: int = 1,
        ifindex: int = 0,
    ) -> testrun.TestRunResult:
        """BPF_PROG_TEST_RUN of ``program`` on an Ethernet frame, in this thread's netns,
        as if it came in on (or, for the egress program, left by) ``ifindex``. The
        context carries no ``ingress_ifindex``: the programs read the device from
        ``ifindex`` (at tc ingress, the one the packet came in on), and kernels before
        5.16 refuse a test run given one."""
        return testrun.run_program(self.program_fd(program), packet, repeat=repeat,
                                   ifindex=ifindex)

    def attach_tc(
        self,
        ifindex: int,
        direction: tc.TcHookPoint,
        program: str,
        *,
        handle: int = tc.DEFAULT_HANDLE,
        priority: int = tc.DEFAULT_PRIORITY,
        replace: bool = True,
    ) -> tc.TcAttachment:
        """Attach ``program`` to clsact ``direction`` of ``ifindex`` in this thread's netns
        (the attachment is remembered: :attr:`on_a_link`)."""
        att = tc.attach(
            self.program_fd(program),
            program,
            ifindex,
            direction,
            handle=handle,
            priority=priority,
            replace=replace,
        )
        self._attachments.append(att)
        return att

    @property
    def on_a_link(self) -> bool:
        """Whether a filter this object attached may still hold one of its programs (one
        not detached through its handle, even if its link is gone since): such an object
        never serves another lab (:mod:`lab.env.netns.objpool`)."""
        self._attachments = [a for a in self._attachments if a.attached]
        return bool(self._attachments)
