"""Geometry of one flow's ladder: where every lifeline, arrow, label and badge goes.

The SVG itself is written by the ``ladder.svg.j2`` template from these
shapes; this module only computes positions, classes, ``data-*`` attributes
and tooltips. One *lane* is one row of arrows: a packet's hops share a
lane while they do not overlap horizontally (the SYN's client -> LB ->
backend node -> pod is one descending staircase), each following packet
starts a new lane, so time runs downwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.check.trace.results import CheckResult
from lab.report.capset import CaptureView, Sighting
from lab.report.fold import Fold, fold_trails
from lab.report.ladder import Column, Flow, Hop, Trail
from lab.report.results import CheckIndex

LEFT = 96  # the time gutter
COL_W = 250
BOX_W, BOX_H = 214, 62
TOP = 8
LANES_TOP = TOP + BOX_H + 46
SLOPE = 5  # px an arrow descends
ABOVE, BELOW, BELOW_NOTE = 36, 10, 22
SMALL = 6.0  # advance of the 10px monospace in pills
BUMP = 7


@dataclass(frozen=True)
class Tag:
    """A pill: flags, the DSR badge, a check mark."""

    x: float
    y: float
    w: float
    text: str
    cls: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    cls: str = ""


@dataclass
class Arrow:
    cls: str
    attrs: dict[str, str]
    title: str
    path: str
    head: str
    tags: list[Tag]
    texts: list[Text]


@dataclass
class Lone:
    """A packet seen on one host only (nothing to draw an arrow to)."""

    cls: str
    attrs: dict[str, str]
    title: str
    x: float
    y: float
    texts: list[Text]


@dataclass(frozen=True)
class Band:
    y: float
    h: float
    odd: bool
    label: str
    when: str


@dataclass(frozen=True)
class FoldShape:
    """The folded middle of a run of bulk packets: one band across the ladder."""

    y: float
    h: float
    fold: Fold
    when: str


FOLD_H = 34


@dataclass
class ColumnShape:
    col: Column
    x: float


@dataclass
class Ladder:
    flow: Flow
    width: float
    height: float
    columns: list[ColumnShape]
    arrows: list[Arrow] = field(default_factory=list)
    lones: list[Lone] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    folds: list[FoldShape] = field(default_factory=list)
    anchors: dict[str, str] = field(default_factory=dict)  # packet ref -> arrow id

    @property
    def folded(self) -> int:
        """Packets of the flow not drawn (folded bulk data)."""
        return sum(f.fold.packets for f in self.folds)

    @property
    def lifeline_top(self) -> float:
        return TOP + BOX_H

    def box_x(self, c: ColumnShape) -> float:
        return c.x - BOX_W / 2


def _pill(x_left: float, y: float, text: str, cls: str) -> Tag:
    return Tag(x_left, y, len(text) * SMALL + 12, text, cls)


def _check_attrs(matched: list[CheckResult], closest: list[CheckResult]) -> dict[str, str]:
    attrs = {}
    if matched:
        attrs["data-check"] = " ".join(dict.fromkeys(c.label for c in matched))
    if closest:
        attrs["data-closest"] = " ".join(dict.fromkeys(c.label for c in closest))
    return attrs


def _fmt_checks(checks: list[CheckResult], closest: list[CheckResult]) -> list[str]:
    lines = [f"check {c.label} [{c.flow or 'run'}]: {'PASS' if c.passed else 'FAIL'}"
             + (f" ({c.kind})" if c.kind != "expect" else "") for c in checks]
    lines += [f"closest packet for the FAILED check {c.label} [{c.flow or 'run'}]"
              for c in closest]
    return lines


def _where(s: Sighting) -> str:
    return f"{s.where} ({s.point.name}, {s.direction})"


def _packet_line(s: Sighting) -> str:
    p = s.pkt
    tcp = f"seq {p.seq} ack {p.ack} · " if p.seq is not None else ""
    if p.family == 6:
        return (f"{tcp}IPv6 · hop limit {p.ttl} · len {p.ip_len}"
                + (f" · payload {p.payload_len} B" if p.payload_len else ""))
    return (f"{tcp}IP id {p.ip_id} · TTL {p.ttl} · len {p.ip_len} · IHL {p.ihl}"
            + (f" · payload {p.payload_len} B" if p.payload_len else ""))


class _Painter:
    def __init__(self, flow: Flow, view: CaptureView, checks: CheckIndex) -> None:
        self.flow, self.view, self.checks = flow, view, checks
        self.xs = {c.host: LEFT + COL_W / 2 + i * COL_W for i, c in enumerate(flow.columns)}
        self.order = {c.host: i for i, c in enumerate(flow.columns)}

    def dsr_label(self, s: Sighting) -> str | None:
        svc = self.view.dsr_of(s.pkt)
        if svc is not None:
            return svc.service
        return "?" if s.pkt.has_dsr else None

    def skipped(self, hop: Hop) -> list[str]:
        a, b = self.order[hop.src], self.order[hop.dst]
        lo, hi = min(a, b), max(a, b)
        return [c.host for c in self.flow.columns[lo + 1:hi]]

    def path(self, hop: Hop, y1: float, y2: float) -> tuple[str, str, list[Text]]:
        """The line (with a jump over every lifeline it bypasses), its head, the jump notes."""
        x1, x2 = self.xs[hop.src], self.xs[hop.dst]
        step = 1 if x2 > x1 else -1

        def y_at(x: float) -> float:
            return y1 + (y2 - y1) * (x - x1) / (x2 - x1)

        d = [f"M{x1:.1f},{y1:.1f}"]
        notes = []
        for host in sorted(self.skipped(hop), key=lambda h: self.xs[h] * step):
            xc = self.xs[host]
            xa, xb = xc - step * BUMP, xc + step * BUMP
            d.append(f"L{xa:.1f},{y_at(xa):.1f}")
            d.append(f"A{BUMP},{BUMP} 0 0 {1 if step > 0 else 0} {xb:.1f},{y_at(xb):.1f}")
            notes.append(Text(xc, y_at(xc) + 15, "bypassed", "bypass"))
        d.append(f"L{x2:.1f},{y2:.1f}")
        head = (f"{x2:.1f},{y2:.1f} {x2 - step * 10:.1f},{y2 - 4.5:.1f} "
                f"{x2 - step * 10:.1f},{y2 + 4.5:.1f}")
        return " ".join(d), head, notes

    def labels(self, trail: Trail, hop: Hop, y1: float, dsr: str | None) -> tuple[
            list[Tag], list[Text]]:
        """Flags pill and DSR badge over the arrow, addresses under them, the change below;
        centred on the part of the arrow before the first lifeline it jumps."""
        x1 = self.xs[hop.src]
        skips = [self.xs[h] for h in self.skipped(hop)]
        seg_end = min(skips, key=lambda x: abs(x - x1)) if skips else self.xs[hop.dst]
        mid = (x1 + seg_end) / 2
        view = hop.view
        pill = trail.name + (f" · {view.pkt.payload_len} B" if view.pkt.payload_len else "")
        tags = [_pill(0, y1 - 33, pill, "flags")]
        if dsr is not None:
            tags.append(_pill(0, y1 - 33, f"DSR {dsr}", "dsr"))
        left = mid - (sum(t.w for t in tags) + 6 * (len(tags) - 1)) / 2
        placed = []
        for t in tags:
            placed.append(Tag(left, t.y, t.w, t.text, t.cls))
            left += t.w + 6
        texts = [Text(mid, y1 - 7, f"{view.src} → {view.dst}", "addr")]
        shown = [c for c in hop.changes() if not (dsr is not None and c == "+ DSR option")]
        outer = view.pkt.outer
        if outer is not None:  # an encapsulated hop: the outer addresses under the inner
            texts.append(Text(mid, y1 + 16, f"{outer.proto} {outer.src} → {outer.dst}",
                              "outer"))
            shown = [c for c in shown if not c.startswith("encapsulated")]
        if shown:  # (an added option is already the DSR badge)
            texts.append(Text(mid, y1 + (30 if outer is not None else 16), " · ".join(shown),
                              "change"))
        return placed, texts

    def arrow(self, trail: Trail, n: int, k: int, hop: Hop, y: float) -> Arrow:
        y1, y2 = y, y + SLOPE
        path, head, bypass_notes = self.path(hop, y1, y2)
        view = hop.view
        dsr = self.dsr_label(view)
        skips = self.skipped(hop)
        tags, texts = self.labels(trail, hop, y1, dsr)
        texts += bypass_notes
        matched, closest = self.checks.on([s.ref for s in hop.sightings])
        failed = any(not c.passed for c in matched) or bool(closest)
        if matched or closest:
            step = 1 if self.xs[hop.dst] > self.xs[hop.src] else -1
            tags.append(Tag(self.xs[hop.dst] - step * 22 - 8, y2 + 4, 16,
                            "✗" if failed else "✓", "mark fail" if failed else "mark pass"))
        kind = "reply" if trail.reply else "request"
        cls = ["arrow", kind]
        cls += ["dsr"] if dsr is not None else []
        cls += ["encap"] if view.pkt.outer is not None else []
        cls += ["failed"] if failed else ["checked"] if matched else []
        cls += ["bypass"] if skips else []
        attrs = {
            "id": f"f{self.flow.port}-p{n}-h{k}", "data-flow": self.flow.id,
            "data-packet": str(n), "data-from": hop.src, "data-to": hop.dst,
            "data-flags": view.pkt.flags or view.pkt.proto,
            "data-src": view.src, "data-dst": view.dst, "data-dir": kind,
            "data-packets": " ".join(s.ref for s in hop.sightings),
        }
        if dsr is not None:
            attrs["data-dsr"] = dsr
        if view.pkt.outer is not None:
            attrs["data-outer-src"] = view.pkt.outer.src
            attrs["data-outer-dst"] = view.pkt.outer.dst
        if hop.before.src != view.src:
            attrs["data-was-src"] = hop.before.src
        if hop.before.dst != view.dst:
            attrs["data-was-dst"] = hop.before.dst
        if skips:
            attrs["data-skips"] = " ".join(skips)
        attrs.update(_check_attrs(matched, closest))

        changes = hop.changes()
        lines = [f"{trail.name}  {hop.src} → {hop.dst}", f"{view.src} → {view.dst}"
                 + (f"   ({'; '.join(changes)})" if changes else ""), _packet_line(view)]
        if view.pkt.outer is not None:
            lines.append(f"outer:    {view.pkt.outer} (inner: {view.src} → {view.dst})")
        value = self.view.dsr_of(view.pkt)
        if value is not None:
            lines.append(value.describe().replace(" -> ", " → "))
        if hop.departure is not None:
            lines.append("left:     " + _where(hop.departure))
        if hop.arrival is not None:
            lines.append("arrived:  " + _where(hop.arrival))
        if skips:
            lines.append("bypassed: " + ", ".join(skips) + " (the packet never passed there)")
        lines += _fmt_checks(matched, closest)
        return Arrow(" ".join(cls), attrs, "\n".join(lines), path, head, tags, texts)

    def lone(self, trail: Trail, n: int, y: float) -> Lone:
        s = trail.first
        x = self.xs[s.host]
        refs = [seen.ref for seen in trail.sightings]
        matched, closest = self.checks.on(refs)
        failed = any(not c.passed for c in matched) or bool(closest)
        dsr = self.dsr_label(s)
        cls = ["lone", "reply" if trail.reply else "request"]
        if failed:
            cls.append("failed")
        attrs = {"id": f"f{self.flow.port}-p{n}", "data-flow": self.flow.id,
                 "data-packet": str(n), "data-host": s.host,
                 "data-flags": s.pkt.flags or s.pkt.proto, "data-src": s.src, "data-dst": s.dst,
                 "data-packets": " ".join(refs)}
        if dsr is not None:
            attrs["data-dsr"] = dsr
        attrs.update(_check_attrs(matched, closest))
        text = f"{trail.name} {s.src} → {s.dst} · seen only on {s.host}"
        lines = [text, _packet_line(s)] + ["seen: " + _where(seen) for seen in trail.sightings]
        lines += _fmt_checks(matched, closest)
        side = 1 if self.order[s.host] < len(self.flow.columns) - 1 else -1
        tx = x + side * 12
        return Lone(" ".join(cls), attrs, "\n".join(lines), x, y,
                    [Text(tx, y + 4, text, "addr lone-text " + ("start" if side > 0 else "end"))])


def _lanes(hops: list[Hop], xs: dict[str, float]) -> list[list[int]]:
    """Hop indexes per lane: a hop joins the current lane unless it overlaps it."""
    lanes: list[list[int]] = []
    spans: list[tuple[float, float]] = []
    for i, h in enumerate(hops):
        a, b = sorted((xs[h.src], xs[h.dst]))
        if not lanes or any(a < hi - 1 and b > lo + 1 for lo, hi in spans):
            lanes.append([])
            spans = []
        lanes[-1].append(i)
        spans.append((a, b))
    return lanes


def layout_flow(flow: Flow, view: CaptureView, checks: CheckIndex) -> Ladder:
    """Positions for every part of ``flow``'s ladder."""
    painter = _Painter(flow, view, checks)
    cols = [ColumnShape(c, painter.xs[c.host]) for c in flow.columns]
    width = LEFT + COL_W * max(len(cols), 1) + 8
    ladder = Ladder(flow, width, 0, cols)
    y = LANES_TOP
    n = 0

    def checked(trail: Trail) -> bool:
        matched, closest = checks.on([s.ref for s in trail.sightings])
        return bool(matched or closest)

    for item in fold_trails(flow.trails, checked):
        if isinstance(item, Fold):
            n += item.packets
            ladder.folds.append(FoldShape(
                y - 8, FOLD_H, item, f"+{(item.start - flow.start) * 1000:.3f} ms … "
                f"+{(item.end - flow.start) * 1000:.3f} ms"))
            y += FOLD_H
            continue
        trail = item
        n += 1
        band_top = y - 8
        if not trail.hops:
            lone = painter.lone(trail, n, y + ABOVE - 12)
            ladder.lones.append(lone)
            for s in trail.sightings:
                ladder.anchors.setdefault(s.ref, lone.attrs["id"])
            y += ABOVE + BELOW
        for lane in _lanes(trail.hops, painter.xs):
            line_y = y + ABOVE
            notes = two = False
            for k, i in enumerate(lane):
                hop = trail.hops[i]
                arrow = painter.arrow(trail, n, i + 1, hop, line_y + k * SLOPE)
                ladder.arrows.append(arrow)
                for s in hop.sightings:
                    ladder.anchors.setdefault(s.ref, arrow.attrs["id"])
                encap = hop.view.pkt.outer is not None
                notes = notes or bool(hop.changes()) or "bypass" in arrow.cls or encap
                # an encapsulated hop's outer addresses take a line of their own
                two = two or (encap and sum(1 for t in arrow.texts if t.cls != "addr") > 1)
            y = line_y + SLOPE * len(lane) + (BELOW_NOTE if notes else BELOW) + (14 if two
                                                                                 else 0)
        ms = (trail.time - flow.start) * 1000
        ladder.bands.append(Band(band_top, y - band_top, n % 2 == 1, f"#{n}", f"+{ms:.3f} ms"))
        y += 8
    ladder.height = y + 12
    return ladder
