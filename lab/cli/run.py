"""``dsrlab run``: a scenario end to end, and how its result is printed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from lab.cli.datapath_choice import (
    CiliumSrcsOption,
    DatapathOption,
    NodeDatapath,
    backend_options,
    one_cilium_src,
)
from lab.cli.output import console, fail, need_root, note, one_line_errors, status, table
from lab.cli.verdicts import all_verdict, run_verdict
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.check.trace.results import ClaimVerdict
    from lab.env.base import Backend
    from lab.env.netns.datapath import NodeDatapaths
    from lab.runner.scenario import ScenarioRun

FAILURES_SHOWN = 3  # per failed claim
CHECKS_SHOWN = 3  # per passed claim, of its first flow


def run(
    scenario: Annotated[str | None, typer.Argument(
        help="scenario name (scenarios/NAME.yaml, scenarios/*/NAME.yaml) or path")] = None,
    *,
    captures: Annotated[Path, typer.Option(help="where capture sets go")] = Path("captures"),
    keep: Annotated[bool, typer.Option("--keep", help="leave the lab up afterwards")] = False,
    screenshot: Annotated[bool, typer.Option(
        help="render the report in headless Chromium to report.png (when installed)")] = True,
    run_all: Annotated[bool, typer.Option(
        "--all", help="run every scenario (scenarios/ and its subfolders) and print a "
                      "verdict table")] = False,
    backend: Annotated[str, typer.Option(
        help="netns (network namespaces here) or kind (a kind cluster with Cilium; "
             "needs docker, kind, kubectl, helm)")] = "netns",
    kubeconfig: Annotated[str | None, typer.Option(
        help="with --backend kind: an existing cluster, read only")] = None,
    scenarios: Annotated[Path | None, typer.Option(
        help="with --all: the folder of scenarios to run (its *.yaml and one level of "
             "subfolders; default: the lab's scenarios/)", show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option(
        help="the run id, 6 lowercase hex digits (default: a random one); refused when "
             "it is in use on this machine or has a capture set", show_default=False)] = None,
    datapath: DatapathOption = None,
    cilium_srcs: CiliumSrcsOption = None,
) -> None:
    """Run a scenario: lab up, captures at every hop, real traffic, trace checked.

    With --datapath both: on the lab's datapath and on each Cilium source's, each
    Cilium run's captures compared hop by hop with the lab's (as dsrlab diff does)."""
    from lab.runner.scenario import run_scenario

    if run_all == (scenario is not None):
        fail("give a scenario or --all (not both)", code=2)
    if run_all and run_id is not None:
        fail("--run-id names one run: give it with a scenario, not --all", code=2)
    if scenarios is not None and not run_all:
        fail("--scenarios goes with --all (a scenario is named by its path)", code=2)
    cilium_src = one_cilium_src(datapath, cilium_srcs)
    if run_all and backend != "netns":
        fail("--all runs on the netns backend (--backend goes with a scenario)", code=2)
    if datapath is NodeDatapath.both:
        _both(scenario, scenarios, captures, cilium_srcs, backend=backend, keep=keep,
              run_id=run_id)
        return
    need_root()
    if run_all:
        _run_all(captures, scenarios, datapath, cilium_src)
        return
    assert scenario is not None
    from lab.env import BACKENDS, get_backend

    if backend not in BACKENDS:
        fail(f"no backend {backend!r} (known: {', '.join(BACKENDS)})", code=2)
    if kubeconfig and backend != "kind":
        fail("--kubeconfig goes with --backend kind", code=2)
    if backend == "kind" and (datapath is not None or cilium_src is not None):
        fail("--datapath and --cilium-src are the netns backend's (a kind cluster runs "
             "the Cilium its topology installs)", code=2)
    if backend == "kind":
        from lab.env.kind.preflight import kind_unavailable
        from lab.model.scenario import load_scenario

        with one_line_errors():  # the scenario's backends: first, before the tools
            refused = load_scenario(scenario)[0].backend_refusal(backend)
        if refused:
            fail(refused, code=2)
        reason = kind_unavailable()
        if reason:
            fail(reason)
    if run_id is not None:
        from lab.cli.labs import check_new_run_id

        check_new_run_id(run_id, captures)
    options: dict[str, object] = {"kubeconfig": kubeconfig} if kubeconfig else {}
    if backend == "netns":  # the topology's datapath, unless --datapath chose
        from lab.model.scenario import load_scenario

        with one_line_errors():
            topo = load_scenario(scenario)[1]
        options = backend_options(datapath, cilium_src, topo)
    with one_line_errors(), status("starting") as progress:
        if backend == "kind":  # each tool call, as it starts
            options["progress"] = progress
        result = run_scenario(scenario, captures_root=captures, progress=progress, keep=keep,
                              backend=get_backend(backend, **options), run_id=run_id)
    console.print(Text.assemble("scenario ", (result.scenario.name, "bold"),
                                f" run {result.run_id} on {result.backend} "
                                f"({result.topology.name})"))
    print_run(result)
    if screenshot and result.report is not None:
        _screenshot(result.report.html, result.run_id, hold=not result.kept)
    console.print(run_verdict(result))
    if not result.passed:
        raise typer.Exit(1)


def _both(scenario: str | None, folder: Path | None, captures: Path,
          cilium_srcs: list[Path] | None, *, backend: str, keep: bool,
          run_id: str | None) -> None:
    """``--datapath both``: every datapath's run of the scenario (or of --all's)."""
    from lab.cli.both import datapath_columns, run_both
    from lab.model.scenario import all_scenarios, find_scenario

    if backend != "netns":
        fail("--datapath both runs on the netns backend", code=2)
    if keep or run_id is not None:
        fail(f"{'--keep' if keep else '--run-id'} names one lab: --datapath both runs "
             "several", code=2)
    if folder is not None and not folder.is_dir():
        fail(f"--scenarios {folder}: not a folder", code=2)
    if scenario is not None:
        with one_line_errors(code=2):
            paths = [find_scenario(scenario)]
    else:
        paths = all_scenarios() if folder is None else all_scenarios(folder)
        if not paths:
            fail(f"no scenario (*.yaml) in {folder}", code=2)
    need_root()
    cols = datapath_columns(cilium_srcs)
    run_both(paths, captures, cols, detailed=scenario is not None)


class NotOnDatapath(LabError):
    """A scenario ``run --all`` skips: the chosen datapath (or backend) cannot run it."""


def _run_all(captures: Path, folder: Path | None = None,
             datapath: NodeDatapath | None = None, cilium_src: Path | None = None) -> None:
    """Every scenario (of ``folder``), one after the other, a line as each ends; a table
    of verdicts, then the overall verdict as the last line; exit 1 if one failed.
    Each runs on ``datapath`` (else its topology's); one the datapath cannot run (or
    whose ``backends:`` leave out netns) is skipped with the reason."""
    from lab.capture.layout import check_captures
    from lab.env.faults import FaultUnavailable
    from lab.model.scenario import all_scenarios
    from lab.runner.scenario import run_scenario

    with one_line_errors():
        check_captures(captures)  # before any lab: where every capture set goes
    rows: list[list[str]] = []
    failed = skipped = 0
    if folder is not None and not folder.is_dir():
        fail(f"--scenarios {folder}: not a folder", code=2)
    paths = all_scenarios() if folder is None else all_scenarios(folder)
    if not paths:
        fail(f"no scenario (*.yaml) in {folder}", code=2)
    shared = _shared_datapaths(datapath, cilium_src)  # one Cilium source for them all
    ran_on: set[str] = set()
    try:
        with status("starting") as progress:
            for i, path in enumerate(paths, start=1):
                def say(msg: str, name: str = path.stem, n: int = i) -> None:
                    progress(f"[{n}/{len(paths)}] {name}: {msg}")

                started = time.monotonic()
                try:
                    backend, on = _scenario_backend(path, datapath, cilium_src, shared)
                    res = run_scenario(path, captures_root=captures, progress=say,
                                       backend=backend)
                except (FaultUnavailable, NotOnDatapath) as exc:  # not run: the reason
                    skipped += 1
                    rows.append([path.stem, "-", "-", "-", "skipped", "-", "-", str(exc)])
                except LabError as exc:
                    failed += 1
                    rows.append([path.stem, "-", "-", "-", "error", "-", "-", str(exc)])
                else:
                    ran_on.add(on)
                    failed += not res.passed
                    rows.append(_verdict_row(res))
                _scenario_line(i, len(paths), rows[-1], time.monotonic() - started)
    except KeyboardInterrupt:  # a signal: the verdicts of the scenarios that finished
        _verdict_table(rows, failed, skipped,
                       f"interrupted after {len(rows)} of {len(paths)} scenarios"
                       + _ran_on(ran_on, datapath))
        raise
    on = _ran_on(ran_on, datapath)
    _verdict_table(rows, failed, skipped, f"{len(paths)} scenarios{on}")
    console.print(all_verdict(len(paths), failed, skipped, on))
    if failed:
        raise typer.Exit(1)


def _shared_datapaths(datapath: NodeDatapath | None,
                      cilium_src: Path | None) -> NodeDatapaths | None:
    """With ``--datapath cilium``: the one Cilium recipe every scenario runs on (its
    source chosen once, before any lab: one error line if there is none)."""
    if datapath is not NodeDatapath.cilium:
        return None
    from lab.datapath.cilium.source import choose
    from lab.env.netns.cilium import CiliumDatapaths

    with one_line_errors():
        return CiliumDatapaths(choose(cilium_src))


def _scenario_backend(path: Path, datapath: NodeDatapath | None, cilium_src: Path | None,
                      shared: NodeDatapaths | None) -> tuple[Backend, str]:
    """The netns backend a scenario of ``run --all`` runs on, and what its datapath is
    called (``Cilium v1.16.0 (...)``); :class:`NotOnDatapath` if it cannot run there."""
    from lab.capture.manifest import ManifestDatapath
    from lab.env.netns import NetnsBackend
    from lab.env.netns.choice import node_datapaths, refusal
    from lab.model.scenario import load_scenario

    sc, topo = load_scenario(path)
    refused = sc.backend_refusal("netns")
    if refused:
        raise NotOnDatapath(refused)
    choice = None if datapath is None else datapath.value
    recipe = shared if shared is not None else node_datapaths(choice, topo, cilium_src)
    refused = refusal(recipe, topo)
    if refused:
        raise NotOnDatapath(refused)
    on = ManifestDatapath(**recipe.describe()).describe() if recipe else "no datapath"
    return NetnsBackend(datapath=recipe is not None, datapaths=recipe), on


def _ran_on(ran_on: set[str], datapath: NodeDatapath | None) -> str:
    """`` on Cilium v1.16.0 (...)``: which datapath ran the scenarios; nothing when
    they all ran on the lab's own by default (as before there was a choice)."""
    from lab.capture.manifest import ManifestDatapath

    if not ran_on or (datapath is None and ran_on == {ManifestDatapath(name="lab").describe()}):
        return ""
    return " on " + " and ".join(sorted(ran_on))


