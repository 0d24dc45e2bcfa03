"""Ethernet frames in and out (the datapath runner's pcap input and output).

:func:`read_frames` yields :class:`Frame` records (timestamp in ns, the
captured bytes) of a pcap or pcapng file through :mod:`lab.wire.pcapread`,
refusing link types other than Ethernet and naming the file.
:class:`PcapWriter` writes classic pcap with nanosecond timestamps and
Ethernet link type, whole or not at all (a temporary file renamed over the
output when complete).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lab.wire.paths import AtomicOutput, PathError
from lab.wire.pcapread import PcapError, open_capture

LINKTYPE_ETHERNET = 1
MAGIC_NS = 0xA1B23C4D
SNAPLEN = 262144

_GLOBAL = struct.Struct("IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
_RECORD = struct.Struct("IIII")  # ts_sec, ts_frac, incl_len, orig_len


@dataclass(frozen=True)
class Frame:
    """One captured frame: its timestamp (ns since the epoch) and bytes."""

    ts_ns: int
    data: bytes


def _check_linktype(path: Path, linktype: int, offset: int | None) -> None:
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(path, offset,
                        f"link type {linktype}, the datapath runs on Ethernet (1) only")


def read_frames(path: str | Path) -> Iterator[Frame]:
    """The frames of a pcap or pcapng file, in file order (Ethernet only).

    Reading is :mod:`lab.wire.pcapread`'s (one reader for the whole lab); this
    adds the datapath's rule that every frame must be Ethernet.
    """
    path = Path(path)
    with open_capture(path) as cap:
        for linktype in cap.linktypes:  # a classic pcap's, known from its header
            _check_linktype(path, linktype, None)
        for linktype, start, caplen, rec in cap.records():
            _check_linktype(path, linktype, rec)
            yield Frame(cap.timestamp_ns(rec), bytes(cap.buf[start:start + caplen]))


class PcapWriter:
    """Classic pcap, nanosecond timestamps, Ethernet; use as a context manager.

    Written whole or not at all (:class:`lab.wire.paths.AtomicOutput`): the
    frames go to a temporary file beside ``path``, renamed over it by
    :meth:`close`; leaving the ``with`` block on an exception (or
    :meth:`discard`) removes it and leaves ``path`` as it was. ``path`` must
    not be one of ``inputs`` (the same file through any link), a directory
    or a device, and its folder must exist and be writable: else, and when
    writing fails (a full disk), :class:`PcapError` naming ``path``.
    """

    def __init__(self, path: str | Path, inputs: Iterable[str | Path] = ()) -> None:
        self.path = Path(path)
        try:
            self._out = AtomicOutput(self.path, inputs)
        except PathError as exc:
            raise PcapError(self.path, None, exc.reason) from None
        self.count = 0
        self._put(_GLOBAL.pack(MAGIC_NS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def _put(self, data: bytes) -> None:
        try:
            self._out.write(data)
        except PathError as exc:
            raise PcapError(self.path, None, exc.reason) from None

    def write(self, data: bytes, ts_ns: int = 0) -> None:
        sec, frac = divmod(ts_ns, 1_000_000_000)
        if not 0 <= sec <= 0xFFFFFFFF:  # outside what classic pcap holds: its nearest end
            sec, frac = (0, 0) if sec < 0 else (0xFFFFFFFF, 999_999_999)
        self._put(_RECORD.pack(sec, frac, len(data), len(data)) + data)
        self.count += 1

    def close(self) -> None:
        """Finish the file: it replaces ``path``."""
        try:
            self._out.commit()
        except PathError as exc:
            raise PcapError(self.path, None, exc.reason) from None

    def discard(self) -> None:
        """Drop the frames written; ``path`` stays as it was."""
        self._out.discard()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
