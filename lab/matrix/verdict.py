"""Verdicts: a kernel's groups from their JUnit XML, and the run's summary (JSON, Markdown).

A run lives in ``matrix/<run-id>/``: one folder per kernel (``host``, ``6.1``,
...) holding ``junit.xml`` (one pytest run over every group, split into
groups here by test path), ``pytest.log``, ``verifier.json``, ``captures/``
(the scenarios' captures and reports) and ``verdict.json``; beside them
``summary.json``, ``summary.md`` and ``summary.html``.

Besides the lab's own datapath (the ``verifier`` row), each Cilium version of
``DSRLAB_CILIUM_SRC`` gets a row (``cilium-verifier v1.13.0``) from
``cilium-verifier.json``: the seed topology's Cilium objects under the kernel's
verifier; the instruction counts come as a table per datapath.
"""

from __future__ import annotations

import functools
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel

from lab.atomic import write_text
from lab.datapath.verifier import COMPLEXITY_LIMIT, VerifierReport, read_reports
from lab.matrix.kernels import Group, MatrixError, ResolvedKernel
from lab.matrix.phases import Phase, phase_line
from lab.safetext import escaped, for_template

Outcome = Literal["pass", "fail", "skip"]
VERIFIER_GROUP = "verifier"  # the table's row for what the kernel's verifier said
CILIUM_VERIFIER_GROUP = "cilium-verifier"  # and per Cilium version: "cilium-verifier v1.13.0"


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
    verifier: VerifierReport | None = None  # what the kernel's verifier said of the datapath
    cilium_verifiers: list[VerifierReport] = []  # and of Cilium's objects, per version
    log: str | None = None  # pytest's output, relative to the run folder
    error: str | None = None  # the kernel did not run (no package, VM did not boot...)
    phases: list[Phase] = []  # where the time went (lab.matrix.phases)

    def phase_summary(self) -> str:
        """One line: each phase's seconds, the tests split by group."""
        groups = {g.group: g.seconds for g in self.groups
                  if g.group != VERIFIER_GROUP and not g.group.startswith(CILIUM_VERIFIER_GROUP)}
        return phase_line(self.phases, groups)

    def report_for(self, group: str) -> VerifierReport | None:
        """The verifier report a ``verifier``/``cilium-verifier ...`` row shows."""
        reports = [self.verifier] if self.verifier is not None else []
        return next((r for r in [*reports, *self.cilium_verifiers]
                     if report_group(r) == group), None)

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


def group_of(classname: str, groups: list[Group]) -> str | None:
    """The group whose paths hold a JUnit test case of ``classname``
    (``tests.datapath.test_loading``, ``scenarios.seed.yaml``...)."""
    for g in groups:
        for path in g.paths:
            dotted = path.split("::")[0].removesuffix(".py").strip("/").replace("/", ".")
            if classname == dotted or classname.startswith(dotted + "."):
                return g.name
    return None


def read_junit(path: Path, groups: list[Group], root: Path) -> list[GroupVerdict]:
    """Each group's verdict from the one JUnit XML of a pytest run over all of
    them; an absent or broken file (pytest did not get as far) fails every group."""
    rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as exc:
        return [GroupVerdict(group=g.name, outcome="fail", junit=None,
                             reasons=[f"no JUnit XML from pytest ({exc})"]) for g in groups]
    tally: dict[str, GroupVerdict] = {g.name: GroupVerdict(group=g.name, outcome="skip",
                                                           junit=rel) for g in groups}
    for case in tree.getroot().iter("testcase"):
        name = group_of(case.get("classname", ""), groups)
        if name is None:
            continue
        _count(tally[name], case)
    for g in tally.values():
        g.outcome = "fail" if g.failed else ("pass" if g.passed else "skip")
        g.seconds = round(g.seconds, 2)
        if g.passed + g.failed + g.skipped == 0:
            g.reasons.append("no test collected")
    return list(tally.values())


def _count(g: GroupVerdict, case: ET.Element) -> None:
    bad = case.find("failure") if case.find("failure") is not None else case.find("error")
    skip = case.find("skipped")
    name = f"{case.get('classname', '')}::{case.get('name', '')}"
    g.seconds += float(case.get("time") or 0)
    if bad is not None:
        g.failed += 1
        g.reasons.append(f"{name}: {_first_line(bad.get('message')) or 'failed'}")
    elif skip is not None:
        g.skipped += 1
        g.reasons.append(f"{name}: skipped: {_first_line(skip.get('message'))}")
    else:
        g.passed += 1