def _verdict_table(rows: list[list[str]], failed: int, skipped: int, what: str) -> None:
    passed = len(rows) - failed - skipped
    table(("scenario", "mode", "port", "node", "verdict", "claims", "requests", "captures"),
          rows, title=f"{what}, {passed} passed" + (f", {failed} failed" if failed else "")
          + (f", {skipped} skipped" if skipped else ""),
          leave_out=("captures", "node", "port", "mode", "requests"))


def _scenario_line(n: int, total: int, row: list[str], seconds: float) -> None:
    """One line as each scenario of ``run --all`` ends (a pipe or a log sees progress):
    ``[3/41] seed: pass, claims 6/6, 2.1 s``; an error or a skip with its reason."""
    name, verdict, claims, why = row[0], row[4], row[5], row[7]
    detail = f"claims {claims}" if verdict in ("pass", "FAIL") else why
    style = {"pass": "green", "FAIL": "red", "error": "red"}.get(verdict, "yellow")
    console.print(Text.assemble(f"[{n}/{total}] {name}: ", (verdict, style),
                                f", {detail}, {seconds:.1f} s"))


def _verdict_row(res: ScenarioRun) -> list[str]:
    sc, topo = res.scenario, res.topology
    port = topo.service(sc.target.service).port(sc.target.port)
    claims = res.result.claims if res.result else []
    ok = [e for e in res.exchanges if e.ok]
    return [sc.name, topo.load_balancer.mode, f"{port.node_port}/{port.protocol}",
            sc.target.node, "pass" if res.passed else "FAIL",
            f"{sum(c.passed for c in claims)}/{len(claims)}",
            f"{len(ok)}/{len(res.exchanges)} answered", str(res.capture_dir)]


