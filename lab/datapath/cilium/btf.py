"""Struct layouts read from an object's BTF, and values packed by field name.

Cilium's map structs change between versions (a backend gains a ``zone``,
an endpoint a ``sec_id``, the policy key becomes an LPM key). The lab never
hard-codes their layout: it reads each map's key and value types from the
object's own BTF (the ``.maps`` section the compiler wrote) and packs a
value by field name at the offsets found there. A field the lab writes
that the struct does not have, or a struct whose size is not the map's, is
a :class:`DatapathError` that names the map and the field, never a silent
write of the wrong bytes.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lab.datapath import libbpf
from lab.datapath.errors import DatapathError

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_VAR, KIND_DATASEC = 14, 15
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT)

Value = int | bytes
S = TypeVar("S", bound=ctypes.Structure)


class _BtfType(ctypes.Structure):
    _fields_ = (("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32),
                ("size_or_type", ctypes.c_uint32))


class _BtfMember(ctypes.Structure):
    _fields_ = (("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32),
                ("offset", ctypes.c_uint32))


class _BtfArray(ctypes.Structure):
    _fields_ = (("type", ctypes.c_uint32), ("index_type", ctypes.c_uint32),
                ("nelems", ctypes.c_uint32))


class _BtfVarSecinfo(ctypes.Structure):
    _fields_ = (("type", ctypes.c_uint32), ("offset", ctypes.c_uint32),
                ("size", ctypes.c_uint32))


_PROTOTYPES = {
    "btf__parse": (ctypes.c_void_p, (ctypes.c_char_p, ctypes.c_void_p)),
    "btf__free": (None, (ctypes.c_void_p,)),
    "btf__find_by_name_kind": (ctypes.c_int, (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32)),
    "btf__type_by_id": (ctypes.POINTER(_BtfType), (ctypes.c_void_p, ctypes.c_uint32)),
    "btf__name_by_offset": (ctypes.c_char_p, (ctypes.c_void_p, ctypes.c_uint32)),
    "btf__resolve_size": (ctypes.c_long, (ctypes.c_void_p, ctypes.c_uint32)),
}


@functools.cache
def _lib() -> ctypes.CDLL:
    lib = libbpf.lib()
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


@dataclass(frozen=True)
class Field:
    """A leaf of a struct: where it is (bits), how wide, and whether big-endian."""

    bit_offset: int
    bit_size: int
    big_endian: bool  # a __be16/__be32 typedef: ints are written in network order


@dataclass(frozen=True)
class StructLayout:
    """A struct (or scalar) type: its size and its leaves by dotted name."""

    name: str
    size: int
    fields: Mapping[str, Field]

    def pack(self, values: Mapping[str, Value], *, where: str) -> bytes:
        """``values`` at their offsets, every other byte zero; ``where`` names the map."""
        out = bytearray(self.size)
        for name, value in values.items():
            f = self.fields.get(name)
            if f is None:
                raise DatapathError(
                    f"{where}: {self.name} has no field {name!r} in this Cilium "
                    f"(it has {', '.join(self.fields) or 'no fields'})")
            if isinstance(value, bytes):
                if f.bit_offset % 8 or len(value) * 8 != f.bit_size:
                    raise DatapathError(f"{where}: {self.name}.{name} is {f.bit_size} bits, "
                                        f"got {len(value)} bytes")
                start = f.bit_offset // 8
                out[start:start + len(value)] = value
                continue
            if value < 0 or value >= 1 << f.bit_size:
                raise DatapathError(f"{where}: {self.name}.{name} = {value} does not fit "
                                    f"{f.bit_size} bits")
            if f.bit_offset % 8 == 0 and f.bit_size % 8 == 0:
                start = f.bit_offset // 8
                out[start:start + f.bit_size // 8] = value.to_bytes(
                    f.bit_size // 8, "big" if f.big_endian else "little")
            else:  # a bitfield (little-endian: bit offsets count from the lowest bit)
                word = int.from_bytes(out, "little")
                mask = ((1 << f.bit_size) - 1) << f.bit_offset
                word = (word & ~mask) | (value << f.bit_offset)
                out[:] = word.to_bytes(self.size, "little")
        return bytes(out)


class ObjectBtf:
    """The BTF of one object file: map key/value layouts by map name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        ctypes.set_errno(0)
        self._btf = _lib().btf__parse(str(path).encode(), None)
        if not self._btf:
            raise DatapathError(f"{path.name}: no BTF to read map layouts from "
                                f"({libbpf.errno_text(ctypes.get_errno() or 22)})")
        self._maps = self._map_types()

    def close(self) -> None:
        if self._btf:
            _lib().btf__free(self._btf)
            self._btf = None

    def __enter__(self) -> ObjectBtf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw access ---------------------------------------------------------

    def _type(self, tid: int) -> _BtfType:
        found: _BtfType = _lib().btf__type_by_id(self._btf, tid).contents
        return found

    def _name(self, t: _BtfType | _BtfMember) -> str:
        raw = _lib().btf__name_by_offset(self._btf, t.name_off)
        return raw.decode() if raw else ""

    @staticmethod
    def _kind(t: _BtfType) -> int:
        return int((t.info >> 24) & 0x1F)

    @staticmethod
    def _vlen(t: _BtfType) -> int:
        return int(t.info & 0xFFFF)

    def _tail(self, t: _BtfType, cls: type[S], n: int) -> list[S]:
        base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
        return [cls.from_address(base + i * ctypes.sizeof(cls)) for i in range(n)]

    def _strip(self, tid: int) -> tuple[int, bool]:
        """Skip typedefs and qualifiers; say whether a ``__be*`` typedef was on the way."""
        big = False
        t = self._type(tid)
        while self._kind(t) in _MODIFIERS:
            if self._kind(t) == KIND_TYPEDEF and self._name(t).startswith("__be"):
                big = True
            tid = t.size_or_type
            t = self._type(tid)
        return tid, big

    def _map_types(self) -> dict[str, tuple[int | None, int | None]]:
        """map name -> (key type id, value type id) from the ``.maps`` section."""
        sec = _lib().btf__find_by_name_kind(self._btf, b".maps", KIND_DATASEC)
        if sec < 0:
            return {}
        out: dict[str, tuple[int | None, int | None]] = {}
        for info in self._tail(self._type(sec), _BtfVarSecinfo, self._vlen(self._type(sec))):
            var = self._type(info.type)
            def_tid, _ = self._strip(var.size_or_type)
            definition = self._type(def_tid)
            key = value = None
            for m in self._tail(definition, _BtfMember, self._vlen(definition)):
                mname = self._name(m)
                if mname in ("key", "value"):
                    ptr = self._type(m.type)
                    if self._kind(ptr) == KIND_PTR:
                        tid = ptr.size_or_type
                        key, value = (tid, value) if mname == "key" else (key, tid)
            out[self._name(var)] = (key, value)
        return out

    # -- layouts --------------------------------------------------------------

    def layout(self, tid: int) -> StructLayout:
        stripped, big = self._strip(tid)
        t = self._type(stripped)
        size = int(_lib().btf__resolve_size(self._btf, stripped))
        fields: dict[str, Field] = {}
        if self._kind(t) in (KIND_STRUCT, KIND_UNION):
            self._flatten(stripped, "", 0, fields)
        else:
            fields[""] = Field(0, size * 8, big)
        return StructLayout(self._name(t) or "(anonymous)", size, fields)

    def _flatten(self, tid: int, prefix: str, base: int, out: dict[str, Field]) -> None:
        t = self._type(tid)
        bitfields = bool(t.info >> 31)
        for m in self._tail(t, _BtfMember, self._vlen(t)):
            name = self._name(m)
            raw = m.offset
            offset = base + (raw & 0xFFFFFF if bitfields else raw)
            bit_size = (raw >> 24) if bitfields else 0
            mtid, big = self._strip(m.type)
            mt = self._type(mtid)
            full = f"{prefix}{name}" if name else prefix.rstrip(".")
            if self._kind(mt) in (KIND_STRUCT, KIND_UNION):
                self._flatten(mtid, f"{full}." if full else "", offset, out)
                continue
            if not name:
                continue
            width = bit_size or int(_lib().btf__resolve_size(self._btf, mtid)) * 8
            out.setdefault(full, Field(offset, width, big))

    def struct(self, name: str) -> StructLayout:
        """The layout of ``struct name`` (e.g. ``drop_notify``)."""
        tid = _lib().btf__find_by_name_kind(self._btf, name.encode(), KIND_STRUCT)
        if tid < 0:
            raise DatapathError(f"{self.path.name}: no struct {name} in its BTF")
        return self.layout(tid)

    def map_layouts(self, map_name: str) -> tuple[StructLayout, StructLayout]:
        """The key and value layouts of ``map_name``, as this object declares them."""
        try:
            key, value = self._maps[map_name]
        except KeyError:
            raise DatapathError(f"{self.path.name}: no map {map_name!r} in its BTF") from None
        if key is None or value is None:
            raise DatapathError(f"{self.path.name}: map {map_name} declares no key/value types")
        return self.layout(key), self.layout(value)
