"""Cilium's own events: the drop and trace notifications of ``cilium_events``.

Cilium's programs report what they do through a perf event array
(``cilium_events``): a drop notification carries the drop reason, the
source file and line, the interface and the first bytes of the packet; a
trace notification the observation point (``to-stack``, ``to-endpoint``,
...). ``cilium monitor`` shows them; the lab reads them the same way
(libbpf's perf buffer) during a run.

The names are the version's own: drop reasons from the ``DROP_*`` defines
of its ``lib/common.h`` and observation points from ``enum trace_point``
in ``lib/trace.h``, read from the build's copy of the tree, so a code that
one version added is named as that version names it. The record layouts
come from the object's BTF (``struct drop_notify``, ``struct trace_notify``).
"""

from __future__ import annotations

import collections
import ctypes
import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from lab.capture.dpevents import Bounds, DatapathEvent, DatapathEvents, EventKind
from lab.datapath import libbpf
from lab.datapath.cilium.btf import Field, ObjectBtf, StructLayout
from lab.datapath.errors import DatapathError

NOTIFY_DROP = 1
NOTIFY_TRACE = 4
HEADER_SIZE = 16  # type, subtype, source, hash, len_orig, len_cap, version
_DROP_DEFINE = re.compile(r"^#define\s+(DROP_\w+)\s+\(?-(\d+)\)?", re.MULTILINE)
_TRACE_ENUM = re.compile(r"enum trace_point\s*\{(?P<body>.*?)\}", re.DOTALL)
_FILE_ID = re.compile(r'_strcase_\(\s*(\d+)\s*,\s*"([^"]+)"\s*\)')
# where a version lists the source files its drop notifications name by number
_FILE_ID_HEADERS = ("source_names_to_ids.h", "lib/source_info.h")

_SAMPLE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                              ctypes.c_uint32)
_LOST_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64)


class _PerfBufferOpts(ctypes.Structure):
    _fields_ = (("sz", ctypes.c_size_t),)


@functools.cache
def _lib() -> ctypes.CDLL:
    lib = libbpf.lib()
    lib.perf_buffer__new.restype = ctypes.c_void_p
    lib.perf_buffer__new.argtypes = (ctypes.c_int, ctypes.c_size_t, _SAMPLE_FN, _LOST_FN,
                                     ctypes.c_void_p, ctypes.POINTER(_PerfBufferOpts))
    lib.perf_buffer__poll.restype = ctypes.c_int
    lib.perf_buffer__poll.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.perf_buffer__consume.restype = ctypes.c_int
    lib.perf_buffer__consume.argtypes = (ctypes.c_void_p,)
    lib.perf_buffer__free.restype = None
    lib.perf_buffer__free.argtypes = (ctypes.c_void_p,)
    return lib


@dataclass(frozen=True)
class Names:
    """One Cilium version's names for drop reasons and observation points."""

    drops: dict[int, str]  # reason (the positive code) -> DROP_...
    points: list[str]  # observation point index -> TRACE_TO_LXC, ...
    files: dict[int, str] = field(default_factory=dict)  # source file id -> nodeport.h

    @classmethod
    def from_tree(cls, bpf_dir: Path) -> Names:
        common = (bpf_dir / "lib" / "common.h").read_text(errors="replace")
        drops = {int(code): name for name, code in _DROP_DEFINE.findall(common)}
        trace_h = bpf_dir / "lib" / "trace.h"
        points: list[str] = []
        if trace_h.is_file():
            m = _TRACE_ENUM.search(trace_h.read_text(errors="replace"))
            if m:
                body = re.sub(r"/\*.*?\*/", "", m["body"], flags=re.DOTALL)
                points = [p.split("=")[0].strip() for p in body.split(",") if p.strip()]
        if not drops:
            raise DatapathError(f"{bpf_dir}: no DROP_* reasons in lib/common.h")
        files: dict[int, str] = {}
        for header in _FILE_ID_HEADERS:
            if (bpf_dir / header).is_file():
                text = (bpf_dir / header).read_text(errors="replace")
                files.update({int(n): name for n, name in _FILE_ID.findall(text)})
        return cls(drops, points, files)

    def drop(self, reason: int) -> str:
        return self.drops.get(reason, f"DROP_UNKNOWN_{reason}")

    def point(self, index: int) -> str:
        return self.points[index] if 0 <= index < len(self.points) else f"TRACE_{index}"

    def file(self, file_id: int) -> str:
        return self.files.get(file_id, f"file {file_id}")


