"""``datapath-events.json``: what the nodes' datapath said about the run's packets.

Cilium's programs send drop and trace notifications (``cilium_events``, as
``cilium monitor`` shows them); the lab's own datapath counts its drops by
reason (``dsr_counters``). Both are kept in a capture set in one shape, a
:class:`DatapathEvent` per notification or per counted reason, so the report
lists them at the hop where they happened and the diagnosis names the
reason ("dropped at cilium-dsr-worker eth0: DROP_NO_FIB").

The file is bounded however long the run: every drop is counted, but only
the first :data:`MAX_DROPS` are kept one by one (the rest are folded into
their group's count) and only the first :data:`MAX_TRACES` traces (the rest
are counted per node and observation point); the pcaps hold every packet.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from lab.atomic import write_text
from lab.capture.layout import DATAPATH_EVENTS, CaptureError
from lab.model.errors import validation_message
from lab.model.yamldoc import read_document

MAX_DROPS = 2000
MAX_TRACES = 300
EventKind = Literal["drop", "trace"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DatapathEvent(_Record):
    """One notification (``count`` 1) or one counted drop reason (``count`` n)."""

    node: str
    ifname: str = ""  # where it happened, when the datapath says
    kind: EventKind
    what: str  # DROP_NO_FIB, TRACE_TO_LXC (Cilium's names); drop_no_backend (the lab's)
    count: int = 1
    time: float | None = None  # seconds since the epoch it was read (notifications)
    where: str = ""  # the datapath's source: nodeport.h:2298
    # the packet, as far as the notification carried it
    src: str = ""
    sport: int | None = None
    dst: str = ""
    dport: int | None = None
    proto: str = ""  # TCP, UDP, or the protocol number
    packet: str = ""  # its first bytes, hex

    @property
    def hop(self) -> str:
        return f"{self.node} {self.ifname}".strip()

    @property
    def flow(self) -> str:
        """``172.18.0.1:40000 -> 10.0.2.123:80 TCP``, or ``''`` when not known."""
        if not self.src:
            return ""
        if self.sport is None or self.dport is None:
            return f"{self.src} -> {self.dst} {self.proto}".strip()
        return f"{self.src}:{self.sport} -> {self.dst}:{self.dport} {self.proto}".strip()

    def group(self) -> tuple[str, str, str, str]:
        return (self.node, self.ifname, self.what, self.where)


class DropGroup(_Record):
    """Every drop of one reason at one hop (and one place in the source)."""

    node: str
    ifname: str
    what: str
    where: str
    count: int
    flows: list[str]  # the first few distinct flows it dropped

    @property
    def hop(self) -> str:
        return f"{self.node} {self.ifname}".strip()


class Bounds:
    """The file's bounds over a stream of events, in order: which to keep one by one,
    and the counts of the rest (every trace is counted per node and observation point;
    drops past :data:`MAX_DROPS` only in ``drops_left_out``)."""

    def __init__(self) -> None:
        self.traces: Counter[str] = Counter()
        self.drops_left_out = 0
        self._traces_kept = self._drops_kept = 0

    def keep(self, kind: EventKind, node: str, what: str, count: int = 1) -> bool:
        """Count the event; True when it is to be kept one by one."""
        if kind == "trace":
            self.traces[f"{node} {what}"] += count
            self._traces_kept += 1
            return self._traces_kept <= MAX_TRACES
        if self._drops_kept >= MAX_DROPS:
            self.drops_left_out += count
            return False
        self._drops_kept += 1
        return True

    def content(self, datapath: str, source: Literal["cilium_events", "dsr_counters"],
                kept: list[DatapathEvent], lost: int = 0) -> DatapathEvents:
        """The file: the events :meth:`keep` kept, and these counts."""
        return DatapathEvents(datapath=datapath, source=source, events=kept,
                              drops_left_out=self.drops_left_out, traces=dict(self.traces),
                              lost=lost)


class DatapathEvents(_Record):
    """The file: which datapath, its events, and what was counted but not kept."""

    datapath: str  # "Cilium v1.16.0", "the lab's (bpf/dsr.c)"
    source: Literal["cilium_events", "dsr_counters"]
    events: list[DatapathEvent] = []
    drops_left_out: int = 0  # counted in drop_groups, not kept one by one
    traces: dict[str, int] = {}  # "node TRACE_TO_LXC" -> count (all of them)
    lost: int = 0  # notifications the perf buffer lost (the kernel's count)

    @property
    def drops(self) -> list[DatapathEvent]:
        return [e for e in self.events if e.kind == "drop"]

    @property
    def drop_count(self) -> int:
        return sum(e.count for e in self.drops) + self.drops_left_out

    def drop_groups(self, max_flows: int = 3) -> list[DropGroup]:
        """Drops by hop, reason and source place, most first."""
        counts: Counter[tuple[str, str, str, str]] = Counter()
        flows: dict[tuple[str, str, str, str], list[str]] = {}
        for e in self.drops:
            key = e.group()
            counts[key] += e.count
            seen = flows.setdefault(key, [])
            if e.flow and e.flow not in seen and len(seen) < max_flows:
                seen.append(e.flow)
        return [DropGroup(node=k[0], ifname=k[1], what=k[2], where=k[3], count=n,
                          flows=flows[k]) for k, n in counts.most_common()]

    @classmethod
    def bounded(cls, datapath: str, source: Literal["cilium_events", "dsr_counters"],
                events: Iterable[DatapathEvent], lost: int = 0) -> DatapathEvents:
        """The file's content for ``events`` (in order), kept within its bounds."""
        bounds = Bounds()
        kept = [e for e in events if bounds.keep(e.kind, e.node, e.what, e.count)]
        return bounds.content(datapath, source, kept, lost)

    # -- on disk -------------------------------------------------------------
    def write(self, directory: str | Path) -> Path:
        return write_text(Path(directory) / DATAPATH_EVENTS,
                          self.model_dump_json(indent=1) + "\n")

    @classmethod
    def read(cls, directory: str | Path) -> DatapathEvents | None:
        """The capture set's events; None when it has none (a set from before them, or
        a run without a datapath); a bad file is a :class:`CaptureError` naming it."""
        path = Path(directory) / DATAPATH_EVENTS
        if not path.is_file():
            return None
        if not path.resolve().is_relative_to(Path(directory).resolve()):
            raise CaptureError(f"{path}: leads outside the capture directory")
        text = read_document(path, CaptureError, "datapath events")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CaptureError(f"{path}: cannot read datapath events: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise CaptureError(validation_message(path, exc, cls)) from None
