"""``results.json``: the trace checker's verdicts, written and read back.

The checker builds a :class:`TraceResult` and :meth:`TraceResult.write`
saves it; the report and the merged pcapng read it back with
:func:`load_results` into the same records, never running the checker.
Reading is tolerant: every field is optional, so an older or partial file
gives fewer details, never an exception (only a file that is not a JSON
object raises :class:`ResultsError`). The verdicts a file records are kept
as recorded; one it lacks is derived: a claim passes when none of its
checks failed and it lists no problem, the run when it has claims and all
of them pass. Claims of the older format (free-text notes instead of
checks) keep their notes as ``evidence`` and ``problems``.

Packets are named by Wireshark's frame numbers (1-based, every frame of the
point's pcap counted): the file says so with ``"packet_numbers": "frame"``.
A file without it numbered them from 0; reading it adds 1 (and turns its
``#6 tcp ...`` summaries into ``frame 7: tcp ...``), so every reader shows
the numbers Wireshark shows.

``datapath`` says which datapath made the capture set (the manifest's
``datapath`` part: ``name`` lab or cilium, Cilium's ``version``, ``commit`` and
``source_sha256``); a file without it reads as ``{}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.atomic import write_text
from lab.capture.layout import RESULTS
from lab.errors import LabError

PACKET_NUMBERS = "frame"  # results.json's packet and closest: Wireshark's frame numbers


class ResultsError(LabError, ValueError):
    """A results.json that cannot be read; the message names the file."""


@dataclass(frozen=True)
class FieldDiff:
    field: str
    expected: str
    got: str
    ok: bool


def field_table(rows: Sequence[FieldDiff]) -> list[str]:
    """The rows as aligned text lines, a mismatch marked ✗ (a trace failure's table,
    and ``dsrlab diff``'s)."""
    if not rows:
        return []
    w = max(len(r.field) for r in rows)
    we = max(len(r.expected) for r in rows)
    return [f"  {'  ' if r.ok else '✗ '}{r.field:<{w}}  expected {r.expected:<{we}}  "
            f"got {r.got}" for r in rows]


@dataclass
class CheckResult:
    """One verdict: an expectation at a capture point for one flow (or a whole-run check)."""

    claim: str
    flow: str | None
    point: str | None  # capture point name, e.g. "cilium-dsr-worker/eth0"
    name: str
    kind: str  # expect | count | never | flows | coverage | capture
    passed: bool
    message: str = ""
    packet: int | None = None  # matched (or offending) packet: its frame number (Wireshark's)
    closest: int | None = None  # nearest packet on a miss: its frame number
    closest_summary: str = ""
    diff: list[FieldDiff] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.claim}/{self.name}"

    def describe(self) -> str:
        """The failure as text: what, where, the closest packet and the field table."""
        where = f" at {self.point}" if self.point else ""
        flow = f", flow {self.flow}" if self.flow else ""
        lines = [f"{self.label}{where}{flow}: {self.message}"]
        if self.closest_summary:
            lines.append(f"  closest packet: {self.closest_summary}")
        lines += field_table(self.diff)
        return "\n".join(lines)


@dataclass
class ClaimVerdict:
    name: str
    title: str
    checks: list[CheckResult] = field(default_factory=list)
    evidence: tuple[str, ...] = ()  # free-text notes of an older results.json
    problems: tuple[str, ...] = ()
    recorded: bool | None = None  # the verdict a results.json read back gives

    @property
    def passed(self) -> bool:
        if self.recorded is not None:
            return self.recorded
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def n_passed(self) -> int:
        return sum(1 for c in self.checks if c.passed)


@dataclass
class FlowInfo:
    id: str
    bindings: dict[str, Any]
    passed: bool = True


