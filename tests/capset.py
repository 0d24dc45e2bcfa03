"""Hand-built capture sets, written as a run writes them: one pcap per capture point
and a ``manifest.json`` made by the typed :class:`~lab.capture.manifest.Manifest`
(so a test's set cannot drift from what the lab reads). Every synthetic set of the
tests goes through :func:`write_capture_set`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from scapy.packet import Packet
from scapy.utils import wrpcap

from lab.capture.live import CapturePoint
from lab.capture.manifest import Manifest, ManifestPoint


def host_file(point: CapturePoint) -> str:
    """``client.pcap``: the hand-built sets' short names."""
    return f"{point.host}.pcap"


def run_file(point: CapturePoint) -> str:
    """``client--br-kind.pcap``: the names a run gives its pcaps."""
    return point.filename


def write_capture_set(directory: Path, frames: Mapping[CapturePoint, Sequence[Packet]],
                      manifest: Manifest, *,
                      file_name: Callable[[CapturePoint], str] = host_file,
                      counts: bool = False) -> Path:
    """Each capture point's frames to its pcap (their ``time`` kept), and ``manifest`` with
    those points (``counts``: with tcpdump's captured count, as a finished run has)
    to ``manifest.json``; the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    points = []
    for point, pkts in frames.items():
        file = file_name(point)
        wrpcap(str(directory / file), list(pkts), linktype=1)
        points.append(ManifestPoint(name=point.name, host=point.host, ifname=point.ifname,
                                    role=point.role, file=file,
                                    packets=len(pkts) if counts else None))
    full = manifest.model_copy(update={"points": points})
    (directory / "manifest.json").write_text(full.model_dump_json(indent=2))
    return directory
