"""ctypes bindings for the part of libbpf 1.x the lab uses, and nothing else.

Holds the C struct layouts (``bpf_object_open_opts``, ``bpf_tc_hook``,
``bpf_tc_opts``, ``bpf_test_run_opts``), the function prototypes, the
``check`` helper that turns libbpf's negative-errno returns into
:class:`DatapathError`, and :func:`capture_messages`, which collects libbpf's
own log lines (``libbpf: ...``) on the calling thread so a failed load can
show them.

The functions that can call that callback (:data:`CALLS_BACK`: opening,
loading and closing an object, the tc hooks) run as an
:func:`lab.plumbing.interrupts.deferred` section on the main thread: a
Python signal handler that raised inside the callback would be swallowed
by ctypes ("Exception ignored on calling ctypes callback function") and
the run would go on; held, the interrupt is raised when the call returns.
The map and test-run calls never log and stay plain ctypes calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

from lab.datapath.errors import DatapathError
from lab.plumbing import interrupts

log = logging.getLogger(__name__)
S = TypeVar("S", bound=ctypes.Structure)

LIBBPF_NAMES = ("libbpf.so.1", "libbpf.so")

# enum bpf_tc_attach_point and tc flags (libbpf.h)
BPF_TC_INGRESS = 1 << 0
BPF_TC_EGRESS = 1 << 1
BPF_TC_F_REPLACE = 1 << 0
BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY = 2, 6  # enum bpf_map_type

c_size_t = ctypes.c_size_t
c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint32


class BpfObjectOpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts (libbpf 1.1 layout)."""

    _fields_ = (
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", c_char_p),
        ("_stub_attach_prog_fd", c_uint),
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_void_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint),
    )


class BpfTcHook(ctypes.Structure):
    """struct bpf_tc_hook."""

    _fields_ = (
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint),
    )


class BpfTcOpts(ctypes.Structure):
    """struct bpf_tc_opts."""

    _fields_ = (
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint),
        ("prog_id", c_uint),
        ("handle", c_uint),
        ("priority", c_uint),
    )


class BpfTestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts."""

    _fields_ = (
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint),
        ("data_size_out", c_uint),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint),
        ("ctx_size_out", c_uint),
        ("retval", c_uint),
        ("repeat", c_int),
        ("duration", c_uint),
        ("flags", c_uint),
        ("cpu", c_uint),
        ("batch_size", c_uint),
    )


class BpfProgInfo(ctypes.Structure):
    """struct bpf_prog_info (uapi/linux/bpf.h) up to ``attach_btf_id`` (6.0's size).

    A kernel fills what it knows and leaves the rest zero: ``verified_insns``
    (instructions the verifier processed) is there from 5.16.
    """

    _fields_ = (
        ("type", c_uint),
        ("id", c_uint),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", c_uint),
        ("xlated_prog_len", c_uint),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", c_uint),
        ("nr_map_ids", c_uint),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", c_uint),
        ("gpl_compatible", c_uint),  # a 1-bit field and 31 bits of padding
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", c_uint),
        ("nr_jited_func_lens", c_uint),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", c_uint),
        ("func_info_rec_size", c_uint),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", c_uint),
        ("nr_line_info", c_uint),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", c_uint),
        ("line_info_rec_size", c_uint),
        ("jited_line_info_rec_size", c_uint),
        ("nr_prog_tags", c_uint),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", c_uint),
        ("attach_btf_obj_id", c_uint),
        ("attach_btf_id", c_uint),
        ("_pad", c_uint),
    )


class BpfMapInfo(ctypes.Structure):
    """The head of struct bpf_map_info up to ``name``."""

    _fields_ = (
        ("type", c_uint),
        ("id", c_uint),
        ("key_size", c_uint),
        ("value_size", c_uint),
        ("max_entries", c_uint),
        ("map_flags", c_uint),
        ("name", ctypes.c_char * 16),
    )


def new_opts(cls: type[S]) -> S:
    """A zeroed opts struct with ``sz`` set, as libbpf's OPTS macros do."""
    opts = cls()
    opts.sz = ctypes.sizeof(cls)
    return opts


_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_capture = threading.local()


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    if fmt is None:
        return 0
    buf = ctypes.create_string_buffer(8192)
    _libc.vsnprintf(buf, ctypes.sizeof(buf), fmt, args)
    text = buf.value.decode(errors="replace").rstrip("\n")
    sink: list[str] | None = getattr(_capture, "lines", None)
    if sink is not None:
        sink.append(text)
    # DEBUG only: expected conditions (an existing clsact qdisc) are "warnings"
    # to libbpf; real failures surface as DatapathError with these lines.
    log.debug("%s", text)
    return 0


_print_cb = _PRINT_FN(_on_print)  # kept alive for the process lifetime
_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = (c_char_p, c_size_t, c_char_p, c_void_p)
_libc.vsnprintf.restype = c_int

_PROTOTYPES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "libbpf_set_print": (c_void_p, (_PRINT_FN,)),
    "libbpf_num_possible_cpus": (c_int, ()),
    "bpf_object__open_file": (c_void_p, (c_char_p, ctypes.POINTER(BpfObjectOpenOpts))),
    "bpf_object__load": (c_int, (c_void_p,)),
    "bpf_object__close": (None, (c_void_p,)),
    "bpf_object__find_program_by_name": (c_void_p, (c_void_p, c_char_p)),
    "bpf_object__find_map_by_name": (c_void_p, (c_void_p, c_char_p)),
    "bpf_program__fd": (c_int, (c_void_p,)),
    "bpf_map__fd": (c_int, (c_void_p,)),
    "bpf_map__key_size": (c_uint, (c_void_p,)),
    "bpf_map__value_size": (c_uint, (c_void_p,)),
    "bpf_map_update_elem": (c_int, (c_int, c_void_p, c_void_p, ctypes.c_uint64)),
    "bpf_map_update_batch": (c_int, (c_int, c_void_p, c_void_p, ctypes.POINTER(c_uint),
                                     c_void_p)),
    "bpf_map__set_max_entries": (c_int, (c_void_p, c_uint)),
    "bpf_map_lookup_elem": (c_int, (c_int, c_void_p, c_void_p)),
    "bpf_map_delete_elem": (c_int, (c_int, c_void_p)),
    "bpf_map_get_next_key": (c_int, (c_int, c_void_p, c_void_p)),
    "bpf_prog_get_fd_by_id": (c_int, (c_uint,)),
    "bpf_map_get_fd_by_id": (c_int, (c_uint,)),
    "bpf_obj_get_info_by_fd": (c_int, (c_int, c_void_p, ctypes.POINTER(c_uint))),
    "bpf_prog_test_run_opts": (c_int, (c_int, ctypes.POINTER(BpfTestRunOpts))),
    "bpf_tc_hook_create": (c_int, (ctypes.POINTER(BpfTcHook),)),
    "bpf_tc_hook_destroy": (c_int, (ctypes.POINTER(BpfTcHook),)),
    "bpf_tc_attach": (c_int, (ctypes.POINTER(BpfTcHook), ctypes.POINTER(BpfTcOpts))),
    "bpf_tc_detach": (c_int, (ctypes.POINTER(BpfTcHook), ctypes.POINTER(BpfTcOpts))),
    "bpf_tc_query": (c_int, (ctypes.POINTER(BpfTcHook), ctypes.POINTER(BpfTcOpts))),
    # walking an object's programs and maps (Cilium's objects: tail calls, shared maps)
    "bpf_object__next_program": (c_void_p, (c_void_p, c_void_p)),
    "bpf_object__next_map": (c_void_p, (c_void_p, c_void_p)),
    "bpf_program__name": (c_char_p, (c_void_p,)),
    "bpf_program__section_name": (c_char_p, (c_void_p,)),
    "bpf_map__name": (c_char_p, (c_void_p,)),
    "bpf_map__type": (c_int, (c_void_p,)),
    "bpf_map__reuse_fd": (c_int, (c_void_p, c_int)),
    "bpf_map__set_pin_path": (c_int, (c_void_p, c_char_p)),
    "bpf_program__set_type": (c_int, (c_void_p, c_int)),
    "bpf_program__set_log_level": (c_int, (c_void_p, c_uint)),
    "bpf_program__set_log_buf": (c_int, (c_void_p, c_void_p, c_size_t)),
    "bpf_map__max_entries": (c_uint, (c_void_p,)),
    # kernel probes (Cilium's features*.h): 1 yes, 0 no, < 0 an error
    "libbpf_probe_bpf_helper": (c_int, (c_int, c_int, c_void_p)),
    "libbpf_probe_bpf_map_type": (c_int, (c_int, c_void_p)),
    "bpf_prog_load": (c_int, (c_int, c_char_p, c_char_p, c_void_p, c_size_t, c_void_p)),
}


