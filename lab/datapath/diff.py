"""The lab's datapath and Cilium's on the same frames: ``dsrlab datapath diff``.

Every frame of a pcap goes through the lab's entry programs
(:class:`~lab.datapath.runner.DatapathRunner`) and, in a second pass,
through each Cilium source's (:class:`~lab.datapath.cilium.runner.CiliumRunner`),
both configured from one :class:`~lab.datapath.runner.RunConfig` (role,
service, backends, MTU, fragment tracking); maps persist across the frames
of one pass as in ``datapath run``. :func:`compare` sorts each frame's pair
of results into a :data:`Kind`:

``unchanged``       both let it through untouched (same verdict)
``equal``           both changed it the same way (same bytes, same verdict)
``accepted``        both let it through and every difference is an accepted one
                    (``--ignore-field``, or a :data:`KNOWN_DIFFERENCES` entry for
                    this Cilium version and role when known ones are accepted)
``different``       both let it through, differently
``dropped_by_lab``  the lab's datapath dropped it, Cilium let it through
``dropped_by_cilium`` the other way round
``dropped_by_both`` neither let it through

("Let through": any verdict that leaves a frame, ``ok``, ``redirect``...;
dropped: ``drop`` or ``rejected``, a frame the kernel refused to test-run.)
A verdict that differs between two frames let through (``redirect`` against
``ok``) is a ``[verdict]`` field difference.

Cilium picks among several backends at random, so for ``lb`` the run must
have one backend (:func:`check_comparable`): the outputs are then comparable.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.datapath.cilium.runner import CiliumRunner
from lab.datapath.cilium.source import CiliumSource, CiliumVersion
from lab.datapath.errors import DatapathError
from lab.datapath.runner import DatapathRunner, FrameRunner, PacketResult, RunConfig
from lab.wire.fielddiff import FieldDiff, diff_text, field_diffs
from lab.wire.pcapio import Frame, PcapWriter

Kind = Literal["unchanged", "equal", "accepted", "different", "dropped_by_lab",
               "dropped_by_cilium", "dropped_by_both"]
KINDS: tuple[Kind, ...] = ("unchanged", "equal", "accepted", "different", "dropped_by_lab",
                           "dropped_by_cilium", "dropped_by_both")
AGREE: frozenset[Kind] = frozenset({"unchanged", "equal", "accepted", "dropped_by_both"})


@dataclass(frozen=True)
class KnownDifference:
    """A documented way Cilium's output differs from the lab's: ``field`` (as
    :meth:`FieldDiff.matches` reads it) on Cilium versions in ``[since, until)``
    (``None``: unbounded) for role ``program``, and why."""

    field: str
    program: str
    why: str
    since: tuple[int, int] | None = None
    until: tuple[int, int] | None = None

    def applies(self, version: CiliumVersion, program: str) -> bool:
        return (program == self.program
                and (self.since is None or version.line >= self.since)
                and (self.until is None or version.line < self.until))

    def describe(self) -> str:
        since = f">={self.since[0]}.{self.since[1]}" if self.since else ""
        until = f"<{self.until[0]}.{self.until[1]}" if self.until else ""
        return f"{self.field} on Cilium {','.join(x for x in (since, until) if x)} " \
               f"({self.program}): {self.why}"


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        "[IP].ttl", "lb", until=(1, 16),
        why="Cilium 1.13's DSR forward (tail_nodeport_ipv4_dsr, bpf/lib/nodeport.h) "
            "rewrites the MACs and redirects without ipv4_l3(), so the TTL is not "
            "lowered; 1.16 redirects through fib_redirect_v4() (bpf/lib/fib.h), which "
            "lowers it, as the lab's datapath does"),
    KnownDifference(
        "[verdict]", "backend",
        why="on a backend's node the lab's dsr_from_netdev hands a frame for a local pod "
            "to the stack (ok), which delivers it; Cilium's chain (cil_from_netdev, then "
            "cil_from_host) delivers it itself (redirect to the pod's lxc)"),
    KnownDifference(
        "[Ether]", "backend",
        why="the same delivery: Cilium writes the pod's and its lxc's MACs, the lab's "
            "datapath leaves the MACs to the stack; on the reply Cilium's chain ends after "
            "cil_to_netdev with the pod's MACs, the lab's at dsr_to_netdev"),
    KnownDifference(
        "[IP].ttl", "backend",
        why="Cilium forwards between the pod and eth0 at L3 (ipv4_l3() lowers the TTL, "
            "once each way in this chain); the lab's datapath leaves that hop to the "
            "kernel, which lowers it after the program"),
    KnownDifference(
        "[IPv6].hlim", "lb",
        why="Cilium's IPv6 DSR forward (tail_nodeport_ipv6_dsr, bpf/lib/nodeport.h) never "
            "calls ipv6_l3(): 1.13 rewrites the MACs after its fib_lookup, 1.16 redirects "
            "through fib_redirect() with its own FIB parameters (not fib_redirect_v6), so "
            "the hop limit is kept; the lab's datapath lowers it by one as a router does "
            "(as both lower the IPv4 TTL on 1.16)"),
    KnownDifference(
        "[IPv6].hlim", "backend",
        why="as the IPv4 TTL: Cilium forwards between the pod and eth0 at L3 (ipv6_l3() "
            "lowers the hop limit); the lab's datapath leaves that hop to the kernel"),
    KnownDifference(
        "[IPv6].fl", "backend", until=(1, 16),
        why="Cilium 1.13's bpf_lxc (handle_ipv6_from_lxc, pass_to_stack) writes the "
            "pod's security identity into the flow label of what the pod sends "
            "(ipv6_store_flowlabel(ctx, ETH_HLEN, SECLABEL_NB)); 1.16's bpf_lxc.c has no "
            "such call (1.14 and 1.15 not checked); the lab's datapath leaves the flow "
            "label as the pod wrote it"),
)


def known_differences(version: CiliumVersion, program: str) -> list[KnownDifference]:
    """The documented differences that apply to this Cilium version and role."""
    return [k for k in KNOWN_DIFFERENCES if k.applies(version, program)]


@dataclass(frozen=True)
class Accepted:
    """What a comparison accepts: fields by name (``--ignore-field``) and known
    differences (those of :data:`KNOWN_DIFFERENCES` that apply)."""

    fields: tuple[str, ...] = ()
    known: tuple[KnownDifference, ...] = ()

    def why(self, d: FieldDiff) -> str | None:
        """Why ``d`` is accepted (``ignored``, ``known``, ``follows``), else None."""
        if d.follows:
            return "follows"
        if any(d.matches(name) for name in self.fields):
            return "ignored"
        if any(d.matches(k.field) for k in self.known):
            return "known"
        return None


@dataclass(frozen=True)
class PacketDiff:
    """One frame on both datapaths: its kind, both results, the differing fields
    with why each is accepted (None: it is not)."""

    index: int
    kind: Kind
    lab: PacketResult
    cilium: PacketResult
    fields: tuple[tuple[FieldDiff, str | None], ...] = ()

    @property
    def frame(self) -> int:
        return self.index + 1

    def field_text(self) -> str:
        parts = []
        for d, why in self.fields:
            text = diff_text(d, "lab", "cilium")
            if why not in (None, "follows"):
                text += f" ({why})"
            parts.append(text)
        return "; ".join(parts)

    def to_json(self, version: str) -> dict[str, object]:
        def side(r: PacketResult) -> dict[str, object]:
            return {"program": r.program, "verdict": r.verdict, "length": r.length,
                    "reason": r.reason}

        return {"frame": self.frame, "index": self.index, "cilium_version": version,
                "kind": self.kind, "lab": side(self.lab), "cilium": side(self.cilium),
                "fields": [{"field": d.field, "lab": d.a, "cilium": d.b,
                            "accepted": why} for d, why in self.fields]}


def _through(r: PacketResult) -> bool:
    return r.emitted and r.data is not None


def compare(index: int, lab: PacketResult, cilium: PacketResult,
            accepted: Accepted | None = None) -> PacketDiff:
    """The kind of this frame's pair of results (see the module doc)."""
    accepted = accepted or Accepted()
    lab_through, cil_through = _through(lab), _through(cilium)
    if not lab_through or not cil_through:
        kind: Kind = "dropped_by_both" if not (lab_through or cil_through) else \
            "dropped_by_lab" if cil_through else "dropped_by_cilium"
        return PacketDiff(index, kind, lab, cilium)
    assert lab.data is not None
    assert cilium.data is not None
    diffs = field_diffs(lab.data, cilium.data)
    if lab.verdict != cilium.verdict:
        diffs.insert(0, FieldDiff("[verdict]", lab.verdict, cilium.verdict))
    if not diffs:
        kind = "unchanged" if lab.data == lab.data_in else "equal"
        return PacketDiff(index, kind, lab, cilium)
    marked = tuple((d, accepted.why(d)) for d in diffs)
    kind = "accepted" if all(why is not None for _, why in marked) else "different"
    return PacketDiff(index, kind, lab, cilium, marked)


