"""Everything a report shows, gathered from one capture directory.

:func:`build_model` reads the manifest, the pcaps and ``results.json`` (if
any), derives the flows and lays out their ladders; the templates only
format this model.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Literal

from lab.capture.capdir import CaptureDir
from lab.capture.dpevents import DatapathEvents, DropGroup
from lab.capture.layout import (
    COMPARED,
    COMPARISON,
    COMPARISON_PLOT,
    MERGED,
    STEPS,
    CaptureError,
)
from lab.capture.manifest import Manifest
from lab.check.trace.results import FlowInfo, ResultsError, TraceResult, as_text, load_results
from lab.report.capset import ROLE_LABEL, CaptureView, Sighting, load_view
from lab.report.ladder import Flow, Trail, find_flows
from lab.report.layout import Ladder, layout_flow
from lab.report.results import CheckIndex
from lab.wire import dsropt
from lab.wire.packets import Pkt

# IP protocols a capture holds besides a service's flows, named for people
_PROTOCOLS = {"icmp": "ICMP", "tcp": "TCP", "udp": "UDP",
              "2": "IGMP (multicast group membership reports: a host joining a group)",
              "89": "OSPF", "103": "PIM", "112": "VRRP"}
_DESTS_SHOWN = 3  # destinations named per protocol


def describe_stray(pkts: list[Pkt]) -> str:
    """Packets by protocol, the most frequent first, each with its destinations (up
    to :data:`_DESTS_SHOWN`): ``3 IGMP (...), 2 UDP (to 224.0.0.251:5353)``."""
    groups: dict[str, list[Pkt]] = {}
    for p in pkts:
        groups.setdefault(p.proto, []).append(p)
    parts = []
    for proto, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        name = _PROTOCOLS.get(proto, f"IP protocol {proto}")
        dests: list[str] = []
        for p in group:
            d = p.endpoint("dst") if p.dport is not None else p.dst
            if d not in dests:
                dests.append(d)
        if "(" not in name:
            more = f" and {len(dests) - _DESTS_SHOWN} more" if len(dests) > _DESTS_SHOWN \
                else ""
            name += f" (to {', '.join(dests[:_DESTS_SHOWN])}{more})"
        parts.append(f"{len(group)} {name}")
    return ", ".join(parts)

OPEN_LADDERS = 3  # flows drawn open; failing flows are opened too, up to the same number
MAX_LADDERS = 40  # flows beyond this are listed without a ladder
Status = Literal["PASS", "FAIL", "NOT CHECKED"]


@dataclass(frozen=True)
class PointRow:
    name: str
    host: str
    role: str
    role_label: str
    file: str
    exists: bool
    packets: int  # IPv4 packets read from the file
    in_flows: int


@dataclass
class FlowRow:
    flow: Flow
    verdict: FlowInfo | None
    ladder: Ladder | None
    open: bool

    @property
    def status(self) -> Status:
        if self.verdict is None:
            return "NOT CHECKED"
        return "PASS" if self.verdict.passed else "FAIL"

    @property
    def bindings(self) -> list[tuple[str, str]]:
        """The flow's variables as results.json gives them, as text."""
        return [(k, as_text(v)) for k, v in self.verdict.bindings.items()] if self.verdict else []

    def path_of(self, flags: str) -> str:
        """The hosts the first packet with these flags went through, e.g. for "SA"."""
        trail = next((t for t in self.flow.trails if t.first.pkt.flags == flags), None)
        return _path(trail, self.flow) if trail else ""


def _path(trail: Trail, flow: Flow) -> str:
    hosts = trail.hosts
    text = " → ".join(hosts)
    order = [c.host for c in flow.columns]
    skipped = []
    for a, b in pairwise(hosts):
        i, j = sorted((order.index(a), order.index(b)))
        skipped += [h for h in order[i + 1:j] if h not in hosts]
    return text + (f" (bypasses {', '.join(dict.fromkeys(skipped))})" if skipped else "")


