"""Hand-built capture sets, written as a run writes them: one pcap per capture point
and a ``manifest.json`` made by the typed :class:`~lab.capture.manifest.Manifest`
(so a test's set cannot drift from what the lab reads). Every synthetic set of the
tests goes through :func:`write_capture_set`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scapy.packet import Packet
from scapy.utils import wrpcap

from lab.capture.layout import Role
from lab.capture.manifest import Manifest, ManifestPoint


@dataclass(frozen=True)
class Hop:
    """A capture point: the host, its interface, its role in the path."""

    host: str
    ifname: str
    role: Role

    @property
    def name(self) -> str:
        return f"{self.host}/{self.ifname}"


def host_file(hop: Hop) -> str:
    """``client.pcap``: the hand-built sets' short names."""
    return f"{hop.host}.pcap"


def run_file(hop: Hop) -> str:
    """``client--br-kind.pcap``: the names a run gives its pcaps."""
    return f"{hop.host}--{hop.ifname}.pcap"


def write_capture_set(directory: Path, frames: Mapping[Hop, Sequence[Packet]],
                      manifest: Manifest, *, file_name: Callable[[Hop], str] = host_file,
                      counts: bool = False) -> Path:
    """Each hop's frames to its pcap (their ``time`` kept), and ``manifest`` with
    those points (``counts``: with tcpdump's captured count, as a finished run has)
    to ``manifest.json``; the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    points = []
    for hop, pkts in frames.items():
        file = file_name(hop)
        wrpcap(str(directory / file), list(pkts), linktype=1)
        points.append(ManifestPoint(name=hop.name, host=hop.host, ifname=hop.ifname,
                                    role=hop.role, file=file,
                                    packets=len(pkts) if counts else None))
    full = manifest.model_copy(update={"points": points})
    (directory / "manifest.json").write_text(full.model_dump_json(indent=2))
    return directory