@dataclass(frozen=True)
class CiliumEvent:
    """One notification, as ``cilium monitor`` would print it."""

    node: str
    kind: EventKind
    what: str  # DROP_NO_FIB, or the observation point (TRACE_TO_STACK)
    ifindex: int
    src_label: int
    dst_label: int
    packet: bytes  # the first bytes of the frame (len_cap of len_orig)
    line: int | None = None  # drops: where in Cilium's source
    file: int | None = None
    ifname: str = ""  # the interface ifindex names in the node's namespace
    where: str = ""  # drops: the source file and line, nodeport.h:2298
    time: float = 0.0  # when it was read, seconds since the epoch

    @property
    def hop(self) -> str:
        return f"{self.node} {self.ifname or f'ifindex {self.ifindex}'}"

    def record(self) -> DatapathEvent:
        """The event as a capture set keeps it (:mod:`lab.capture.dpevents`)."""
        return DatapathEvent(node=self.node, ifname=self.ifname, kind=self.kind,
                             what=self.what, time=self.time, where=self.where,
                             packet=self.packet.hex(), **_addresses(self.packet))

    def summary(self) -> str:
        head = f"{self.kind} {self.what} at {self.hop}"
        flow = self.record().flow
        return f"{head}: {flow}" if flow else head

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["packet"] = self.packet.hex()
        out["summary"] = self.summary()
        return out


