"""``dsrlab run --datapath both``: each scenario on the lab's datapath and on each
Cilium source's, every Cilium run's captures compared hop by hop with the lab's
(lab.runner.both); a verdict column per datapath and one saying whether they agree."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lab.cli.output import console, fail, one_line_errors, status, table
from lab.cli.verdicts import run_verdict
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.env.netns.datapath import NodeDatapaths
    from lab.runner.both import Compared
    from lab.runner.scenario import ScenarioRun


@dataclass(frozen=True)
class Column:
    """One datapath of a both run: its column's name and the recipe its labs run."""

    name: str  # "lab", "cilium v1.16.0"
    recipe: NodeDatapaths


def datapath_columns(given: list[Path] | None) -> list[Column]:
    """The lab's datapath, then one column per Cilium source: each ``--cilium-src``
    (a folder of tarballs gives each of them), else every source $DSRLAB_CILIUM_SRC
    names; one error line, before any lab, when there is none."""
    from lab.datapath.cilium.source import ENV_VAR, discover
    from lab.env.netns.cilium import CiliumDatapaths
    from lab.env.netns.datapath import LabDatapaths

    where: list[Path | str] = list(given or [])
    if not where:
        env = os.environ.get(ENV_VAR)
        if not env:
            fail(f"--datapath both needs Cilium sources: --cilium-src PATH (once per "
                 f"version) or {ENV_VAR}", code=2)
        where = [env]
    with one_line_errors(code=2):
        sources = [s for w in where for s in discover(w)]
    cols = [Column("lab", LabDatapaths())]
    seen: set[str] = set()
    for s in sources:
        name = f"cilium {s.version}"
        if name in seen:
            fail(f"{s.path}: Cilium {s.version} is given twice", code=2)
        seen.add(name)
        cols.append(Column(name, CiliumDatapaths(s)))
    return cols


@dataclass
class _Row:
    scenario: str
    cells: list[str]  # one per column: pass, FAIL, error, skipped
    agree: str = "-"
    captures: str = ""
    why: str = ""
    bad: bool = False  # a run failed or a pair disagrees


def _agree_cell(cmp: Compared, cols: list[Column]) -> str:
    """``yes``, or per Cilium column where it differs: ``v1.13.0: client, lb-node``."""
    if cmp.agree:
        return "yes"
    parts = []
    for col, d in zip(cols[1:], cmp.diffs, strict=False):
        label = col.name.removeprefix("cilium ")
        if d is None:
            parts.append(f"{label}: not compared")
        elif not d.same:
            where = [r.role for r in d.roles if not r.same]
            if not d.flows_same:
                where.insert(0, "flows")
            parts.append(f"{label}: {', '.join(where)}")
    return "no (" + "; ".join(parts) + ")"


def run_both(paths: list[Path], captures: Path, cols: list[Column], *,
             detailed: bool) -> None:
    """Run each scenario of ``paths`` on every column's datapath, compare, print a line
    per scenario (and with ``detailed``, each run and each comparison's lines), the
    table, the verdict; exit 1 if a run failed or a pair disagrees."""
    from rich.text import Text

    from lab.capture.layout import check_captures
    from lab.env.faults import FaultUnavailable
    from lab.env.netns import NetnsBackend
    from lab.env.netns.choice import refusal
    from lab.model.scenario import load_scenario
    from lab.runner.both import compare_runs
    from lab.runner.scenario import run_scenario

    with one_line_errors():
        check_captures(captures)
    rows: list[_Row] = []
    try:
        with status("starting") as progress:
            for i, path in enumerate(paths, start=1):
                started = time.monotonic()
                row = _Row(path.stem, [])
                runs: list[ScenarioRun | None] = []
                try:
                    sc, topo = load_scenario(path)
                    refused = sc.backend_refusal("netns")
                except LabError as exc:
                    sc, refused = None, str(exc)
                    row.bad = True
                for col in cols:
                    why = refused or refusal(col.recipe, topo)
                    if why:
                        row.cells.append("error" if sc is None else "skipped")
                        row.why = row.why or why
                        runs.append(None)
                        continue

                    def say(msg: str, n: int = i, name: str = f"{path.stem} on {col.name}",
                            ) -> None:
                        progress(f"[{n}/{len(paths)}] {name}: {msg}")

                    try:
                        res = run_scenario(path, captures_root=captures, progress=say,
                                           backend=NetnsBackend(datapath=True,
                                                                datapaths=col.recipe))
                    except FaultUnavailable as exc:
                        row.cells.append("skipped")
                        row.why = row.why or str(exc)
                        runs.append(None)
                        continue
                    except LabError as exc:
                        row.cells.append("error")
                        row.why = row.why or f"{col.name}: {exc}"
                        row.bad = True
                        runs.append(None)
                        continue
                    runs.append(res)
                    row.cells.append("pass" if res.passed else "FAIL")
                    row.bad |= not res.passed
                    if detailed:
                        console.print(Text.assemble(f"{col.name}: ", run_verdict(res),
                                                    f"  ({res.capture_dir})"))
                lab_run, others = runs[0], [r for r in runs[1:] if r is not None]
                if lab_run is not None:
                    row.captures = str(lab_run.capture_dir)
                if lab_run is not None and others:
                    cmp = compare_runs(lab_run, others)
                    row.agree = _agree_cell(cmp, [cols[0]] + [
                        c for c, r in zip(cols[1:], runs[1:], strict=True) if r is not None])
                    row.bad |= not cmp.agree
                    if detailed:
                        _print_comparisons(cmp)
                rows.append(row)
                _line(i, len(paths), row, time.monotonic() - started)
    except KeyboardInterrupt:
        _table(rows, cols, f"interrupted after {len(rows)} of {len(paths)} scenarios")
        raise
    _table(rows, cols, f"{len(paths)} scenario{'s' * (len(paths) != 1)} on "
                       + ", ".join(c.name for c in cols))
    bad = sum(r.bad for r in rows)
    if bad:
        console.print(Text.assemble(("FAIL", "bold red"), f": {bad} of {len(rows)} scenarios "
                                    "failed on a datapath or differ between them"))
        raise typer.Exit(1)
    console.print(Text.assemble(("PASS", "bold green"), f": {len(rows)} scenario"
                                f"{'s' * (len(rows) != 1)}, every datapath passed and "
                                "their captures agree"))


def _print_comparisons(cmp: Compared) -> None:
    from rich.text import Text
    for d in cmp.diffs:
        if d is None:
            continue
        console.print(Text.assemble("compared with ", (d.datapath_b, "bold"),
                                    f" ({d.b}): ", ("same" if d.same else "different",
                                                    "green" if d.same else "red")))
        for line in d.summary_lines():
            console.print(Text("  " + line))
    for e in cmp.errors:
        console.print(Text("  not compared: " + e, style="red"))


def _line(n: int, total: int, row: _Row, seconds: float) -> None:
    from rich.text import Text
    cells = ", ".join(row.cells)
    why = f" ({row.why})" if row.why else ""
    style = "red" if row.bad else "green"
    console.print(Text.assemble(f"[{n}/{total}] {row.scenario}: {cells}; agree ",
                                (row.agree, style), f"{why}, {seconds:.1f} s"))


def _table(rows: list[_Row], cols: list[Column], what: str) -> None:
    table(("scenario", *(c.name for c in cols), "agree", "why", "captures"),
          [[r.scenario, *r.cells, r.agree, r.why, r.captures] for r in rows],
          title=what, leave_out=("captures", "why"))