@dataclass
class ReportModel:
    directory: Path
    view: CaptureView
    results: TraceResult | None
    results_error: str | None
    points: list[PointRow]
    flows: list[FlowRow]
    stray: list[Sighting]
    unknown_flows: list[FlowInfo] = field(default_factory=list)
    comparison: Comparison | None = None
    steps: Steps | None = None
    events: DatapathEvents | None = None  # what the datapath dropped and traced
    events_error: str | None = None  # datapath-events.json is there but unreadable
    compared: ComparedWith | None = None  # a both run's comparisons (compared.json)

    @functools.cached_property
    def drop_groups(self) -> list[DropGroup]:
        """The datapath's drops by hop, reason and source place, most first."""
        return self.events.drop_groups() if self.events else []

    def flow_drops(self, flow: Flow) -> list[DropGroup]:
        """The drops of one client connection's packets (from its port or to it)."""
        if self.events is None:
            return []
        mine = [e for e in self.events.drops if (e.src == flow.client_ip and e.sport == flow.port)
                or (e.dst == flow.client_ip and e.dport == flow.port)]
        return DatapathEvents(datapath=self.events.datapath, source=self.events.source,
                              events=mine).drop_groups()

    def point_drops(self, host: str) -> int:
        """How many packets the datapath dropped on this host (any interface)."""
        return sum(g.count for g in self.drop_groups if g.node == host)

    @property
    def traces(self) -> list[tuple[str, str, int]]:
        """Cilium's trace notifications: (node, observation point, count)."""
        if self.events is None:
            return []
        rows = []
        for key, n in self.events.traces.items():
            node, _, point = key.rpartition(" ")
            rows.append((node, point, n))
        return sorted(rows, key=lambda r: (r[0], -r[2]))

    @property
    def manifest(self) -> Manifest:
        return self.view.manifest

    @property
    def stray_packets(self) -> int:
        """IPv4 packet sightings that belong to no flow of the service."""
        return len(self.stray)

    @property
    def stray_kinds(self) -> str:
        """What the sightings of no flow are, by protocol, most first:
        ``3 IGMP (multicast group membership reports), 1 UDP (to 224.0.0.251:5353)``."""
        return describe_stray([s.pkt for s in self.stray])

    def meta(self, key: str, default: str = "") -> str:
        v = self.view.manifest.value(key)
        return default if v is None else str(v)

    @property
    def datapath(self) -> str:
        """Which datapath made the capture set: ``Cilium v1.13.0 (c9723a8df3cf)`` or
        the lab's own (also for a set from before the manifest said)."""
        v = self.view.manifest.value("datapath")
        if isinstance(v, dict) and v.get("name") == "cilium":
            commit = str(v.get("commit") or "")[:12]
            return f"Cilium {v.get('version') or '?'}" + (f" ({commit})" if commit else "")
        return "the lab's (bpf/dsr.c)"

    @property
    def status(self) -> Status:
        if self.results is None:
            return "NOT CHECKED"
        return "PASS" if self.results.passed else "FAIL"

    @property
    def merged(self) -> str | None:
        return MERGED if (self.directory / MERGED).exists() else None

    @property
    def n_checks(self) -> int:
        return len(self.results.checks()) if self.results else 0

    @property
    def n_failed(self) -> int:
        return len(self.results.failures()) if self.results else 0

    @property
    def expected_option(self) -> str:
        svc = self.view.service
        try:
            if ":" in svc.ip:  # IPv6: the Destination Options header, whole
                return dsropt.encode6(svc.ip, svc.port).hex(" ")
            return dsropt.encode(svc.ip, svc.port, self.view.option_order).hex(" ")
        except ValueError:
            return ""

    @property
    def captured_at(self) -> str:
        times = [p.time for pkts in self.view.packets.values() for p in pkts[:1]]
        if not times:
            return ""
        return datetime.fromtimestamp(min(times), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def frame(self, point: str | None, number: int | None) -> str:
        """A packet reference for people: the pcap file and Wireshark's frame number."""
        if point is None or number is None:
            return ""
        pf = next((p for p in self.view.capdir.points if point in (p.name, p.host)), None)
        return f"{pf.file.name if pf else point} frame {number}"

    def anchor(self, point: str | None, number: int | None) -> str | None:
        """The id of the ladder arrow drawn for this packet (by its frame number), if drawn."""
        if point is None or number is None:
            return None
        ref = f"{point}#{number}"
        for row in self.flows:
            if row.ladder is not None and ref in row.ladder.anchors:
                return row.ladder.anchors[ref]
        return None

    @property
    def ladders(self) -> list[FlowRow]:
        return [r for r in self.flows if r.ladder is not None]

    @property
    def folded(self) -> int:
        """Packets left off the ladders (folded bulk data)."""
        return sum(r.ladder.folded for r in self.ladders if r.ladder is not None)

    @property
    def unlaid(self) -> list[FlowRow]:
        return [r for r in self.flows if r.ladder is None]


@dataclass(frozen=True)
class ModeRow:
    mode: str
    lb_bytes: int
    request_bytes: int
    reply_bytes: int
    packets: int
    transfer_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Comparison:
    """A modes comparison in the capture set (``modes.json`` and its ``modes.svg``)."""

    rows: list[ModeRow]
    transfer_bytes: int
    requests: int
    lb_node: str
    plot: str | None  # the plot's file name, when it is there
    error: str | None = None  # modes.json is there but unreadable

    def ratio(self, row: ModeRow) -> str:
        base = next((r for r in self.rows if r.mode == "snat"), None)
        if base is None or base.lb_bytes == 0:
            return ""
        return f"{row.lb_bytes / base.lb_bytes:.2%}"


def load_comparison(directory: Path) -> Comparison | None:
    """``modes.json`` of a capture set; None when there is none, a Comparison with
    ``error`` set when it cannot be read (a report is never lost to a bad file)."""
    path = directory / COMPARISON
    if not path.is_file():
        return None
    plot = COMPARISON_PLOT if (directory / COMPARISON_PLOT).is_file() else None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [ModeRow(str(m["mode"]), int(m["lb_bytes"]), int(m["request_bytes"]),
                        int(m["reply_bytes"]),
                        int(m["request_packets"]) + int(m["reply_packets"]),
                        float(m["transfer_s"]), float(m["latency_p50_ms"]),
                        float(m["latency_p99_ms"])) for m in data["modes"]]
        return Comparison(rows, int(data["transfer_bytes"]), int(data["requests"]),
                          str(data["lb_node"]), plot)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return Comparison([], 0, 0, "", plot, error=f"{COMPARISON}: {exc}")


@dataclass(frozen=True)
class ComparedRow:
    """One comparison a both run made with this set: the other set and the summary."""

    other: str  # the other capture set's folder
    other_datapath: str
    link: str  # the other set's report.html, relative to this set
    same: bool
    lines: list[str]
    a: tuple[str, str] = ("", "")  # the comparison's A: its datapath, its folder
    b: tuple[str, str] = ("", "")

    @property
    def command(self) -> str:
        """The ``dsrlab diff`` that shows the first differing packets field by field."""
        return f"dsrlab diff {self.a[1]} {self.b[1]}"


@dataclass(frozen=True)
class ComparedWith:
    """``compared.json``: how this set compared with the other datapaths' of its run."""

    rows: list[ComparedRow]
    error: str | None = None  # compared.json is there but unreadable


def load_compared(directory: Path) -> ComparedWith | None:
    """``compared.json`` of a capture set; None without one (not a both run), ``error``
    set when it cannot be read."""
    path = directory / COMPARED
    if not path.is_file():
        return None
    here = directory.resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = []
        for c in data["comparisons"]:
            a, b = str(c["a"]), str(c["b"])
            other, what = (b, c["datapath_b"]) if Path(a) == here else (a, c["datapath_a"])
            link = os.path.relpath(Path(other) / "report.html", here)
            rows.append(ComparedRow(other, str(what), link, bool(c["same"]),
                                    [str(x) for x in c["summary"]],
                                    (str(c["datapath_a"]), a), (str(c["datapath_b"]), b)))
        return ComparedWith(rows)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return ComparedWith([], error=f"{COMPARED}: {exc}")


@dataclass(frozen=True)
class StepRow:
    kind: str
    summary: str
    ok: bool
    timed_out: bool
    seconds: float


@dataclass(frozen=True)
class Steps:
    """What the run's traffic steps did (``steps.json``), in order."""

    rows: list[StepRow]
    error: str | None = None  # steps.json is there but unreadable


def load_steps(directory: Path) -> Steps | None:
    """``steps.json`` of a capture set; None without one (a set from before steps, or
    from elsewhere), ``error`` set when it cannot be read."""
    path = directory / STEPS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Steps([StepRow(str(d["kind"]), str(d["summary"]), bool(d["ok"]),
                              bool(d.get("timed_out", False)), float(d.get("seconds", 0)))
                      for d in data])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return Steps([], error=f"{STEPS}: {exc}")


def build_model(capture_dir: Path | CaptureDir) -> ReportModel:
    view = load_view(capture_dir)
    results, error = None, None
    try:
        results = load_results(view.directory)
    except ResultsError as exc:
        error = str(exc)
    flows, stray = find_flows(view)
    checks = CheckIndex.of(results)
    verdicts = {f.id: f for f in results.flows} if results else {}
    rows: list[FlowRow] = []
    failing_open = 0
    for i, flow in enumerate(flows):
        verdict = verdicts.get(flow.id)
        failing = verdict is not None and not verdict.passed
        is_open = i < OPEN_LADDERS or (failing and failing_open < OPEN_LADDERS)
        failing_open += int(failing and is_open)
        ladder = layout_flow(flow, view, checks) if i < MAX_LADDERS or is_open else None
        rows.append(FlowRow(flow, verdict, ladder, is_open))
    in_flows: dict[str, int] = {}
    for flow in flows:
        for t in flow.trails:
            for s in t.sightings:
                in_flows[s.point.name] = in_flows.get(s.point.name, 0) + 1
    points = [PointRow(p.name, p.host, p.role, ROLE_LABEL[p.role], p.file.name, p.file.exists(),
                       len(view.packets.get(p.name, [])), in_flows.get(p.name, 0))
              for p in view.capdir.points]
    known = {f.id for f in flows}
    unknown = [f for f in verdicts.values() if f.id not in known]
    events, events_error = None, None
    try:
        events = DatapathEvents.read(view.directory)
    except CaptureError as exc:
        events_error = str(exc)
    return ReportModel(view.directory, view, results, error, points, rows, stray, unknown,
                       load_comparison(view.directory), load_steps(view.directory),
                       events, events_error, load_compared(view.directory))