def print_run(run: ScenarioRun) -> None:
    """Every claim's verdict, the requests, where the files are, the times."""
    for claim in run.result.claims if run.result else []:
        _print_claim(claim)
    for line in run.result.diagnoses if run.result else ():
        console.print(Text.assemble(("diagnosis: ", "bold red"), line))
    _print_requests(run)
    _print_comparison(run)
    _print_files(run)
    _print_times(run.timings)


def _print_comparison(run: ScenarioRun) -> None:
    """A modes comparison's figures (the report draws them)."""
    from lab.report.model import load_comparison

    cmp = load_comparison(run.capture_dir)
    if cmp is None:
        return
    if cmp.error:
        note("compare", cmp.error, "red")
        return
    table(("mode", "LB-node bytes", "of snat's", "client->backend", "backend->client",
           "p50 ms", "p99 ms"),
          [[r.mode, f"{r.lb_bytes:,}", cmp.ratio(r), f"{r.request_bytes:,}",
            f"{r.reply_bytes:,}", f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}"] for r in cmp.rows],
          title=f"modes compared at {cmp.lb_node} ({cmp.transfer_bytes:,}-byte response, "
                f"{cmp.requests} requests)")


def _print_claim(claim: ClaimVerdict) -> None:
    mark = ("PASS", "green") if claim.passed else ("FAIL", "red")
    console.print(Text.assemble(mark, f"  {claim.name}: {claim.title}"))
    for failure in claim.failures[:FAILURES_SHOWN]:
        console.print(failure.describe(), style="red", markup=False)
    if len(claim.failures) > FAILURES_SHOWN:
        console.print(f"        ... and {len(claim.failures) - FAILURES_SHOWN} more failures",
                      style="red", markup=False)
    if claim.passed:
        flows = sorted({c.flow for c in claim.checks if c.flow})
        shown = [c for c in claim.checks if c.flow in (None, *flows[:1])
                 and c.kind in ("expect", "coverage")][:CHECKS_SHOWN]
        for c in shown:
            console.print(f"        {c.name}: {c.message}", style="dim", markup=False)
        over = f" over {len(flows)} flows" if flows else ""
        console.print(f"        {len(claim.checks)} checks{over}, all passed", style="dim",
                      markup=False)


def _print_requests(run: ScenarioRun) -> None:
    if run.scenario.steps:  # a scenario of steps: what each did, in its own words
        for i, step in enumerate(run.steps, 1):
            mark = ("", "") if step.ok else ("  (did not complete)", "yellow")
            console.print(Text.assemble(f"step {i} ({step.kind}): {step.summary}", mark))
        return
    served: dict[str, int] = {}
    for ex in run.exchanges:
        if ex.pod:
            served[ex.pod] = served.get(ex.pod, 0) + 1
    by_pod = ", ".join(f"{k}: {v}" for k, v in served.items()) or "none answered"
    console.print(f"requests: {len(run.exchanges)} ({by_pod})", markup=False)
    for ex in [ex for ex in run.exchanges if not ex.ok][:3]:
        console.print(Text.assemble("  ", ("request failed:", "red"),
                                    f" {ex.error or ex.http_code}"))


def _print_files(run: ScenarioRun) -> None:
    console.print(f"captures: {run.capture_dir}  (manifest.json, results.json, one pcap per "
                  "hop)", markup=False)
    if run.report is not None:
        console.print(f"report:   {run.report.html}  (ladder per flow; "
                      f"{run.report.markdown.name} for CI logs)", markup=False)
        console.print(f"wireshark: {run.capture_dir / 'merged.pcapng'}  (every hop, one file)",
                      markup=False)
    if run.kept:
        console.print(f"the lab is still up: dsrlab down {run.run_id}", markup=False)


def _print_times(t: dict[str, float]) -> None:
    console.print(f"times: up {t.get('up_s', 0) * 1000:.0f} ms, captures ready "
                  f"{t.get('captures_ready_s', 0) * 1000:.0f} ms, traffic "
                  f"{t.get('traffic_s', 0) * 1000:.0f} ms, total {t.get('total_s', 0):.2f} s")


def _screenshot(html: Path, run_id: str, *, hold: bool) -> None:
    """Chromium's picture of the report, tagged with the run id. With ``hold`` this
    process holds the run again while Chromium runs (its owner file), so a bare
    ``dsrlab clean`` leaves Chromium's scratch directory alone, and an interrupt's
    sweep removes it; a lab kept up (``--keep``) is not held: it was handed over."""
    import contextlib

    from lab.plumbing import owner
    from lab.report import screenshot as shot

    if not shot.available():
        return
    if hold:
        with contextlib.suppress(OSError):
            owner.claim(run_id)
    try:
        png = shot.screenshot(html, run_id=run_id)
    except shot.ScreenshotError as exc:
        note("report not rendered", str(exc))
        return
    finally:
        if hold:
            with contextlib.suppress(OSError):
                owner.release(run_id)
    console.print(f"rendered: {png}  (headless Chromium)", markup=False)