def _addresses(frame: bytes) -> dict[str, Any]:
    """src, sport, dst, dport, proto of an Ethernet/IPv4 frame's first bytes (or {})."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return {}
    ihl = (frame[14] & 0x0F) * 4
    src, dst, proto = IPv4Address(frame[26:30]), IPv4Address(frame[30:34]), frame[23]
    out: dict[str, Any] = {"src": str(src), "dst": str(dst), "proto": str(proto)}
    later_fragment = int.from_bytes(frame[20:22], "big") & 0x1FFF != 0  # no L4 header
    if proto in (6, 17):
        out["proto"] = "TCP" if proto == 6 else "UDP"
        if len(frame) >= 14 + ihl + 4 and not later_fragment:
            out["sport"] = int.from_bytes(frame[14 + ihl:16 + ihl], "big")
            out["dport"] = int.from_bytes(frame[16 + ihl:18 + ihl], "big")
    return out


def _fixed(name: str, size: int, fields: dict[str, tuple[int, int]]) -> StructLayout:
    return StructLayout(name, size, {k: Field(o * 8, n * 8, False) for k, (o, n) in fields.items()})


_HEADER = {"len_orig": (8, 4), "len_cap": (12, 2), "version": (14, 2)}
# struct drop_notify and struct trace_notify as lib/drop.h and lib/trace.h lay them out
# in 1.13 to 1.16 (clang leaves them out of the BTF: no map or function names them)
DROP_NOTIFY = _fixed("drop_notify", 36, _HEADER | {
    "src_label": (16, 4), "dst_label": (20, 4), "dst_id": (24, 4), "line": (28, 2),
    "file": (30, 1), "ext_error": (31, 1), "ifindex": (32, 4)})
TRACE_NOTIFY = _fixed("trace_notify", 48, _HEADER | {
    "src_label": (16, 4), "dst_label": (20, 4), "dst_id": (24, 2), "reason": (26, 1),
    "ifindex": (28, 4)})


def _layout(btf: ObjectBtf | None, name: str, fallback: StructLayout) -> StructLayout:
    if btf is None:
        return fallback
    try:
        return btf.struct(name)
    except DatapathError:
        return fallback


class EventDecoder:
    """Turns raw perf samples into :class:`CiliumEvent` (layouts from the object's BTF
    when it has them, else the 1.13-1.16 layout)."""

    def __init__(self, node: str, names: Names, btf: ObjectBtf | None = None,
                 ifnames: dict[int, str] | None = None) -> None:
        self.node = node
        self.names = names
        self.ifnames = ifnames or {}
        self.drop = _layout(btf, "drop_notify", DROP_NOTIFY)
        self.trace = _layout(btf, "trace_notify", TRACE_NOTIFY)

    @staticmethod
    def _get(layout: StructLayout, raw: bytes, name: str) -> int:
        f = layout.fields[name]
        start = f.bit_offset // 8
        value = int.from_bytes(raw[start:start + (f.bit_size + 7) // 8], "little")
        return value & ((1 << f.bit_size) - 1)

    def decode(self, raw: bytes) -> CiliumEvent | None:
        if len(raw) < HEADER_SIZE:
            return None
        kind, subtype = raw[0], raw[1]
        label: EventKind
        if kind == NOTIFY_DROP and len(raw) >= self.drop.size:
            layout, label = self.drop, "drop"
            what = self.names.drop(subtype)
        elif kind == NOTIFY_TRACE and len(raw) >= self.trace.size:
            layout, label = self.trace, "trace"
            what = self.names.point(subtype)
        else:
            return None
        cap = self._get(layout, raw, "len_cap")
        packet = raw[layout.size:layout.size + cap]
        extra: dict[str, Any] = {}
        if label == "drop":
            line, file = self._get(layout, raw, "line"), self._get(layout, raw, "file")
            extra = {"line": line, "file": file, "where": f"{self.names.file(file)}:{line}"}
        ifindex = self._get(layout, raw, "ifindex")
        return CiliumEvent(self.node, label, what, ifindex,
                           self._get(layout, raw, "src_label"),
                           self._get(layout, raw, "dst_label"), bytes(packet),
                           ifname=self.ifnames.get(ifindex, ""), time=time.time(), **extra)


class EventReader:
    """Reads one node's ``cilium_events`` until closed (a context manager); every
    decoded event goes to ``sink``. ``threaded``: a thread reads as events come (a live
    lab); otherwise :meth:`flush` reads what is pending (test runs, one at a time)."""

    def __init__(self, map_fd: int, decoder: EventDecoder,
                 sink: Callable[[CiliumEvent], None], page_count: int = 8, *,
                 threaded: bool = True) -> None:
        self.decoder = decoder
        self.sink = sink
        self.lost = 0
        self._stop = threading.Event()
        self._sync_asked = threading.Event()
        self._synced = threading.Event()
        # the callbacks are held by the reader: libbpf keeps pointers to them
        self._on_sample = _SAMPLE_FN(self._sample)
        self._on_lost = _LOST_FN(self._lost)
        opts = _PerfBufferOpts(ctypes.sizeof(_PerfBufferOpts))
        ctypes.set_errno(0)
        self._pb = _lib().perf_buffer__new(map_fd, page_count, self._on_sample, self._on_lost,
                                           None, ctypes.byref(opts))
        if not self._pb:
            err = ctypes.get_errno() or 22
            raise DatapathError(f"reading cilium_events: {libbpf.errno_text(err)}")
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"cilium-events-{decoder.node}")
            self._thread.start()

    def _sample(self, _ctx: int | None, _cpu: int, data: int | None, size: int) -> None:
        if not data:
            return
        event = self.decoder.decode(ctypes.string_at(data, size))
        if event is not None:
            self.sink(event)

    def _lost(self, _ctx: int | None, _cpu: int, count: int) -> None:
        self.lost += count

    def _run(self) -> None:
        while not self._stop.is_set():
            _lib().perf_buffer__poll(self._pb, 100)
            if self._sync_asked.is_set():
                _lib().perf_buffer__consume(self._pb)
                self._sync_asked.clear()
                self._synced.set()

    def sync(self, timeout: float = 5.0) -> None:
        """Return once every event the kernel has written so far has gone to the sink
        (the programs write a packet's notifications before it moves on)."""
        if self._thread is None:
            self.flush()
            return
        self._synced.clear()
        self._sync_asked.set()
        self._synced.wait(timeout)

    def flush(self) -> None:
        """Read every event pending now (a threaded reader stops its thread first)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._pb:
            _lib().perf_buffer__consume(self._pb)

    def close(self) -> None:
        if self._pb:
            self.flush()
            _lib().perf_buffer__free(self._pb)
            self._pb = None

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventLog:
    """Where a lab's readers put Cilium's events (a thread-safe sink).

    Between :meth:`open_window` and :meth:`close_window` (a run's captures) every
    event is kept for the capture set within the file's :class:`Bounds`; drops and
    traces beyond them are only counted, so a long transfer costs no memory.
    Outside a window only the last :data:`RECENT_DROPS` drops are kept
    (:meth:`drops`).
    """

    RECENT_DROPS = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: collections.deque[CiliumEvent] = collections.deque(
            maxlen=self.RECENT_DROPS)
        self._window: list[DatapathEvent] | None = None
        self._bounds = Bounds()

    def __call__(self, event: CiliumEvent) -> None:
        with self._lock:
            if event.kind == "drop":
                self._recent.append(event)
            if self._window is not None and self._bounds.keep(event.kind, event.node,
                                                               event.what):
                self._window.append(event.record())

    def drops(self) -> list[CiliumEvent]:
        """The latest drop notifications, in order."""
        with self._lock:
            return list(self._recent)

    def open_window(self) -> None:
        with self._lock:
            self._window, self._bounds = [], Bounds()

    def close_window(self, datapath: str, lost: int = 0) -> DatapathEvents:
        """Everything since :meth:`open_window` (nothing if none was opened)."""
        with self._lock:
            kept, bounds = self._window or [], self._bounds
            self._window, self._bounds = None, Bounds()
        return bounds.content(datapath, "cilium_events", kept, lost)
