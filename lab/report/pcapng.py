"""One pcapng per run: every hop's packets in time order, one interface per hop.

Wireshark then shows a flow's SYN at the client, on the LB node (in, and
out DNATed with the option), on the backend node and in the pod, one after
the other, with the hop in the "Interface name" column
(``frame.interface_name``). Packets that matched an expectation of the
trace checker carry a comment naming it (``frame.comment``), e.g.
``lb-node/syn-out flow 172.18.0.1:40312``; packets with a DSR option carry
one naming the service it decodes to.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from scapy.layers.inet import IP
from scapy.packet import Packet
from scapy.utils import PcapNgWriter, PcapReader

from lab import dsropt
from lab.capture import CaptureDir, PointFile
from lab.report.capset import option_order
from lab.report.results import Results, load_results, parse_results

MERGED = "merged.pcapng"


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

    def _get_time(self, packet: bytes | Packet, sec: float | None,
                  usec: int | None) -> tuple[float, int]:
        if sec is None and isinstance(packet, Packet):
            return cast(float, packet.time), 0  # an EDecimal: exact microseconds
        return super()._get_time(packet, sec, usec)


def comments_by_packet(results: Results | None) -> dict[tuple[str, int], list[str]]:
    """``(point name, Pkt.index) -> comments`` from the checks that name a packet."""
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


def _dsr_comment(frame: Packet, order: dsropt.OptionOrder) -> str | None:
    ip = frame.getlayer(IP)
    if ip is None:
        return None
    hdr = bytes(ip)[: int(ip.ihl) * 4]
    opt = hdr[20:]
    if len(opt) < dsropt.OPT_LEN or opt[0] != dsropt.OPT_TYPE or opt[1] != dsropt.OPT_LEN:
        return None
    try:
        svc_ip, svc_port = dsropt.decode(opt, order)
    except (dsropt.DsrOptionError, ValueError):
        return None
    return f"DSR option {opt[:8].hex(' ')} -> service {svc_ip}:{svc_port}"


def _frames(point: PointFile, rank: int) -> Iterator[tuple[Decimal, int, int, Packet]]:
    with PcapReader(str(point.file)) as reader:
        for index, frame in enumerate(reader):
            yield Decimal(str(frame.time)), rank, index, frame


def _linktype(point: PointFile) -> int:
    with PcapReader(str(point.file)) as reader:
        return int(reader.linktype)


def merge_pcapng(capture_dir: Path, results: Mapping[str, Any] | None = None) -> Path:
    """Write ``<capture_dir>/merged.pcapng`` and return its path.

    ``results`` is the trace checker's ``results.json`` content; when it is
    None the file is read from the capture directory if there is one.
    """
    capdir = CaptureDir.load(capture_dir)
    parsed = parse_results(results) if results is not None else load_results(capdir.directory)[0]
    comments = comments_by_packet(parsed)
    order = option_order(capdir.manifest)
    points = [p for p in capdir.points if p.file.exists()]
    out = capdir.directory / MERGED
    tmp = out.with_name(f".{MERGED}.tmp")
    writer = _HopWriter(str(tmp), [(p.name, _linktype(p)) for p in points])
    try:
        streams = [_frames(p, rank) for rank, p in enumerate(points)]
        for _, rank, index, frame in heapq.merge(*streams, key=lambda t: t[:3]):
            point = points[rank]
            notes = list(comments.get((point.name, index), []))
            dsr = _dsr_comment(frame, order)
            if dsr:
                notes.append(dsr)
            frame.sniffed_on = point.name
            frame.comments = [n.encode() for n in notes] or None
            writer.write(frame)
    finally:
        writer.close()
    tmp.replace(out)
    return out