@dataclass
class DiffSummary:
    """Totals of one Cilium source against the lab's datapath."""

    source: CiliumSource
    packets: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    fields: Counter[str] = field(default_factory=Counter)  # differing fields, not accepted
    accepted_fields: Counter[str] = field(default_factory=Counter)  # accepted ones (why)
    drop_reasons: Counter[str] = field(default_factory=Counter)  # "lab:x" / "cilium:y"
    known: tuple[KnownDifference, ...] = ()
    lab_seconds: float = 0.0  # each datapath's pass over the frames, set-up included
    cilium_seconds: float = 0.0

    def add(self, d: PacketDiff) -> None:
        self.packets += 1
        self.kinds[d.kind] += 1
        for f, why in d.fields:
            if why is None:
                self.fields[f.field] += 1
            elif why != "follows":
                self.accepted_fields[f"{f.field} ({why})"] += 1
        if d.kind == "dropped_by_lab":
            self.drop_reasons[f"lab:{d.lab.reason or d.lab.verdict}"] += 1
        elif d.kind == "dropped_by_cilium":
            self.drop_reasons[f"cilium:{d.cilium.reason or d.cilium.verdict}"] += 1

    @property
    def disagreements(self) -> int:
        return sum(n for k, n in self.kinds.items() if k not in AGREE)

    def text(self) -> str:
        k = self.kinds
        line = (f"{self.source.describe()}: {self.packets} packets: "
                f"{k['equal'] + k['unchanged']} equal ({k['unchanged']} passed unchanged by "
                f"both), {k['different']} different, {k['dropped_by_lab']} dropped by the lab "
                f"only, {k['dropped_by_cilium']} dropped by Cilium only, "
                f"{k['dropped_by_both']} dropped by both")
        if k["accepted"]:
            line += f"; {k['accepted']} accepted"
        if self.accepted_fields:
            line += "; accepted differences: " + ", ".join(
                f"{f} {n}" for f, n in self.accepted_fields.most_common())
        if self.fields:
            line += "; differing fields: " + ", ".join(
                f"{f} {n}" for f, n in self.fields.most_common())
        if self.drop_reasons:
            line += "; drops by one only: " + ", ".join(
                f"{r} {n}" for r, n in self.drop_reasons.most_common())
        return line

    def to_json(self) -> dict[str, object]:
        return {"summary": True, "cilium_version": str(self.source.version),
                "cilium_source": str(self.source.path), "packets": self.packets,
                "kinds": {kind: self.kinds[kind] for kind in KINDS},
                "fields": dict(self.fields), "accepted_fields": dict(self.accepted_fields),
                "drops_by_one_only": dict(self.drop_reasons),
                "known_differences": [k.describe() for k in self.known],
                "lab_seconds": round(self.lab_seconds, 3),
                "cilium_seconds": round(self.cilium_seconds, 3)}


