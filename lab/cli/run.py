"""``dsrlab run``: a scenario end to end, and how its result is printed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from lab.cli.output import console, fail, need_root, note, one_line_errors, status, table
from lab.errors import LabError

if TYPE_CHECKING:
    from lab.check.trace.results import ClaimVerdict
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
) -> None:
    """Run a scenario: lab up, captures at every hop, real traffic, trace checked."""
    from lab.runner.scenario import run_scenario

    if run_all == (scenario is not None):
        fail("give a scenario or --all (not both)", code=2)
    need_root()
    if run_all:
        _run_all(captures)
        return
    assert scenario is not None
    from lab.env import BACKENDS, get_backend

    if backend not in BACKENDS:
        fail(f"no backend {backend!r} (known: {', '.join(BACKENDS)})", code=2)
    if kubeconfig and backend != "kind":
        fail("--kubeconfig goes with --backend kind", code=2)
    if backend == "kind":
        from lab.env.kind.preflight import kind_unavailable

        reason = kind_unavailable()
        if reason:
            fail(reason)
    options: dict[str, object] = {"kubeconfig": kubeconfig} if kubeconfig else {}
    with one_line_errors(), status("starting") as progress:
        if backend == "kind":  # each tool call, as it starts
            options["progress"] = progress
        result = run_scenario(scenario, captures_root=captures, progress=progress, keep=keep,
                              backend=get_backend(backend, **options))
    console.print(Text.assemble("scenario ", (result.scenario.name, "bold"),
                                f" run {result.run_id} on {result.backend} "
                                f"({result.topology.name})"))
    print_run(result)
    if screenshot and result.report is not None:
        _screenshot(result.report.html)
    if not result.passed:
        raise typer.Exit(1)


def _run_all(captures: Path) -> None:
    """Every scenario, one after the other; a table of verdicts; exit 1 if one failed."""
    from lab.capture.layout import check_captures
    from lab.env.faults import FaultUnavailable
    from lab.model.scenario import all_scenarios
    from lab.runner.scenario import run_scenario

    with one_line_errors():
        check_captures(captures)  # before any lab: where every capture set goes
    rows = []
    failed = skipped = 0
    paths = all_scenarios()
    with status("starting") as progress:
        for i, path in enumerate(paths, start=1):
            def say(msg: str, name: str = path.stem, n: int = i) -> None:
                progress(f"[{n}/{len(paths)}] {name}: {msg}")

            try:
                res = run_scenario(path, captures_root=captures, progress=say)
            except FaultUnavailable as exc:  # this kernel cannot make the fault: not run
                skipped += 1
                rows.append([path.stem, "-", "-", "-", "skipped", "-", "-", str(exc)])
                continue
            except LabError as exc:
                failed += 1
                rows.append([path.stem, "-", "-", "-", "error", "-", "-", str(exc)])
                continue
            failed += not res.passed
            rows.append(_verdict_row(res))
    table(("scenario", "mode", "port", "node", "verdict", "claims", "requests", "captures"),
          rows, title=f"{len(paths)} scenarios, {len(paths) - failed - skipped} passed"
          + (f", {skipped} skipped" if skipped else ""))
    if failed:
        raise typer.Exit(1)


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


def _screenshot(html: Path) -> None:
    from lab.report import screenshot as shot

    if not shot.available():
        return
    try:
        png = shot.screenshot(html)
    except shot.ScreenshotError as exc:
        note("report not rendered", str(exc))
        return
    console.print(f"rendered: {png}  (headless Chromium)", markup=False)
