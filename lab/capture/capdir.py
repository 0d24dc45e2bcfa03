"""A capture set on disk, read back: its manifest and every hop's pcap.

Everything after the live capture reads only this (never a running lab):
the trace checker, the report and ``dsrlab review``. Each pcap is parsed
once per :class:`CaptureDir` however many readers ask for its packets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lab.capture.layout import MANIFEST, CaptureError, Role
from lab.capture.manifest import Manifest, ManifestBackend, ManifestService
from lab.wire import dsropt

if TYPE_CHECKING:
    from lab.wire.packets import Pkt


@dataclass(frozen=True)
class PointFile:
    """A capture point as read back from a manifest, with its pcap's absolute path."""

    name: str
    host: str
    ifname: str
    role: Role
    file: Path


def _inside(directory: Path, index: int, name: str) -> Path:
    """``directory / name``, refused unless it stays inside ``directory`` once
    symbolic links are followed (the manifest model already refused absolute
    paths and ``..``)."""
    path = directory / name
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise CaptureError(f"{directory / MANIFEST}: points[{index}].file: {name!r} "
                           f"cannot be resolved ({exc})") from None
    if not real.is_relative_to(directory):
        raise CaptureError(f"{directory / MANIFEST}: points[{index}].file: {name!r} leads "
                           f"outside the capture directory (to {real})")
    return path


@dataclass(frozen=True)
class CaptureDir:
    """A capture set on disk: the typed manifest and its pcaps (no live lab needed)."""

    directory: Path
    manifest: Manifest
    points: list[PointFile]
    _packets: dict[str, list[Pkt]] = field(default_factory=dict, init=False, repr=False,
                                            compare=False)

    @classmethod
    def load(cls, directory: str | Path) -> CaptureDir:
        d = Path(directory).resolve()
        manifest = Manifest.read(d)
        points = [PointFile(name=p.name, host=p.host, ifname=p.ifname, role=p.role,
                            file=_inside(d, i, p.file)) for i, p in enumerate(manifest.points)]
        return cls(directory=d, manifest=manifest, points=points)

    @property
    def service(self) -> ManifestService:
        return self.manifest.service

    @property
    def client_ip(self) -> str:
        return self.manifest.client.ip

    @property
    def backends(self) -> list[ManifestBackend]:
        return self.manifest.backends

    @property
    def option_order(self) -> dsropt.OptionOrder:
        """The DSR option's byte order in this set (host order unless it says network)."""
        return self.manifest.option_byte_order

    def by_role(self, role: Role) -> Iterator[PointFile]:
        return (p for p in self.points if p.role == role)

    def point(self, name: str) -> PointFile:
        for p in self.points:
            if name in (p.name, p.host):
                return p
        raise KeyError(f"no capture point {name!r} in {self.directory}")

    def packets(self, point: PointFile) -> list[Pkt]:
        """The point's IPv4 packets (none when its pcap is absent), read once per instance."""
        if point.name not in self._packets:
            # the packet decoder only for the readers of packets
            from lab.wire.packets import read_pcap  # noqa: PLC0415

            self._packets[point.name] = read_pcap(point.file) if point.file.exists() else []
        return self._packets[point.name]
