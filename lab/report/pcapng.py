"""One pcapng per run: every hop's packets in time order, one interface per hop.

Wireshark then shows a flow's SYN at the client, on the LB node (in, and
out DNATed with the option), on the backend node and in the pod, one after
the other, with the hop in the "Interface name" column
(``frame.interface_name``). Packets that matched an expectation of the
trace checker carry a comment naming it (``frame.comment``), e.g.
``lb-node/syn-out flow 172.18.0.1:40312``; packets with a DSR carrier (the
IPv4 option, the IPv6 Destination Option, the Geneve option) carry one naming
the service it decodes to, and an encapsulated frame one naming its outer and
inner headers.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from scapy.utils import PcapNgWriter, RawPcapNgReader, RawPcapReader

from lab.atomic import AtomicFile
from lab.capture.capdir import CaptureDir, PointFile
from lab.capture.layout import MERGED
from lab.check.trace.results import ResultsError, TraceResult, load_results, parse_results
from lab.wire import dsropt
from lab.wire.packets import Pkt


@dataclass(frozen=True)
class _Frame:
    """One record of a capture file, as stored (not decoded)."""

    time: Decimal  # exact, in the file's resolution
    data: bytes
    wirelen: int
    direction: int | None  # a pcapng packet's direction flag, if it has one


class _HopWriter(PcapNgWriter):
    """scapy's writer, with the interfaces declared up front (no unnamed interface 0)
    and timestamps kept exact (scapy would go through a float)."""

    def __init__(self, filename: str, interfaces: list[tuple[str, int]]) -> None:
        super().__init__(filename)
        self.interfaces2id = {}
        self.linktype = interfaces[0][1] if interfaces else 1
        self.header_present = True
        self._write_block_shb()
        for i, (name, linktype) in enumerate(interfaces):
            ifname = name.encode()
            self.interfaces2id[ifname] = i
            self._write_block_idb(linktype=linktype, ifname=ifname)

    def write_frame(self, hop: str, frame: _Frame, comments: list[bytes]) -> None:
        # a Decimal as the seconds: scapy scales it to microseconds exactly
        self._write_packet(frame.data, self.linktype, sec=cast(float, frame.time), usec=0,
                           wirelen=frame.wirelen, ifname=hop.encode(),
                           direction=frame.direction, comments=comments or None)


def comments_by_packet(results: TraceResult | None) -> dict[tuple[str, int], list[str]]:
    """``(point name, frame number) -> comments`` from the checks that name a packet."""
    out: dict[tuple[str, int], list[str]] = {}
    for c in results.checks() if results else []:
        if c.point is None:
            continue
        flow = f" flow {c.flow}" if c.flow else ""
        if c.packet is not None:
            text = f"{c.label}{flow}"
            if not c.passed:
                text = f"FAIL {text}: {c.message}" if c.message else f"FAIL {text}"
            out.setdefault((c.point, c.packet), []).append(text)
        if c.closest is not None and not c.passed:
            out.setdefault((c.point, c.closest), []).append(
                f"closest to the FAILED {c.label}{flow}: {c.message or 'no match'}")
    return out


def _dsr_comment(pkt: Pkt | None, order: dsropt.OptionOrder) -> str | None:
    """What a packet's DSR carrier says: ``DSR option 9a 08 ... -> service
    172.18.0.2:32000``, ``DSR IPv6 option 0x1b 06 02 1b 14 ... -> service [200::]:80``
    or ``DSR Geneve option 01 4b 81 02 ... -> service 172.18.0.2:32000``."""
    if pkt is None:
        return None
    try:
        value = pkt.dsr(order)
    except (dsropt.DsrOptionError, ValueError):
        return None
    return None if value is None else value.describe()


def _encap_comment(pkt: Pkt | None) -> str | None:
    """An encapsulated frame's two layers: ``encapsulated: geneve 172.18.0.2:51234 >
    172.18.0.3:6081 vni=2; inner tcp 172.18.0.1:40000 > 10.0.2.123:80 [S]``."""
    if pkt is None or pkt.outer is None:
        return None
    flags = f" [{pkt.flags}]" if pkt.proto == "tcp" else ""
    return (f"encapsulated: {pkt.outer}; inner {pkt.proto} {pkt.endpoint('src')} > "
            f"{pkt.endpoint('dst')}{flags}")


def _read_frames(path: Path) -> tuple[int, list[_Frame]]:
    """A pcap or pcapng file's link type and records, in one pass."""
    with RawPcapReader(str(path)) as reader:  # a RawPcapNgReader for a pcapng file
        records: Iterator[tuple[bytes, Any]] = reader  # scapy types pcapng metadata as pcap's
        if isinstance(reader, RawPcapNgReader):
            frames = [_Frame(Decimal(0) if m.tshigh is None  # a Simple Packet Block has no time
                             else Decimal((m.tshigh << 32) + m.tslow) / m.tsresol,
                             data, m.wirelen, m.direction) for data, m in records]
            linktype = reader.interfaces[0][0] if reader.interfaces else 1
            return linktype, frames
        scale = Decimal(10) ** (-9 if reader.nano else -6)
        return reader.linktype, [_Frame(m.sec + scale * m.usec, data, m.wirelen, None)
                                 for data, m in records]


def _results(capdir: CaptureDir,
             results: TraceResult | Mapping[str, Any] | None) -> TraceResult | None:
    if isinstance(results, TraceResult):
        return results
    if results is not None:
        return parse_results(results)
    try:
        return load_results(capdir.directory)
    except ResultsError:
        return None


def merge_pcapng(capture_dir: Path | CaptureDir,
                 results: TraceResult | Mapping[str, Any] | None = None) -> Path:
    """Write ``<capture_dir>/merged.pcapng`` and return its path.

    ``results`` is the trace checker's result (or its ``results.json``
    content); when it is None the file is read from the capture directory if
    there is one.
    """
    capdir = capture_dir if isinstance(capture_dir, CaptureDir) else CaptureDir.load(capture_dir)
    comments = comments_by_packet(_results(capdir, results))
    points = [p for p in capdir.points if p.file.exists()]
    files = [_read_frames(p.file) for p in points]
    out = capdir.directory / MERGED
    with AtomicFile(out) as staged:  # scapy opens the file by name: its temporary one
        _write_merged(_HopWriter(str(staged.tmp_path), [
            (p.name, linktype) for p, (linktype, _) in zip(points, files, strict=True)]),
            capdir, points, files, comments)
    return out


def _write_merged(writer: _HopWriter, capdir: CaptureDir, points: list[PointFile],
                  files: list[tuple[int, list[_Frame]]],
                  comments: dict[tuple[str, int], list[str]]) -> None:
    try:
        # each frame by its number in its own file (Wireshark's, from 1)
        streams = [[(f.time, rank, number, f) for number, f in enumerate(frames, start=1)]
                   for rank, (_, frames) in enumerate(files)]
        pkts = [{pkt.frame: pkt for pkt in capdir.packets(p)} for p in points]
        for _, rank, number, frame in heapq.merge(*streams, key=lambda t: t[:3]):
            point = points[rank]
            notes = list(comments.get((point.name, number), []))
            pkt = pkts[rank].get(number)
            notes += [n for n in (_encap_comment(pkt), _dsr_comment(pkt, capdir.option_order))
                      if n]
            writer.write_frame(point.name, frame, [n.encode() for n in notes])
    finally:
        writer.close()
