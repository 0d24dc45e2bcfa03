"""``dsrlab run``: a scenario end to end, and how its result is printed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.datapath_choice import (
    CiliumSrcsOption,
    DatapathOption,
    NodeDatapath,
    backend_options,
    one_cilium_src,
)
from lab.cli.output import console, fail, need_root, note, one_line_errors, status, table
from lab.cli.verdicts import run_verdict

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
    scenarios: Annotated[Path | None, typer.Option(
        help="with --all: the folder of scenarios to run (its *.yaml and one level of "
             "subfolders; default: the lab's scenarios/)", show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option(
        help="the run id, 6 lowercase hex digits (default: a random one); refused when "
             "it is in use on this machine or has a capture set", show_default=False)] = None,
    datapath: DatapathOption = None,
    cilium_srcs: CiliumSrcsOption = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, help="with --all: how many scenarios run at once, each in "
        "its own lab (default: the number of CPUs)", show_default=False)] = None,
) -> None:
    """Run a scenario: lab up, captures at every hop, real traffic, trace checked.

    With --datapath both: on the lab's datapath and on each Cilium source's, each
    Cilium run's captures compared hop by hop with the lab's (as dsrlab diff does)."""
    from rich.text import Text

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
        from lab.cli.run_all import run_all as run_every

        run_every(captures, scenarios, datapath, cilium_src, jobs or os.cpu_count() or 1)
        return
    if jobs is not None:
        fail("-j goes with --all (one scenario is one lab)", code=2)
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


def print_run(run: ScenarioRun) -> None:
    """Every claim's verdict, the requests, where the files are, the times."""
    from rich.text import Text
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
    from rich.text import Text
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
    from rich.text import Text
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


_TIMES = (("up_s", "up"), ("captures_ready_s", "captures ready"), ("traffic_s", "traffic"),
          ("captures_stop_s", "captures stopped"), ("down_s", "down"), ("check_s", "check"),
          ("report_s", "report"))


def _print_times(t: dict[str, float]) -> None:
    parts = [f"{label} {t[key] * 1000:.0f} ms" for key, label in _TIMES if key in t]
    console.print(f"times: {', '.join(parts)}, total {t.get('total_s', 0):.2f} s")


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
