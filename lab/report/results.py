"""``results.json`` (the trace checker's verdicts) read back as typed records.

The report and the merged pcapng only read this file; they never run the
checker. Every field is optional: a missing or partial file gives fewer
details, never an exception (a file that is not JSON at all is reported by
:func:`load_results` as an error string instead).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = "results.json"


@dataclass(frozen=True)
class DiffRow:
    field: str
    expected: str
    got: str
    ok: bool


@dataclass(frozen=True)
class Check:
    """One verdict: an expectation at a capture point for one flow (or a whole-run check)."""

    claim: str
    name: str
    kind: str  # expect | never | count | coverage | flows
    passed: bool
    flow: str | None = None
    point: str | None = None  # capture point name, e.g. "cilium-dsr-worker/eth0"
    packet: int | None = None  # matched (or, for a failed ``never``, offending) Pkt.index
    closest: int | None = None  # nearest Pkt.index on a miss
    closest_summary: str = ""
    message: str = ""
    diff: tuple[DiffRow, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.claim}/{self.name}"

    @property
    def bad_rows(self) -> int:
        return sum(1 for d in self.diff if not d.ok)


@dataclass(frozen=True)
class ClaimVerdict:
    name: str
    title: str
    passed: bool
    checks: tuple[Check, ...] = ()
    evidence: tuple[str, ...] = ()  # free-text notes (older claim results)
    problems: tuple[str, ...] = ()

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def n_passed(self) -> int:
        return sum(1 for c in self.checks if c.passed)


@dataclass(frozen=True)
class FlowVerdict:
    id: str
    passed: bool
    bindings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Results:
    scenario: str
    run_id: str
    trace: str
    passed: bool
    flows: tuple[FlowVerdict, ...]
    claims: tuple[ClaimVerdict, ...]

    def flow(self, flow_id: str) -> FlowVerdict | None:
        return next((f for f in self.flows if f.id == flow_id), None)

    def checks(self) -> list[Check]:
        return [c for claim in self.claims for c in claim.checks]

    def failures(self) -> list[Check]:
        return [c for c in self.checks() if not c.passed]


def _str(v: Any) -> str:
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


def _diff_row(d: Mapping[str, Any]) -> DiffRow:
    return DiffRow(_str(d.get("field")), _str(d.get("expected")), _str(d.get("got")),
                   bool(d.get("ok", False)))


def _check(claim: str, c: Mapping[str, Any]) -> Check:
    return Check(
        claim=_str(c.get("claim")) or claim,
        name=_str(c.get("name")) or "?",
        kind=_str(c.get("kind")) or "expect",
        passed=bool(c.get("passed", False)),
        flow=_str(c.get("flow")) or None,
        point=_str(c.get("point")) or None,
        packet=_int(c.get("packet")),
        closest=_int(c.get("closest")),
        closest_summary=_str(c.get("closest_summary")),
        message=_str(c.get("message")),
        diff=tuple(_diff_row(_map(d)) for d in _list(c.get("diff"))),
    )


def _claim(c: Mapping[str, Any]) -> ClaimVerdict:
    name = _str(c.get("name")) or "?"
    checks = tuple(_check(name, _map(k)) for k in _list(c.get("checks")))
    problems = tuple(_str(p) for p in _list(c.get("problems")))
    default = all(k.passed for k in checks) and not problems
    return ClaimVerdict(
        name=name,
        title=_str(c.get("title")),
        passed=bool(c.get("passed", default)),
        checks=checks,
        evidence=tuple(_str(e) for e in _list(c.get("evidence"))),
        problems=problems,
    )


def _flow(f: Mapping[str, Any]) -> FlowVerdict:
    bindings = tuple((str(k), _str(v)) for k, v in _map(f.get("bindings")).items())
    return FlowVerdict(_str(f.get("id")), bool(f.get("passed", True)), bindings)


def parse_results(data: Mapping[str, Any]) -> Results:
    """Typed results from the decoded JSON (unknown keys ignored, missing ones defaulted)."""
    claims = tuple(_claim(_map(c)) for c in _list(data.get("claims")))
    default = bool(claims) and all(c.passed for c in claims)
    return Results(
        scenario=_str(data.get("scenario")),
        run_id=_str(data.get("run_id")),
        trace=_str(data.get("trace")),
        passed=bool(data.get("passed", default)),
        flows=tuple(_flow(_map(f)) for f in _list(data.get("flows"))),
        claims=claims,
    )


def load_results(capture_dir: Path) -> tuple[Results | None, str | None]:
    """``(results, None)``, ``(None, None)`` when there is no results.json, or
    ``(None, error)`` when it cannot be read."""
    path = capture_dir / RESULTS
    if not path.exists():
        return None, None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path.name}: {exc}"
    if not isinstance(data, Mapping):
        return None, f"{path.name}: expected a JSON object, got {type(data).__name__}"
    return parse_results(data), None


@dataclass
class CheckIndex:
    """Checks by the packet they point at, as ``<point name>#<Pkt.index>``."""

    matched: dict[str, list[Check]]  # the matched packet (or a failed never's offender)
    closest: dict[str, list[Check]]  # the nearest packet of a miss

    @classmethod
    def of(cls, results: Results | None) -> CheckIndex:
        idx = cls({}, {})
        for c in results.checks() if results else []:
            if c.point is None:
                continue
            if c.packet is not None:
                idx.matched.setdefault(f"{c.point}#{c.packet}", []).append(c)
            if c.closest is not None and not c.passed:
                idx.closest.setdefault(f"{c.point}#{c.closest}", []).append(c)
        return idx

    def on(self, refs: list[str]) -> tuple[list[Check], list[Check]]:
        """(matched, closest) checks on any of these packet references, de-duplicated."""
        matched: dict[str, Check] = {}
        closest: dict[str, Check] = {}
        for r in refs:
            for c in self.matched.get(r, []):
                matched.setdefault(f"{c.label}@{c.flow}", c)
            for c in self.closest.get(r, []):
                closest.setdefault(f"{c.label}@{c.flow}", c)
        return list(matched.values()), list(closest.values())
