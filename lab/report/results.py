"""The checks of ``results.json`` by the packet they point at, for the ladders.

The results themselves are :mod:`lab.check.trace.results`' records, read back
with its :func:`~lab.check.trace.results.load_results`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.check.trace.results import CheckResult, TraceResult


@dataclass
class CheckIndex:
    """Checks by the packet they point at, as ``<point name>#<frame number>``."""

    matched: dict[str, list[CheckResult]]  # the matched packet (or a failed never's offender)
    closest: dict[str, list[CheckResult]]  # the nearest packet of a miss

    @classmethod
    def of(cls, results: TraceResult | None) -> CheckIndex:
        idx = cls({}, {})
        for c in results.checks() if results else []:
            if c.point is None:
                continue
            if c.packet is not None:
                idx.matched.setdefault(f"{c.point}#{c.packet}", []).append(c)
            if c.closest is not None and not c.passed:
                idx.closest.setdefault(f"{c.point}#{c.closest}", []).append(c)
        return idx

    def on(self, refs: list[str]) -> tuple[list[CheckResult], list[CheckResult]]:
        """(matched, closest) checks on any of these packet references, de-duplicated."""
        matched: dict[str, CheckResult] = {}
        closest: dict[str, CheckResult] = {}
        for r in refs:
            for c in self.matched.get(r, []):
                matched.setdefault(f"{c.label}@{c.flow}", c)
            for c in self.closest.get(r, []):
                closest.setdefault(f"{c.label}@{c.flow}", c)
        return list(matched.values()), list(closest.values())
