"""Verdicts: a kernel's groups from their JUnit XML, and the run's summary (JSON, Markdown).

A run lives in ``matrix/<run-id>/``: one folder per kernel (``host``, ``6.1``,
...) holding ``<group>.junit.xml``, ``captures/`` (the scenarios' captures and
reports) and ``verdict.json``; beside them ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from lab.matrix.kernels import MatrixError, ResolvedKernel

Outcome = Literal["pass", "fail", "skip"]


class GroupVerdict(BaseModel):
    """One test group under one kernel."""

    group: str
    outcome: Outcome
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    junit: str | None = None  # relative to the run folder
    reports: list[str] = []  # scenario reports, relative to the run folder
    reasons: list[str] = []  # why cases were skipped or failed (first lines)


class KernelVerdict(BaseModel):
    """Every group under one kernel, and how the kernel was run."""

    kernel: ResolvedKernel
    mode: Literal["direct", "vm"]
    accel: str | None = None  # "kvm" or "tcg" for a VM
    boot_seconds: float | None = None  # VM start to the guest's first command
    seconds: float  # wall time for the kernel, VM boot included
    groups: list[GroupVerdict]
    error: str | None = None  # the kernel did not run (no package, VM did not boot...)

    @property
    def outcome(self) -> Outcome:
        if self.error or any(g.outcome == "fail" for g in self.groups):
            return "fail"
        return "pass" if any(g.outcome == "pass" for g in self.groups) else "skip"


class Summary(BaseModel):
    run_id: str
    full: bool
    kernels: list[KernelVerdict]

    @property
    def ok(self) -> bool:
        return all(k.outcome != "fail" for k in self.kernels)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def read_junit(path: Path, group: str, seconds: float, root: Path) -> GroupVerdict:
    """A group's verdict from pytest's JUnit XML at ``path``; an absent or broken file
    (pytest did not get as far as writing it) is a failure."""
    rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as exc:
        return GroupVerdict(group=group, outcome="fail", seconds=seconds, junit=None,
                            reasons=[f"no JUnit XML from pytest ({exc})"])
    passed = failed = skipped = 0
    reasons: list[str] = []
    for case in tree.getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if bad is not None:
            failed += 1
            reasons.append(f"{name}: {_first_line(bad.get('message')) or 'failed'}")
        elif skip is not None:
            skipped += 1
            reasons.append(f"{name}: skipped: {_first_line(skip.get('message'))}")
        else:
            passed += 1
    outcome: Outcome = "fail" if failed else ("pass" if passed else "skip")
    if passed + failed + skipped == 0:
        reasons.append("no test collected")
    return GroupVerdict(group=group, outcome=outcome, passed=passed, failed=failed,
                        skipped=skipped, seconds=round(seconds, 2), junit=rel,
                        reasons=reasons)


def find_reports(captures: Path, root: Path) -> list[str]:
    """Scenario reports (``report.html``) under a kernel's captures, relative to ``root``."""
    if not captures.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in captures.rglob("report.html")
                  if not any(part == "latest" for part in p.relative_to(captures).parts))


def write_verdict(verdict: KernelVerdict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(verdict.model_dump_json(indent=2) + "\n")


def read_verdict(path: Path) -> KernelVerdict:
    try:
        return KernelVerdict.model_validate_json(path.read_text())
    except OSError as exc:
        raise MatrixError(f"{path}: no verdict: {exc.strerror}") from None
    except ValueError as exc:
        raise MatrixError(f"{path}: not a verdict: {exc}") from None


def rows(summary: Summary) -> list[list[str]]:
    """The verdict table: kernel, group, outcome, counts, time, report."""
    out: list[list[str]] = []
    for k in summary.kernels:
        label = f"{k.kernel.name} ({k.kernel.release})"
        if k.error:
            out.append([label, "-", "fail", "-", f"{k.seconds:.1f}", k.error])
        for g in k.groups:
            counts = f"{g.passed}/{g.failed}/{g.skipped}"
            link = ", ".join(g.reports) or (g.junit or "")
            out.append([label, g.group, g.outcome, counts, f"{g.seconds:.1f}", link])
    return out


COLUMNS = ("kernel", "group", "outcome", "pass/fail/skip", "seconds", "report")


def write_summary(summary: Summary, folder: Path) -> None:
    """``summary.json`` and ``summary.md`` in the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(summary.model_dump_json())
    data["ok"] = summary.ok
    (folder / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# dsrlab matrix {summary.run_id}{' (full)' if summary.full else ''}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows(summary):
        link = ", ".join(f"[{p}]({p})" for p in r[5].split(", ")) if r[5].endswith(
            (".html", ".xml")) else r[5]
        lines.append("| " + " | ".join([*(c.replace("|", "\\|") for c in r[:5]), link]) + " |")
    lines += ["", "| kernel | package | version | mode | boot s | total s |",
              "| --- | --- | --- | --- | --- | --- |"]
    for k in summary.kernels:
        boot = f"{k.boot_seconds:.1f}" if k.boot_seconds is not None else "-"
        mode = k.mode + (f" ({k.accel})" if k.accel else "")
        lines.append(f"| {k.kernel.name} ({k.kernel.release}) | {k.kernel.package or '-'} | "
                     f"{k.kernel.version or '-'} | {mode} | {boot} | {k.seconds:.1f} |")
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