def report_group(report: VerifierReport) -> str:
    """The row of a report: ``verifier`` (the lab's datapath) or
    ``cilium-verifier v1.13.0`` (``cilium-verifier`` for a skip without a source)."""
    if report.datapath == "lab":
        return VERIFIER_GROUP
    version = report.datapath.removeprefix("cilium").strip()
    return f"{CILIUM_VERIFIER_GROUP} {version}".strip()


def rejection_why(report: VerifierReport) -> str:
    """The verifier's own last word on a rejected program (the line before its count),
    else the report's reason."""
    skip = ("processed ", "libbpf:", "-- END PROG LOAD LOG --", "verification time",
            "stack depth", "--- ")
    for line in reversed(report.log_tail):
        text = line.strip()
        if text and not text.startswith(skip):
            return text[:200]
    return report.reason or "rejected"


def report_line(report: VerifierReport) -> str:
    """A report as its row says it: the lab's every program; Cilium's program count and
    largest program (pass), ``object/program: why`` (fail), or the reason (skip)."""
    if report.datapath == "lab":
        return report.summary()
    if report.outcome == "pass":
        counted = [p for p in report.programs if p.verified_insns is not None]
        if not counted:
            return f"{len(report.programs)} programs loaded (the kernel gives no counts)"
        top = max(counted, key=lambda p: p.verified_insns or 0)
        return (f"{len(report.programs)} programs; largest {top.program} "
                f"{top.verified_insns} insns processed")
    if report.outcome == "fail":
        count = (f" (after {report.processed_insns} insns processed)"
                 if report.processed_insns is not None else "")
        return f"{report.failed_program or 'a program'}: {rejection_why(report)}{count}"
    return report.reason or "skipped"


def read_cilium_verifiers(path: Path) -> list[VerifierReport]:
    """The Cilium reports a guest wrote (none when it wrote no file); an unreadable
    file is one failed report saying so."""
    if not path.exists():
        return []
    try:
        return read_reports(path.read_text())
    except (OSError, ValueError) as exc:
        return [VerifierReport(kernel="", datapath="cilium", outcome="fail",
                               reason=f"{path.name}: unreadable ({_first_line(str(exc))})")]


def verifier_group(report: VerifierReport) -> GroupVerdict:
    """The verifier's word on a datapath as a row of the table."""
    reasons = [report.reason] if report.reason else []
    if report.failed_program or report.processed_insns is not None:
        reasons.append(f"{report.failed_program or 'a program'}: rejected after "
                       f"{report.processed_insns} insns processed")
    reasons += report.log_tail
    return GroupVerdict(group=report_group(report), outcome=report.outcome,
                        passed=len(report.programs), failed=int(report.outcome == "fail"),
                        skipped=int(report.outcome == "skip"), reasons=reasons)


def find_reports(captures: Path, root: Path) -> list[str]:
    """Scenario reports (``report.html``) under a kernel's captures, relative to ``root``."""
    if not captures.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in captures.rglob("report.html")
                  if not any(part == "latest" for part in p.relative_to(captures).parts))


def write_verdict(verdict: KernelVerdict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, verdict.model_dump_json(indent=2) + "\n")


def read_verdict(path: Path) -> KernelVerdict:
    try:
        return KernelVerdict.model_validate_json(path.read_text())
    except OSError as exc:
        raise MatrixError(f"{path}: no verdict: {exc.strerror}") from None
    except ValueError as exc:
        raise MatrixError(f"{path}: not a verdict: {exc}") from None


def rows(summary: Summary) -> list[list[str]]:
    """The verdict table: kernel, group, outcome, counts, time, and a link to what
    shows it (the scenarios' reports, the JUnit XML) or what the verifier said."""
    out: list[list[str]] = []
    for k in summary.kernels:
        label = f"{k.kernel.name} ({k.kernel.release})"
        if k.error:
            out.append([label, "-", "fail", "-", f"{k.seconds:.1f}", k.error])
        for g in k.groups:
            counts = f"{g.passed}/{g.failed}/{g.skipped}"
            report = k.report_for(g.group)
            if report is not None:
                link = report_line(report)
            elif g.outcome == "skip" and g.reasons:
                link = g.reasons[0]
            else:
                link = ", ".join(g.reports) or (g.junit or "")
            out.append([label, g.group, g.outcome, counts, f"{g.seconds:.1f}", link])
    return out