def check_comparable(config: RunConfig) -> None:
    """Refuse a run whose outputs could differ by chance: ``lb`` with several
    backends (Cilium picks one at random), a seed or repeats (the lab's only)."""
    if config.program == "lb" and len(config.backends) > 1:
        raise DatapathError("Cilium picks among several backends at random: give one "
                            "--backend so both datapaths send to the same one")
    if config.seed is not None or config.repeat != 1:
        raise DatapathError("a diff runs each frame once, backends unseeded")


def run_all(runner: FrameRunner, frames: Sequence[bytes]) -> list[PacketResult]:
    """Every frame through ``runner`` (set up and torn down here), in order."""
    with runner, runner.inside():
        return [runner.run(data, index) for index, data in enumerate(frames)]


def diff_frames(
    config: RunConfig,
    frames: Sequence[Frame],
    sources: Iterable[CiliumSource],
    *,
    ignore: Sequence[str] = (),
    accept_known: bool = False,
    on_packet: Callable[[CiliumSource, PacketDiff], None] | None = None,
    output_dir: Path | None = None,
    input_path: Path | None = None,
    lab_runner: Callable[[RunConfig], FrameRunner] | None = None,
) -> list[DiffSummary]:
    """Each of ``frames`` through the lab's datapath, then through each source's
    Cilium; a summary per source (``on_packet`` sees every :class:`PacketDiff`).
    ``output_dir``: each datapath's output frames in ``lab.pcap`` and
    ``cilium-<version>.pcap`` there (written whole or not at all; never over
    ``input_path``)."""
    check_comparable(config)
    data = [f.data for f in frames]
    start = time.monotonic()
    lab = run_all((lab_runner or DatapathRunner)(config), data)
    lab_seconds = time.monotonic() - start
    if output_dir is not None:
        _write(output_dir / "lab.pcap", frames, lab, input_path)
    out = []
    for source in sources:
        start = time.monotonic()
        cilium = run_all(CiliumRunner(config, source), data)
        cilium_seconds = time.monotonic() - start
        if output_dir is not None:
            _write(output_dir / f"cilium-{source.version}.pcap", frames, cilium,
                   input_path)
        known = tuple(known_differences(source.version, config.program)) if accept_known \
            else ()
        accepted = Accepted(tuple(ignore), known)
        summary = DiffSummary(source, known=known, lab_seconds=lab_seconds,
                              cilium_seconds=cilium_seconds)
        for index, (a, b) in enumerate(zip(lab, cilium, strict=True)):
            d = compare(index, a, b, accepted)
            summary.add(d)
            if on_packet is not None:
                on_packet(source, d)
        out.append(summary)
    return out


def _write(path: Path, frames: Sequence[Frame], results: Sequence[PacketResult],
           input_path: Path | None) -> None:
    with PcapWriter(path, inputs=[input_path] if input_path else []) as w:
        for f, r in zip(frames, results, strict=True):
            if _through(r) and r.data is not None:
                w.write(r.data, f.ts_ns)
