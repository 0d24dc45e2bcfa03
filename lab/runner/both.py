"""A scenario run on several datapaths (``dsrlab run --datapath both``): each
Cilium run's capture set compared hop by hop with the lab's (lab.check.capdiff).

Each run keeps its own capture set; the comparisons go into each set's
``compared.json`` and each report is written again with its "Compared with"
section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lab.check.capdiff import CaptureDiff, DiffError, diff_folders, write_compared
from lab.report import build_report
from lab.runner.scenario import ScenarioRun


@dataclass
class Compared:
    """The lab's run and each other datapath's run of one scenario, compared."""

    lab: ScenarioRun
    others: list[ScenarioRun]
    diffs: list[CaptureDiff | None] = field(default_factory=list)  # one per other run
    errors: list[str] = field(default_factory=list)  # why one could not be compared

    @property
    def agree(self) -> bool:
        return bool(self.diffs) and all(d is not None and d.same for d in self.diffs)


def compare_runs(lab: ScenarioRun, others: Sequence[ScenarioRun]) -> Compared:
    """Compare every run of ``others`` with ``lab``; write ``compared.json`` into each
    set (the lab's holds every comparison, each other set its own) and rebuild the
    reports with their "Compared with" section."""
    out = Compared(lab, list(others))
    for other in others:
        try:
            d: CaptureDiff | None = diff_folders(lab.capture_dir, other.capture_dir)
        except DiffError as exc:
            d = None
            out.errors.append(str(exc))
        out.diffs.append(d)
    made = [d for d in out.diffs if d is not None]
    if not made:
        return out
    write_compared(lab.capture_dir, made)
    for other, d in zip(others, out.diffs, strict=True):
        if d is not None:
            write_compared(other.capture_dir, [d])
    for run in (lab, *others):
        run.report = build_report(run.capture_dir)
    return out
