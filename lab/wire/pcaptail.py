"""Following a classic pcap file while tcpdump writes it.

:class:`PcapTail` reads the frames added since its last call: the global
header once, then every record whose bytes are all there (a record cut off
by the writer is read on a later call). tcpdump ``-w -`` writes classic pcap
(microsecond or nanosecond, either byte order); anything else makes no
frames (:attr:`PcapTail.readable` is False), never an error: the watcher
that follows a capture is an optimisation, the capture is the record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
           b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
_GLOBAL = 24
_RECORD = 16
_MAX_RECORD = 1 << 18  # larger than any snap length tcpdump is given here


class PcapTail:
    """The frames a growing pcap file gained: ``(linktype, frame bytes)`` each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._endian = ""
        self.linktype = 0
        self.readable = True

    def skip_to_end(self) -> None:
        """Start from what the file holds now: only frames written later are read."""
        self.frames()

    def frames(self) -> list[tuple[int, bytes]]:
        """The complete records added since the last call."""
        if not self.readable:
            return []
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        return list(self._records(data))

    def _records(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        pos = 0
        if not self._endian:
            if len(data) < _GLOBAL:
                return
            self._endian = _MAGICS.get(data[:4], "")
            if not self._endian:
                self.readable = False
                return
            self.linktype = struct.unpack_from(self._endian + "I", data, 20)[0] & 0x03FFFFFF
            pos = self._offset = _GLOBAL
        while pos + _RECORD <= len(data):
            caplen = struct.unpack_from(self._endian + "I", data, pos + 8)[0]
            if caplen > _MAX_RECORD:
                self.readable = False
                return
            end = pos + _RECORD + caplen
            if end > len(data):
                break  # the writer is still on it
            self._offset += end - pos
            yield self.linktype, data[pos + _RECORD:end]
            pos = end