def _reports_of(k: KernelVerdict, datapath: str) -> VerifierReport | None:
    return next((r for r in ([k.verifier] if k.verifier else []) + k.cilium_verifiers
                 if r.datapath == datapath), None)


def verifier_table(summary: Summary, datapath: str = "lab",
                   ) -> tuple[list[str], list[list[str]]]:
    """Instructions the verifier processed for one datapath's programs (``lab``,
    ``cilium v1.13.0``...), a row per program, a column per kernel ("-": not
    loaded there; "?": the kernel does not report it)."""
    reports = [(k, r) for k in summary.kernels if (r := _reports_of(k, datapath)) is not None]
    programs: list[str] = []
    for _k, r in reports:
        programs += [p.program for p in r.programs if p.program not in programs]
    table = []
    for prog in programs:
        row = [prog]
        for _k, r in reports:
            found = [p for p in r.programs if p.program == prog]
            row.append("-" if not found else str(found[0].verified_insns or "?"))
        table.append(row)
    return ["program", *(f"{k.kernel.name} ({k.kernel.release})" for k, _r in reports)], table


def verifier_tables(summary: Summary) -> list[tuple[str, list[str], list[list[str]]]]:
    """A :func:`verifier_table` per datapath with programs: the lab's, then each Cilium
    version's, as (datapath, head, rows)."""
    datapaths = ["lab"]
    for k in summary.kernels:
        datapaths += [r.datapath for r in k.cilium_verifiers if r.datapath not in datapaths]
    out = []
    for d in datapaths:
        head, table = verifier_table(summary, d)
        if table:
            out.append((d, head, table))
    return out


def table_title(datapath: str) -> str:
    whose = "" if datapath == "lab" else f", {datapath.replace('cilium', 'Cilium', 1)}'s programs"
    return f"Instructions the verifier processed{whose} (limit {COMPLEXITY_LIMIT:,})"


COLUMNS = ("kernel", "group", "outcome", "pass/fail/skip", "seconds", "report")


def write_summary(summary: Summary, folder: Path) -> None:
    """``summary.json``, ``summary.md`` and ``summary.html`` in the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(summary.model_dump_json())
    data["ok"] = summary.ok
    write_text(folder / "summary.json", json.dumps(data, indent=2) + "\n")
    write_text(folder / "summary.md", summary_markdown(summary))
    write_text(folder / "summary.html", summary_html(summary))


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")


def summary_markdown(summary: Summary) -> str:
    lines = [f"# dsrlab matrix {summary.run_id}{' (full)' if summary.full else ''}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows(summary):
        link = ", ".join(f"[{p}]({p})" for p in r[5].split(", ")) if r[5].endswith(
            (".html", ".xml")) else _md(r[5])
        lines.append("| " + " | ".join([*(_md(c) for c in r[:5]), link]) + " |")
    for datapath, head, table in verifier_tables(summary):
        lines += ["", f"{table_title(datapath)}:", "",
                  "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in table]
    lines += ["", "| kernel | package | version | mode | boot s | total s | phases |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for k in summary.kernels:
        boot = f"{k.boot_seconds:.1f}" if k.boot_seconds is not None else "-"
        mode = k.mode + (f" ({k.accel})" if k.accel else "")
        lines.append(f"| {k.kernel.name} ({k.kernel.release}) | {k.kernel.package or '-'} | "
                     f"{k.kernel.version or '-'} | {mode} | {boot} | {k.seconds:.1f} | "
                     f"{_md(k.phase_summary()) or '-'} |")
    # a test's message or a package name from apt: control characters escaped
    return escaped("\n".join(lines), keep="\n") + "\n"


@functools.cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("lab.matrix", "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html.j2",)),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       finalize=for_template)


def summary_html(summary: Summary) -> str:
    """The verdict table as a page: a row per kernel and group, coloured by outcome,
    linking each scenario's report and each JUnit XML (paths relative to the run folder)."""
    tables = [{"id": "verifier" if d == "lab" else "verifier-" + d.replace(" ", "-"),
               "title": table_title(d), "head": head, "rows": table}
              for d, head, table in verifier_tables(summary)]
    return _environment().get_template("summary.html.j2").render(
        s=summary, columns=COLUMNS, rows=rows(summary), verifier_tables=tables)
