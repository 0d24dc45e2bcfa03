"""Why a packet vanished, in the datapath's own words: its drops in the capture set.

A rule over a capture set, beside :mod:`lab.check.diagnose`'s. The captures
show *where* a packet stopped (a node received it and sent nothing on); the
datapath's events (``datapath-events.json``, :mod:`lab.capture.dpevents`)
say *why*: Cilium's drop notifications name the reason as that version
does (``DROP_NO_FIB``) and the place in its source; the lab's datapath
counts its drops by reason. A drop whose packet belongs to one of the
client's connections (from the client's port, or to it) explains that
connection: "dropped at cilium-dsr-control-plane eth0: DROP_NO_FIB". Drops
the datapath only counted (no packet to match) are named when something
else broke.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.capture.capdir import CaptureDir
from lab.capture.dpevents import DatapathEvent, DatapathEvents
from lab.capture.layout import CaptureError
from lab.check.diagnosis import Diagnosis


@dataclass(frozen=True)
class _Group:
    hop: str
    what: str
    where: str


def read_events(cd: CaptureDir) -> DatapathEvents | None:
    """The capture set's datapath events; None without them or when unreadable (the
    report says why)."""
    try:
        return DatapathEvents.read(cd.directory)
    except CaptureError:
        return None


def _client_port(e: DatapathEvent, client_ip: str) -> int | None:
    if e.src == client_ip:
        return e.sport
    if e.dst == client_ip:
        return e.dport
    return None


def _packets(n: int) -> str:
    return f"{n} packet" + ("s" if n != 1 else "")


def diagnose_flow_drops(cd: CaptureDir, events: DatapathEvents | None) -> list[Diagnosis]:
    """A line per reason and hop that dropped packets of the client's connections."""
    client_ip = cd.client_ip
    if events is None or not client_ip:
        return []
    svc = cd.service
    service = f"{svc.ip}:{svc.port}" if svc.ip else "the service"
    groups: dict[_Group, list[DatapathEvent]] = {}
    for e in events.drops:
        if _client_port(e, client_ip) is not None:
            groups.setdefault(_Group(e.hop, e.what, e.where), []).append(e)
    out = []
    for g, drops in groups.items():
        ports = sorted({p for e in drops if (p := _client_port(e, client_ip)) is not None})
        where = f", {g.where}" if g.where else ""
        count = sum(e.count for e in drops)
        line = (f"dropped at {g.hop}: {g.what} ({events.datapath}{where}): "
                f"{_packets(count)} of the client's connections to {service}, the first "
                f"{drops[0].flow}")
        out.append(Diagnosis("datapath-drop", line, [f"{client_ip}:{p}" for p in ports]))
    return out


def diagnose_counted_drops(cd: CaptureDir, events: DatapathEvents | None) -> list[Diagnosis]:
    """A line per reason and hop for the drops no connection of the client's owns: the
    datapath counted them without the packet, or the packet has no ports (a later
    fragment) or is another's."""
    if events is None:
        return []
    counted: dict[_Group, list[DatapathEvent]] = {}
    for e in events.drops:
        if _client_port(e, cd.client_ip) is None:
            counted.setdefault(_Group(e.hop, e.what, e.where), []).append(e)
    out = []
    for g, drops in sorted(counted.items(), key=lambda kv: -sum(e.count for e in kv[1])):
        n = sum(e.count for e in drops)
        first = next((e.flow for e in drops if e.flow), "")
        tail = f", the first {first}" if first else ""
        said = (f"{events.datapath}, {g.where}: {_packets(n)}" if g.where
                else f"{events.datapath} counted {_packets(n)}")
        out.append(Diagnosis("datapath-drop", f"dropped at {g.hop}: {g.what} ({said}{tail})"))
    return out
