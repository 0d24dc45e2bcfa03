"""A capture set read for the report: its manifest facts and every hop's packets.

Each packet seen at a capture point becomes a :class:`Sighting`, with the
direction it had there (``in`` to the point's host, ``out`` from it, or
``?``). At a pod it comes from the pod's address; at a node from the
frame's MACs: a node's capture sees its interface's MAC on every unicast
frame and each peer's only on some, so the most frequent MAC of a capture
is the node's, and a frame sent from it is ``out``. A client-role capture
is a bridge (Docker's ``br-kind``) that also sees the nodes talking to each
other: only the client's own frames (to the service, or to the client's
address) are sightings at the client.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.capture.capdir import CaptureDir, PointFile
from lab.capture.layout import Role
from lab.capture.manifest import Manifest, ManifestBackend, ManifestService
from lab.wire import dsropt
from lab.wire.packets import Pkt

SightingWay = Literal["in", "out", "?"]
ROLE_RANK: dict[Role, int] = {"client": 0, "lb-node": 1, "backend-node": 2, "pod": 3}
ROLE_LABEL: dict[Role, str] = {"client": "client", "lb-node": "LB node",
                               "backend-node": "backend node", "pod": "pod"}


@dataclass(frozen=True)
class Sighting:
    """One packet as captured at one point."""

    point: PointFile
    pkt: Pkt
    direction: SightingWay
    rank: int  # the point's position in the manifest (a stable tie-breaker)

    @property
    def host(self) -> str:
        return self.point.host

    @property
    def ref(self) -> str:
        """``<point name>#<frame number>``, the reference results.json uses."""
        return f"{self.point.name}#{self.pkt.frame}"

    @property
    def where(self) -> str:
        """Human form: the file and Wireshark's 1-based frame number."""
        return f"{self.point.file.name} frame {self.pkt.frame}"

    @property
    def src(self) -> str:
        return self.pkt.endpoint("src") if self.pkt.sport is not None else self.pkt.src

    @property
    def dst(self) -> str:
        return self.pkt.endpoint("dst") if self.pkt.dport is not None else self.pkt.dst


@dataclass
class CaptureView:
    """Everything the report takes from a capture directory (no live lab)."""

    capdir: CaptureDir
    packets: dict[str, list[Pkt]] = field(default_factory=dict)  # by point name
    missing: list[str] = field(default_factory=list)  # point names whose pcap is absent
    own_mac: dict[str, str] = field(default_factory=dict)  # by point name

    @property
    def directory(self) -> Path:
        return self.capdir.directory

    @property
    def manifest(self) -> Manifest:
        return self.capdir.manifest

    @property
    def service(self) -> ManifestService:
        return self.capdir.service

    @property
    def client_ip(self) -> str:
        return self.capdir.client_ip

    @property
    def backends(self) -> list[ManifestBackend]:
        return self.capdir.backends

    @property
    def option_order(self) -> dsropt.OptionOrder:
        return self.capdir.option_order

    def dsr_of(self, pkt: Pkt) -> dsropt.DsrValue | None:
        """The service a packet's DSR carrier names (a leading IPv4 option read in the
        manifest's byte order, the IPv6 option, the Geneve option)."""
        try:
            return pkt.dsr(self.option_order)
        except (dsropt.DsrOptionError, ValueError):
            return None

    def is_clients_own(self, pkt: Pkt) -> bool:
        """A frame the client itself sent (to the service: a later fragment has no port)
        or received."""
        to_service = (pkt.src == self.client_ip and pkt.dst == self.service.ip
                      and (pkt.dport == self.service.port or pkt.frag_offset > 0))
        return to_service or pkt.dst == self.client_ip

    def direction(self, point: PointFile, pkt: Pkt) -> SightingWay:
        if point.role == "client":
            return "out" if pkt.src == self.client_ip else "in"
        pod = next((b for b in self.backends if b.name == point.host), None)
        if point.role == "pod" and pod is not None:
            return "out" if pkt.src == pod.ip else "in" if pkt.dst == pod.ip else "?"
        mac = self.own_mac.get(point.name)
        if mac and pkt.mac_src == mac:
            return "out"
        if mac and pkt.mac_dst == mac:
            return "in"
        return "?"

    def sightings(self, point: PointFile) -> list[Sighting]:
        rank = self.capdir.points.index(point)
        pkts = self.packets.get(point.name, [])
        if point.role == "client":
            pkts = [p for p in pkts if self.is_clients_own(p)]
        return [Sighting(point, p, self.direction(point, p), rank) for p in pkts]

    def all_sightings(self) -> list[Sighting]:
        return [s for pt in self.capdir.points for s in self.sightings(pt)]


def _unicast(mac: str) -> bool:
    try:
        return bool(mac) and not int(mac.split(":", maxsplit=1)[0], 16) & 1
    except ValueError:
        return False


def own_mac(pkts: list[Pkt]) -> str | None:
    """The MAC on the most frames of a capture: the capturing interface's own."""
    seen: Counter[str] = Counter()
    for p in pkts:
        for mac in {p.mac_src, p.mac_dst}:
            if _unicast(mac):
                seen[mac] += 1
    if not seen:
        return None
    (mac, n), *rest = seen.most_common(2)
    if rest and rest[0][1] == n:  # a tie: no interface stands out
        return None
    return mac


def load_view(capture_dir: Path | CaptureDir) -> CaptureView:
    """Every hop's packets of a capture set (missing files are listed, not fatal)."""
    capdir = capture_dir if isinstance(capture_dir, CaptureDir) else CaptureDir.load(capture_dir)
    view = CaptureView(capdir)
    for point in capdir.points:
        if not point.file.exists():
            view.missing.append(point.name)
        pkts = view.packets[point.name] = capdir.packets(point)
        mac = own_mac(pkts) if point.role != "client" else None
        if mac:
            view.own_mac[point.name] = mac
    return view
