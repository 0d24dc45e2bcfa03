"""Load a node's Cilium objects through the verifier, as the agent would.

One node is one ``bpf_host`` object (its ``eth0`` and ``cilium_host``
programs) and one ``bpf_lxc`` object per pod. The agent pins every map by
name, so objects that name the same map share it: the loader does the
same without bpffs, by handing a map already created for the node to every
later object that names it (``bpf_map__reuse_fd``), except the objects'
own data sections. Every tail-call program (ELF section ``2/N``) goes into
slot N of its object's calls map, and each pod's policy program (section
``1/0xffff``) into slot ``LXC_ID`` of ``cilium_call_policy``; the node
holds every fd for its life, since a prog array whose last fd closes loses
its entries (then every tail call misses and Cilium passes the packet on).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from lab.datapath import libbpf
from lab.datapath.errors import DatapathError
from lab.datapath.loader import load_counted

BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_PROG_TYPE_SCHED_CLS = 3
TAIL_CALL_SECTION = "2/"
POLICY_SECTION = "1/0xffff"
POLICY_CALL_MAP = "cilium_call_policy"


@dataclass
class LoadedObject:
    """One loaded object: its programs (name -> fd, section) and maps (name -> fd)."""

    path: Path
    obj: int
    log_buf: ctypes.Array[ctypes.c_char]
    programs: dict[str, int] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)
    maps: dict[str, int] = field(default_factory=dict)
    prog_arrays: set[str] = field(default_factory=set)
    processed: dict[str, int] = field(default_factory=dict)  # by program, from the load

    def program_fd(self, name: str) -> int:
        try:
            return self.programs[name]
        except KeyError:
            raise DatapathError(
                f"{self.path.name} has no program {name!r} "
                f"(it has {', '.join(sorted(self.programs))})") from None


def _programs(obj: int) -> list[tuple[str, str, int]]:
    lib = libbpf.lib()
    return [(name, (lib.bpf_program__section_name(prog) or b"").decode(),
             lib.bpf_program__fd(prog)) for prog, name in libbpf.object_programs(obj)]


def _maps(obj: int) -> list[tuple[str, int, int, int]]:
    """(name, handle, type, fd) of every map of ``obj``."""
    lib = libbpf.lib()
    out = []
    m = lib.bpf_object__next_map(obj, None)
    while m:
        out.append(((lib.bpf_map__name(m) or b"").decode(), int(m), lib.bpf_map__type(m),
                    lib.bpf_map__fd(m)))
        m = lib.bpf_object__next_map(obj, m)
    return out


def shared(name: str) -> bool:
    """Whether a map of this name is the node's (shared) rather than the object's own
    data section (``.rodata``, ``.data``, ``.bss``, ``.rodata.config``)."""
    return "." not in name


class CiliumNode:
    """The Cilium objects of one node, loaded, their maps shared and tail calls filled."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.objects: dict[str, LoadedObject] = {}  # by role: "host", or a pod's name
        self.map_fds: dict[str, int] = {}  # the node's maps by name (first creator's fd)
        self._closed = False

    def load(self, role: str, path: Path, max_entries: Mapping[str, int] | None = None
             ) -> LoadedObject:
        """Load ``path`` for ``role`` (``"host"`` or a pod name), reusing the node's maps."""
        if role in self.objects:
            raise DatapathError(f"{self.name}: {role} is loaded already")
        lib = libbpf.lib()

        def reuse(obj: int) -> None:
            # Cilium's sections ("from-netdev", "2/7") say no program type to libbpf:
            # every program is a tc classifier, as the agent's loader says
            for prog, _name in libbpf.object_programs(obj):
                libbpf.check(lib.bpf_program__set_type(prog, BPF_PROG_TYPE_SCHED_CLS),
                             f"{path.name}: program type")
            for mname, handle, _type, _fd in _maps(obj):
                # no bpffs pins: the node's maps live as long as the lab holds them
                libbpf.check(lib.bpf_map__set_pin_path(handle, None),
                             f"{path.name}: unpinning map {mname}")
                if shared(mname) and mname in self.map_fds:
                    libbpf.check(lib.bpf_map__reuse_fd(handle, self.map_fds[mname]),
                                 f"{path.name}: sharing map {mname}")

        obj, log_buf, processed = load_counted(path, max_entries, before_load=reuse)
        loaded = LoadedObject(path, obj, log_buf, processed=processed)
        self.objects[role] = loaded
        for pname, section, fd in _programs(obj):
            loaded.programs[pname] = fd
            loaded.sections[pname] = section
        for mname, _handle, mtype, fd in _maps(obj):
            loaded.maps[mname] = fd
            if mtype == BPF_MAP_TYPE_PROG_ARRAY:
                loaded.prog_arrays.add(mname)
            if shared(mname) and mname not in self.map_fds:
                self.map_fds[mname] = fd
        self._fill_tail_calls(loaded)
        return loaded

    def _fill_tail_calls(self, loaded: LoadedObject) -> None:
        calls = [m for m in loaded.prog_arrays if m.startswith("cilium_calls_")]
        if len(calls) != 1:
            raise DatapathError(
                f"{loaded.path.name}: expected one cilium_calls_* prog array, found "
                f"{', '.join(sorted(calls)) or 'none'}")
        calls_fd = loaded.maps[calls[0]]
        for pname, section in loaded.sections.items():
            if section.startswith(TAIL_CALL_SECTION):
                slot = int(section[len(TAIL_CALL_SECTION):], 0)
                self._set_slot(calls_fd, slot, loaded.programs[pname], f"{calls[0]}[{slot}]")

    def set_policy_program(self, role: str, lxc_id: int) -> None:
        """The pod's policy program into ``cilium_call_policy[lxc_id]``."""
        loaded = self.objects[role]
        progs = [p for p, s in loaded.sections.items() if s == POLICY_SECTION]
        if len(progs) != 1:
            raise DatapathError(f"{loaded.path.name}: no policy program (section {POLICY_SECTION})")
        fd = self.map_fds.get(POLICY_CALL_MAP)
        if fd is None:
            raise DatapathError(f"{self.name}: no {POLICY_CALL_MAP} map")
        self._set_slot(fd, lxc_id, loaded.programs[progs[0]], f"{POLICY_CALL_MAP}[{lxc_id}]")

    @staticmethod
    def _set_slot(map_fd: int, slot: int, prog_fd: int, what: str) -> None:
        key = ctypes.c_uint32(slot)
        value = ctypes.c_uint32(prog_fd)
        rc = libbpf.lib().bpf_map_update_elem(map_fd, ctypes.byref(key), ctypes.byref(value), 0)
        libbpf.check(rc, f"tail call {what}")

    def keep_fds(self) -> list[int]:
        """The fds whose life is the datapath's: every prog array (a prog array's entries
        go when its last fd closes, whatever holds its programs) and every map."""
        return sorted({fd for obj in self.objects.values() for fd in obj.maps.values()})

    def map_fd(self, name: str) -> int:
        try:
            return self.map_fds[name]
        except KeyError:
            raise DatapathError(f"{self.name}: no map {name!r} in the loaded objects") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        lib = libbpf.lib()
        for loaded in reversed(list(self.objects.values())):
            lib.bpf_object__close(loaded.obj)
        self.objects.clear()
        self.map_fds.clear()

    def __enter__(self) -> CiliumNode:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["CiliumNode", "LoadedObject"]