@dataclass
class TraceResult:
    scenario: str
    run_id: str
    trace: str
    flows: tuple[FlowInfo, ...]
    claims: tuple[ClaimVerdict, ...]
    recorded: bool | None = None  # the verdict a results.json read back gives
    # why connections broke, one sentence each (lab.check.diagnose), set by the runner
    diagnoses: tuple[str, ...] = ()
    # which datapath made the capture set: the manifest's ``datapath`` (name: lab or
    # cilium; version, commit, source_sha256); {} when the file did not say
    datapath: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        if self.recorded is not None:
            return self.recorded
        return bool(self.claims) and all(c.passed for c in self.claims)

    def checks(self) -> list[CheckResult]:
        return [c for claim in self.claims for c in claim.checks]

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks() if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "run_id": self.run_id,
            "trace": self.trace,
            "packet_numbers": PACKET_NUMBERS,
            "passed": self.passed,
            "flows": [asdict(f) for f in self.flows],
            "diagnoses": list(self.diagnoses),
            "datapath": dict(self.datapath),
            "claims": [{"name": c.name, "title": c.title, "passed": c.passed,
                        "checks": [{**asdict(k), "label": k.label} for k in c.checks]}
                       for c in self.claims],
        }

    def write(self, directory: Path) -> Path:
        """Write ``results.json`` whole: a temporary file renamed over it (a capture
        set is complete once this file exists, so it must never be half there)."""
        path = directory / RESULTS
        return write_text(path, json.dumps(self.as_dict(), indent=2, default=str) + "\n")

    def summary(self) -> str:
        lines = []
        for c in self.claims:
            lines.append(f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.title}")
            lines += ["    " + f.describe().replace("\n", "\n    ") for f in c.failures[:5]]
            if len(c.failures) > 5:
                lines.append(f"    ... and {len(c.failures) - 5} more failures")
        return "\n".join(lines)


def as_text(v: Any) -> str:
    """A JSON value as text: strings as they are, ``null`` empty, objects as JSON."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


_OLD_SUMMARY = re.compile(r"(^|: )#(\d+) ")


def _from_zero(n: int | None) -> int | None:
    return None if n is None else n + 1


def _old_summary(text: str) -> str:
    """``#6 tcp ...`` (an index from 0) as ``frame 7: tcp ...``."""
    return _OLD_SUMMARY.sub(lambda m: f"{m[1]}frame {int(m[2]) + 1}: ", text, count=1)


def _check(claim: str, c: Mapping[str, Any], from_zero: bool = False) -> CheckResult:
    if from_zero:  # an older file: indexes from 0
        return replace(_check(claim, c), packet=_from_zero(_int(c.get("packet"))),
                       closest=_from_zero(_int(c.get("closest"))),
                       closest_summary=_old_summary(as_text(c.get("closest_summary"))),
                       message=_old_summary(as_text(c.get("message"))))
    return CheckResult(
        claim=as_text(c.get("claim")) or claim,
        flow=as_text(c.get("flow")) or None,
        point=as_text(c.get("point")) or None,
        name=as_text(c.get("name")) or "?",
        kind=as_text(c.get("kind")) or "expect",
        passed=bool(c.get("passed", False)),
        message=as_text(c.get("message")),
        packet=_int(c.get("packet")),
        closest=_int(c.get("closest")),
        closest_summary=as_text(c.get("closest_summary")),
        diff=[FieldDiff(as_text(d.get("field")), as_text(d.get("expected")),
                        as_text(d.get("got")), bool(d.get("ok", False)))
              for d in map(_map, _list(c.get("diff")))],
    )


def _claim(c: Mapping[str, Any], from_zero: bool = False) -> ClaimVerdict:
    name = as_text(c.get("name")) or "?"
    checks = [_check(name, _map(k), from_zero) for k in _list(c.get("checks"))]
    problems = tuple(as_text(p) for p in _list(c.get("problems")))
    derived = all(k.passed for k in checks) and not problems
    return ClaimVerdict(name, as_text(c.get("title")), checks,
                        evidence=tuple(as_text(e) for e in _list(c.get("evidence"))),
                        problems=problems, recorded=bool(c.get("passed", derived)))


def _flow(f: Mapping[str, Any]) -> FlowInfo:
    return FlowInfo(as_text(f.get("id")), {str(k): v for k, v in _map(f.get("bindings")).items()},
                    bool(f.get("passed", True)))


def parse_results(data: Mapping[str, Any]) -> TraceResult:
    """The decoded JSON as a result (unknown keys ignored, missing ones defaulted)."""
    from_zero = data.get("packet_numbers") != PACKET_NUMBERS
    claims = tuple(_claim(_map(c), from_zero) for c in _list(data.get("claims")))
    derived = bool(claims) and all(c.passed for c in claims)
    return TraceResult(
        scenario=as_text(data.get("scenario")),
        run_id=as_text(data.get("run_id")),
        trace=as_text(data.get("trace")),
        flows=tuple(_flow(_map(f)) for f in _list(data.get("flows"))),
        claims=claims,
        recorded=bool(data.get("passed", derived)),
        diagnoses=tuple(as_text(d) for d in _list(data.get("diagnoses"))),
        datapath={str(k): as_text(v) for k, v in _map(data.get("datapath")).items()},
    )


def load_results(directory: Path) -> TraceResult | None:
    """The ``results.json`` of a capture directory; None when there is none."""
    path = directory / RESULTS
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path.name}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ResultsError(f"{path.name}: expected a JSON object, got {type(data).__name__}")
    return parse_results(data)