CALLS_BACK = frozenset({
    "libbpf_set_print", "libbpf_num_possible_cpus", "bpf_object__open_file",
    "bpf_object__load", "bpf_object__close", "bpf_tc_hook_create", "bpf_tc_hook_destroy",
    "bpf_tc_attach", "bpf_tc_detach", "bpf_tc_query", "bpf_map__reuse_fd",
    "bpf_map__set_pin_path", "libbpf_probe_bpf_helper", "libbpf_probe_bpf_map_type",
})
"""libbpf functions that may log through the print callback (Python code)."""


def _uncut(fn: Any) -> Any:
    """``fn`` run as a deferred section: an interrupt is raised after it returns."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        with interrupts.deferred():
            return fn(*args)

    return call


@functools.cache
def lib() -> ctypes.CDLL:
    """The loaded libbpf, prototypes set and its print callback installed."""
    errors: list[str] = []
    candidates = [*LIBBPF_NAMES]
    found = ctypes.util.find_library("bpf")
    if found:
        candidates.append(found)
    for name in candidates:
        try:
            handle = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
            continue
        for fn_name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(handle, fn_name)
            fn.restype = restype
            fn.argtypes = argtypes
            if fn_name in CALLS_BACK:
                setattr(handle, fn_name, _uncut(fn))
        handle.libbpf_set_print(_print_cb)
        return handle
    raise DatapathError("libbpf not found (install libbpf1)", "\n".join(errors))


@contextlib.contextmanager
def capture_messages() -> Iterator[list[str]]:
    """Collect libbpf's log lines emitted on this thread during the block."""
    previous: list[str] | None = getattr(_capture, "lines", None)
    lines: list[str] = []
    _capture.lines = lines
    try:
        yield lines
    finally:
        _capture.lines = previous


MAX_PROG_MAPS = 64


def _prog_info(fd: int, ids: ctypes.Array[c_uint] | None = None) -> BpfProgInfo:
    info = BpfProgInfo()
    if ids is not None:
        info.nr_map_ids = len(ids)
        info.map_ids = ctypes.addressof(ids)
    size = c_uint(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "prog info")
    return info


def object_programs(obj: int) -> Iterator[tuple[int, str]]:
    """Each program of an opened libbpf object: its handle and its name."""
    handle = lib().bpf_object__next_program(obj, None)
    while handle:
        yield handle, (lib().bpf_program__name(handle) or b"").decode()
        handle = lib().bpf_object__next_program(obj, handle)


def prog_info(fd: int) -> tuple[str, list[int]]:
    """(name, map ids) of the program behind ``fd``."""
    ids = (c_uint * MAX_PROG_MAPS)()
    info = _prog_info(fd, ids)
    count = min(int(info.nr_map_ids), MAX_PROG_MAPS)
    return info.name.decode(), [int(i) for i in ids[:count]]


def prog_sizes(fd: int) -> tuple[int | None, int]:
    """(instructions the verifier processed, instructions of the translated program)
    of the program behind ``fd``; the first is None before 5.16 (the kernel leaves it 0)."""
    info = _prog_info(fd)
    return (int(info.verified_insns) or None), int(info.xlated_prog_len) // 8


def _map_info(fd: int) -> BpfMapInfo:
    info = BpfMapInfo()
    size = c_uint(ctypes.sizeof(info))
    check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "map info")
    return info


def map_max_entries(fd: int) -> int:
    """``max_entries`` of the map behind ``fd``."""
    return int(_map_info(fd).max_entries)


def map_is_array(fd: int) -> bool:
    """Whether the map behind ``fd`` is an array (plain or per-CPU): entries that
    always exist, reset by writing zeros rather than by deleting."""
    return int(_map_info(fd).type) in (BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY)


def map_info(fd: int) -> tuple[str, int, int]:
    """(name, key size, value size) of the map behind ``fd``."""
    info = _map_info(fd)
    return info.name.decode(), int(info.key_size), int(info.value_size)


def errno_text(rc: int) -> str:
    """``-EPERM`` style return code (or errno) as ``EPERM: Operation not permitted``."""
    err = abs(rc)
    name = _ERRNO_NAMES.get(err, f"errno {err}")
    return f"{name}: {os.strerror(err)}"


def check(rc: int, what: str, messages: list[str] | None = None) -> int:
    """Raise :class:`DatapathError` when a libbpf call returned a negative errno.

    ``messages`` (from :func:`capture_messages`) become the error's log.
    """
    if rc < 0:
        raise DatapathError(f"{what} failed: {errno_text(rc)}", "\n".join(messages or ()))
    return rc


_ERRNO_NAMES: dict[int, str] = dict(errno.errorcode)
