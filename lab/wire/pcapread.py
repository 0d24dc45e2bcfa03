"""A fast streaming reader for pcap and pcapng files.

The file is read whole into memory of the process's own (an anonymous
mapping) and walked record by record; nothing more is copied and nothing is
decoded beyond the record framing. Reading it into private memory, rather
than mapping the file itself, is what makes a file that shrinks while it is
reviewed harmless: the pages of a mapped file cut off by a truncation kill
the process with SIGBUS on the next access, a copy is unaffected (a file
that shrank before it was read ends where its reading ended). Only a file
larger than half the memory available is mapped directly instead.

Only regular files are read (:mod:`lab.wire.paths`): a FIFO, a device or a
directory is a :class:`PcapError` saying what the path is, and opening never
blocks. :meth:`CaptureFile.records`
yields ``(linktype, data_offset, caplen, record_offset)`` per packet, where
``data_offset`` indexes :attr:`CaptureFile.buf` (the mapped bytes); the
caller decodes only what it needs. :meth:`CaptureFile.timestamp` turns a
``record_offset`` into seconds since the epoch when it is wanted.

Formats: pcap (microsecond and nanosecond magics, either byte order) and
pcapng (any number of sections, either byte order, several interfaces with
their own link types and ``if_tsresol``; Enhanced, Simple and the obsolete
Packet blocks carry packets, every other block is skipped).

Every malformed input raises :class:`PcapError` naming the file and the
byte offset: not a capture file, a truncated header or record, a record
longer than what is left of the file, inconsistent pcapng block lengths.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from lab.errors import LabError
from lab.wire.paths import PathError, open_input, os_reason

Format = Literal["pcap", "pcapng"]

# link types (https://www.tcpdump.org/linktypes.html) the review understands
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_NAMES = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}

_PCAP_MAGICS: dict[bytes, tuple[str, int]] = {
    # on-disk bytes -> (struct byte order, timestamp fraction units per second)
    bytes.fromhex("d4c3b2a1"): ("<", 1_000_000),
    bytes.fromhex("a1b2c3d4"): (">", 1_000_000),
    bytes.fromhex("4d3cb2a1"): ("<", 1_000_000_000),
    bytes.fromhex("a1b23c4d"): (">", 1_000_000_000),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
_BT_IDB = 0x00000001
_BT_PB = 0x00000002  # obsolete Packet Block
_BT_SPB = 0x00000003
_BT_EPB = 0x00000006
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14

COPY_LIMIT_DEFAULT = 1 << 30  # when /proc/meminfo says nothing

Record = tuple[int, int, int, int]
"""(linktype, data offset in buf, captured length, record offset)"""


class PcapError(LabError, ValueError):
    """A file that is not a readable capture; names the file and, where known, the offset.

    The one capture-file error of the lab: reading (here), the datapath's
    Ethernet-only frames (:mod:`lab.wire.pcapio`) and writing all raise it.
    """

    def __init__(self, path: str | Path, offset: int | None, message: str,
                 *, truncated: bool = False) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = message
        self.truncated = truncated
        where = f"at byte offset {offset}: " if offset is not None else ""
        super().__init__(f"{self.path}: {where}{message}")


def _copy_limit() -> int:
    """The largest file read into the process's memory: half of what is available."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    return COPY_LIMIT_DEFAULT


class _Interface:
    __slots__ = ("linktype", "snaplen", "ts_div", "ts_offset")

    def __init__(self, linktype: int, snaplen: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.ts_div = 1_000_000  # if_tsresol default: microseconds
        self.ts_offset = 0


class CaptureFile:
    """A pcap or pcapng file, memory-mapped; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            fd, st = open_input(self.path)
        except PathError as exc:
            raise PcapError(self.path, None, exc.reason) from None
        try:
            self.size = st.st_size
            if self.size == 0:
                raise PcapError(self.path, 0, "empty file, not a pcap or pcapng capture")
            self._mm: mmap.mmap | None = self._load(fd)
        finally:
            os.close(fd)
        if self.size == 0:
            raise PcapError(self.path, 0, "empty file (it shrank while being read), not a "
                            "pcap or pcapng capture")
        self.buf: mmap.mmap = self._mm
        self.linktypes: set[int] = set()
        # pcapng: interfaces by block offset of their section, for timestamp()
        self._ifaces_at: dict[int, list[_Interface]] = {}
        self.format: Format
        self._endian = "<"
        self._ts_div = 1_000_000
        self._linktype = 0
        self._snaplen = 0
        magic = bytes(self.buf[:4])
        if magic in _PCAP_MAGICS:
            self.format = "pcap"
            self._read_pcap_header()
        elif magic == _PCAPNG_SHB.to_bytes(4, "little"):
            self.format = "pcapng"
            if self.size < 12:
                raise PcapError(self.path, 0, "truncated pcapng section header",
                                truncated=True)
        elif magic[:2] == b"\x1f\x8b":
            raise PcapError(self.path, 0, "gzip-compressed file: gunzip it first")
        else:
            raise PcapError(self.path, 0, f"not a pcap or pcapng file (starts with "
                            f"{magic.hex(' ')})")

    def _load(self, fd: int) -> mmap.mmap:
        """The file's bytes in memory of the process's own (see the module doc)."""
        if self.size > _copy_limit():
            try:  # too big to copy: the file's own pages (a truncation is then fatal)
                return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise PcapError(self.path, None, f"cannot map: {exc}") from None
        try:
            mm = mmap.mmap(-1, self.size)
        except (OSError, ValueError, OverflowError) as exc:
            raise PcapError(self.path, None, f"cannot allocate {self.size} bytes: "
                            f"{exc}") from None
        got = 0
        try:
            with memoryview(mm) as view:
                while got < self.size:
                    n = os.readv(fd, [view[got:]])
                    if n == 0:  # the file shrank since its stat: what is left is the file
                        break
                    got += n
        except OSError as exc:
            mm.close()
            raise PcapError(self.path, None, f"cannot read: {os_reason(exc)}") from None
        if got < self.size:
            self.size = got
            if got == 0:
                mm.close()
                return mm
            small = mmap.mmap(-1, got)
            small[:] = mm[:got]
            mm.close()
            mm = small
        return mm

    # -- context manager -------------------------------------------------
    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._mm is not None:
            # BufferError: a caller still holds a memoryview; the GC will unmap it
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None

    def _err(self, offset: int, message: str, *, truncated: bool = False) -> PcapError:
        return PcapError(self.path, offset, message, truncated=truncated)

    # -- pcap --------------------------------------------------------------
    def _read_pcap_header(self) -> None:
        if self.size < 24:
            raise self._err(0, f"truncated pcap file header ({self.size} of 24 bytes)",
                            truncated=True)
        self._endian, self._ts_div = _PCAP_MAGICS[bytes(self.buf[:4])]
        major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(
            self._endian + "HHiIII", self.buf, 4)
        if major != 2:
            raise self._err(4, f"unsupported pcap version {major}")
        self._snaplen = snaplen
        self._linktype = network & 0x03FFFFFF  # upper bits: FCS length flags
        self.linktypes.add(self._linktype)

    def _pcap_records(self) -> Iterator[Record]:
        buf, size, lt = self.buf, self.size, self._linktype
        caplen_at = struct.Struct(self._endian + "I").unpack_from
        off = 24
        last_header = size - 16  # the loop bound keeps every record header inside the file
        while off <= last_header:
            caplen = caplen_at(buf, off + 8)[0]
            end = off + 16 + caplen
            if end > size:
                raise self._err(off, f"record of {caplen} bytes is longer than the "
                                f"{size - off - 16} bytes left in the file (truncated file?)",
                                truncated=True)
            yield lt, off + 16, caplen, off
            off = end
        if off < size:
            raise self._err(off, f"truncated record header ({size - off} of 16 bytes "
                            "left at the end of the file)", truncated=True)

    # -- pcapng ------------------------------------------------------------
    def _pcapng_records(self) -> Iterator[Record]:
        buf, size = self.buf, self.size
        off = 0
        e = "<"
        u32 = struct.Struct("<I").unpack_from
        ifaces: list[_Interface] = []
        while off < size:
            if off + 12 > size:
                raise self._err(off, f"truncated block header ({size - off} bytes left at "
                                "the end of the file)", truncated=True)
            btype = u32(buf, off)[0]
            if btype == _PCAPNG_SHB:
                bom = bytes(buf[off + 8:off + 12])
                if bom == b"\x4d\x3c\x2b\x1a":
                    e = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    e = ">"
                else:
                    raise self._err(off + 8, f"bad pcapng byte-order magic {bom.hex(' ')}")
                u32 = struct.Struct(e + "I").unpack_from
                ifaces = []
                self._ifaces_at[off] = ifaces
            blen = u32(buf, off + 4)[0]
            if blen < 12 or blen % 4:
                raise self._err(off, f"bad pcapng block length {blen} (block type "
                                f"{btype:#x})")
            end = off + blen
            if end > size:
                raise self._err(off, f"block of {blen} bytes is longer than the "
                                f"{size - off} bytes left in the file (truncated file?)",
                                truncated=True)
            if u32(buf, end - 4)[0] != blen:
                raise self._err(end - 4, f"pcapng block length fields disagree "
                                f"({blen} vs {u32(buf, end - 4)[0]})")
            if btype in (_BT_EPB, _BT_PB):
                if blen < 32:
                    raise self._err(off, f"packet block too short ({blen} bytes)")
                if btype == _BT_EPB:
                    ifid = u32(buf, off + 8)[0]
                else:
                    ifid = struct.unpack_from(e + "H", buf, off + 8)[0]
                caplen = u32(buf, off + 20)[0]
                if ifid >= len(ifaces):
                    raise self._err(off, f"packet on interface {ifid}, but the section "
                                    f"describes {len(ifaces)} interface(s)")
                if 28 + caplen > blen - 4:
                    raise self._err(off, f"captured length {caplen} does not fit its "
                                    f"{blen}-byte block")
                yield ifaces[ifid].linktype, off + 28, caplen, off
            elif btype == _BT_SPB:
                if not ifaces:
                    raise self._err(off, "simple packet block before any interface")
                origlen = u32(buf, off + 8)[0]
                caplen = min(origlen, blen - 16)
                if ifaces[0].snaplen:
                    caplen = min(caplen, ifaces[0].snaplen)
                yield ifaces[0].linktype, off + 12, caplen, off
            elif btype == _BT_IDB:
                if blen < 20:
                    raise self._err(off, f"interface description block too short ({blen})")
                linktype, _res, snaplen = struct.unpack_from(e + "HHI", buf, off + 8)
                iface = _Interface(linktype, snaplen)
                self._read_idb_options(iface, off + 16, end - 4, e)
                ifaces.append(iface)
                self.linktypes.add(linktype)
            off = end

    def _read_idb_options(self, iface: _Interface, pos: int, end: int, e: str) -> None:
        hh = struct.Struct(e + "HH").unpack_from
        while pos + 4 <= end:
            code, length = hh(self.buf, pos)
            if code == 0:
                break
            val = pos + 4
            if val + length > end:
                raise self._err(pos, "interface option runs past its block")
            if code == _OPT_IF_TSRESOL and length >= 1:
                r = self.buf[val]
                iface.ts_div = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
            elif code == _OPT_IF_TSOFFSET and length >= 8:
                iface.ts_offset = struct.unpack_from(e + "q", self.buf, val)[0]
            pos = val + ((length + 3) & ~3)

    # -- public ------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        """Every packet record, in file order."""
        if self.format == "pcap":
            return self._pcap_records()
        return self._pcapng_records()

    def timestamp(self, record_offset: int) -> float:
        """Seconds since the epoch of the record at ``record_offset`` (0.0 if none)."""
        return self.timestamp_ns(record_offset) / 1e9

    def timestamp_ns(self, record_offset: int) -> int:
        """Nanoseconds since the epoch of the record at ``record_offset`` (0 if none)."""
        buf = self.buf
        if self.format == "pcap":
            sec, frac = struct.unpack_from(self._endian + "II", buf, record_offset)
            return int(sec) * 1_000_000_000 + int(frac) * 1_000_000_000 // self._ts_div
        # pcapng: find the section (the last SHB before the record)
        section = max((o for o in self._ifaces_at if o <= record_offset), default=None)
        if section is None:
            return 0
        e = "<" if bytes(buf[section + 8:section + 12]) == b"\x4d\x3c\x2b\x1a" else ">"
        btype = struct.unpack_from(e + "I", buf, record_offset)[0]
        if btype == _BT_SPB:
            return 0
        if btype == _BT_EPB:
            ifid = struct.unpack_from(e + "I", buf, record_offset + 8)[0]
        else:
            ifid = struct.unpack_from(e + "H", buf, record_offset + 8)[0]
        hi, lo = struct.unpack_from(e + "II", buf, record_offset + 12)
        iface = self._ifaces_at[section][ifid]
        ticks = (int(hi) << 32) | int(lo)
        return int(iface.ts_offset) * 1_000_000_000 + ticks * 1_000_000_000 // int(iface.ts_div)


_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100))


def l3_offset(buf: Any, lt: int, start: int, caplen: int, skipped: dict[int, int]) -> int:
    """Where the IP header (IPv4 or IPv6) starts in the frame of link type ``lt`` at
    ``buf[start:start + caplen]``; -1 if the frame is not IP (or too short for the
    fixed IPv4 header). A link type not read here is counted in ``skipped``. Both
    readers of captures walk frames with it: the review, on the mapped file, and the
    records of :mod:`lab.wire.packets`."""
    if lt == LINKTYPE_ETHERNET:
        if caplen < 34:
            return -1
        ip = start + 14
        et = (buf[start + 12] << 8) | buf[start + 13]
        while et in _VLAN_TYPES and ip + 4 <= start + caplen:
            et = (buf[ip + 2] << 8) | buf[ip + 3]
            ip += 4
        return ip if et in (0x0800, 0x86DD) else -1
    if lt == LINKTYPE_LINUX_SLL:
        ok = caplen >= 36 and buf[start + 14:start + 16] in (b"\x08\x00", b"\x86\xdd")
        return start + 16 if ok else -1
    if lt == LINKTYPE_LINUX_SLL2:
        ok = caplen >= 40 and buf[start:start + 2] in (b"\x08\x00", b"\x86\xdd")
        return start + 20 if ok else -1
    if lt == LINKTYPE_RAW:
        return start
    if lt == LINKTYPE_IPV4:
        return start if caplen and buf[start] >> 4 == 4 else -1
    if lt == LINKTYPE_NULL:  # 4-byte AF_INET (2) or AF_INET6 (10, 24, 28, 30), either order
        ok = caplen >= 24 and bool({buf[start], buf[start + 3]} & {2, 10, 24, 28, 30})
        return start + 4 if ok else -1
    skipped[lt] = skipped.get(lt, 0) + 1
    return -1


def open_capture(path: str | Path) -> CaptureFile:
    """Open ``path`` as a pcap or pcapng file (raises :class:`PcapError`)."""
    return CaptureFile(path)


def count_packets(path: str | Path,
                  progress: Callable[[int], None] | None = None) -> int:
    """How many packet records ``path`` holds (walks the framing only)."""
    n = 0
    with CaptureFile(path) as cap:
        for n, (_lt, _start, _caplen, rec) in enumerate(cap.records(), 1):
            if progress is not None and not n & 0xFFFF:
                progress(rec)
    return n
