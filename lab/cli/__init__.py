"""The ``dsrlab`` command: a thin face over the library.

Each command imports the library parts it needs when it runs, so that
``dsrlab review`` on a big pcap does not first load scapy, pyroute2 and the
report renderer it never uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from lab.cli.datapath import app as datapath_app
from lab.cli.review import review as review_cmd
from lab.cli.review import wireshark as wireshark_cmd

if TYPE_CHECKING:
    from lab.runner.scenario import ScenarioRun

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="A packet-level test lab for eBPF direct-server-return load balancing.")
app.add_typer(datapath_app, name="datapath")
app.command("review")(review_cmd)
app.command("wireshark")(wireshark_cmd)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _lab_errors() -> tuple[type[Exception], ...]:
    """The failures a user can act on: printed as one line, not as a traceback."""
    from lab.capture.layout import CaptureError
    from lab.check.trace import TraceError
    from lab.datapath.errors import DatapathError
    from lab.env.base import BackendError
    from lab.model.scenario import ScenarioError
    from lab.model.topology import TopologyError
    from lab.plumbing.nsutil import NetnsError

    return (BackendError, NetnsError, CaptureError, DatapathError, ScenarioError,
            TopologyError, TraceError)


def _need_root() -> None:
    if os.geteuid() != 0:
        err.print("[red]dsrlab needs root[/] (network namespaces, BPF, tcpdump)")
        raise typer.Exit(2)


@app.command()
def up(
    topology: Annotated[Path, typer.Argument(help="topology YAML, e.g. topologies/seed.yaml")],
    datapath: Annotated[bool, typer.Option(help="attach the DSR datapath on every node")] = True,
) -> None:
    """Bring a topology up on the netns backend and leave it running."""
    from lab.env.netns import NetnsBackend
    from lab.model.topology import load_topology

    _need_root()
    try:
        topo = load_topology(topology)
        with console.status(f"bringing up {topo.name}"):
            lab = NetnsBackend(datapath=datapath).up(topo)
    except _lab_errors() as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    state = lab.detach()
    table = Table(title=f"lab {lab.run_id} ({topo.name}) is up")
    for col in ("host", "kind", "address", "interface", "namespace"):
        table.add_column(col)
    for h in lab.hosts.values():
        table.add_row(h.name, h.kind, str(h.ip), h.ifname, h.netns)
    console.print(table)
    first = next(iter(lab.hosts.values()))
    console.print(f"state: {state}")
    console.print(f"a shell on a host: nsenter --net=/run/netns/{first.netns} bash")
    console.print(f"take it down:      dsrlab down {lab.run_id}")


@app.command()
def down(
    run_id: Annotated[str | None, typer.Argument(help="run id (default: the only lab up)")] = None,
) -> None:
    """Take a lab brought up with ``dsrlab up`` down again."""
    from lab.env import cleanup

    _need_root()
    if run_id is None:
        labs = [r for r in cleanup.find_runs().values() if r.state_file is not None]
        if len(labs) != 1:
            ids = ", ".join(r.run_id for r in labs) or "none"
            err.print(f"[red]error:[/] name the run id: labs up: {ids}")
            raise typer.Exit(1)
        run_id = labs[0].run_id
    try:
        done = cleanup.tear_down(run_id)
    except (LookupError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    for line in done:
        console.print(f"  {line}")
    console.print(f"lab {run_id} is down")


@app.command()
def clean(
    run_ids: Annotated[list[str] | None, typer.Argument(
        help="only these run ids (default: every run tag found)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would go")] = False,
    all_runs: Annotated[bool, typer.Option(
        "--all", help="also runs whose owning process still runs (e.g. a test session)")] = False,
) -> None:
    """Remove everything carrying a dsrlab run tag (also what killed runs left).

    Without run ids, runs still held by a live process are left alone unless
    --all is given; labs left up by `dsrlab up` and leftovers of killed runs go.
    """
    from lab.env import cleanup

    _need_root()
    runs = cleanup.find_runs()
    if run_ids:
        unknown = sorted(set(run_ids) - set(runs))
        if unknown:
            err.print(f"[red]error:[/] nothing carries run tag {', '.join(unknown)}")
            raise typer.Exit(1)
        runs = {k: v for k, v in runs.items() if k in run_ids}
    elif not all_runs:
        for res in [r for r in runs.values() if r.owner_pid is not None]:
            console.print(f"run {res.run_id}: in use by pid {res.owner_pid}, left alone "
                          "(name it, or use --all)")
            del runs[res.run_id]
    if not runs:
        console.print("nothing to clean")
        return
    for res in runs.values():
        console.print(f"run {res.run_id}: {len(res.namespaces)} namespaces, "
                      f"{len(res.pids)} processes, state file: {res.state_file or 'none'}")
        if not dry_run:
            for line in cleanup.clean_run(res):
                console.print(f"  {line}")


@app.command("list")
def list_labs() -> None:
    """Labs and leftovers on this machine, by run tag."""
    from lab.env import cleanup

    runs = cleanup.find_runs()
    if not runs:
        console.print("no labs")
        return
    table = Table()
    for col in ("run id", "namespaces", "processes", "state"):
        table.add_column(col)
    for res in runs.values():
        state = ("up (dsrlab up)" if res.state_file else
                 f"in use by pid {res.owner_pid}" if res.owner_pid else "leftover")
        table.add_row(res.run_id, str(len(res.namespaces)), str(len(res.pids)), state)
    console.print(table)


def _print_run(run: ScenarioRun) -> None:
    for claim in run.result.claims if run.result else []:
        mark = "[green]PASS[/]" if claim.passed else "[red]FAIL[/]"
        console.print(f"{mark}  {claim.name}: {claim.title}")
        for failure in claim.failures[:3]:
            console.print(failure.describe(), style="red", markup=False)
        if len(claim.failures) > 3:
            console.print(f"        [red]... and {len(claim.failures) - 3} more failures[/]")
        if claim.passed:
            flows = sorted({c.flow for c in claim.checks if c.flow})
            shown = [c for c in claim.checks if c.flow in (None, *flows[:1])
                     and c.kind in ("expect", "coverage")][:3]
            for c in shown:
                console.print(f"        {c.name}: {c.message}", style="dim", markup=False)
            over = f" over {len(flows)} flows" if flows else ""
            console.print(f"        [dim]{len(claim.checks)} checks{over}, all passed[/]")
    failed = [ex for ex in run.exchanges if not ex.ok]
    served: dict[str, int] = {}
    for ex in run.exchanges:
        if ex.pod:
            served[ex.pod] = served.get(ex.pod, 0) + 1
    by_pod = ", ".join(f"{k}: {v}" for k, v in served.items()) or "none answered"
    console.print(f"requests: {len(run.exchanges)} ({by_pod})")
    for ex in failed[:3]:
        console.print(f"  [red]request failed:[/] {ex.error or ex.http_code}")
    console.print(f"captures: {run.capture_dir}  (manifest.json, results.json, one pcap per hop)")
    if run.report is not None:
        console.print(f"report:   {run.report.html}  (ladder per flow; {run.report.markdown.name}"
                      " for CI logs)")
        console.print(f"wireshark: {run.capture_dir / 'merged.pcapng'}  (every hop, one file)")
    if run.kept:
        console.print(f"the lab is still up: dsrlab down {run.run_id}")
    t = run.timings
    console.print(f"times: up {t.get('up_s', 0) * 1000:.0f} ms, captures ready "
                  f"{t.get('captures_ready_s', 0) * 1000:.0f} ms, traffic "
                  f"{t.get('traffic_s', 0) * 1000:.0f} ms, total {t.get('total_s', 0):.2f} s")


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="scenario name (scenarios/NAME.yaml) or path")],
    captures: Annotated[Path, typer.Option(help="where capture sets go")] = Path("captures"),
    keep: Annotated[bool, typer.Option("--keep", help="leave the lab up afterwards")] = False,
    screenshot: Annotated[bool, typer.Option(
        help="render the report in headless Chromium to report.png (when installed)")] = True,
) -> None:
    """Run a scenario: lab up, captures at every hop, real traffic, trace checked."""
    from lab.runner.scenario import run_scenario

    _need_root()
    try:
        with console.status("starting") as status:
            result = run_scenario(scenario, captures_root=captures,
                                  progress=status.update, keep=keep)
    except _lab_errors() as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"scenario [bold]{result.scenario.name}[/] run {result.run_id} "
                  f"on netns ({result.topology.name})")
    _print_run(result)
    if screenshot and result.report is not None:
        from lab.report import screenshot as shot

        if shot.available():
            try:
                png = shot.screenshot(result.report.html)
                console.print(f"rendered: {png}  (headless Chromium)")
            except shot.ScreenshotError as exc:
                err.print(f"[yellow]report not rendered:[/] {exc}")
    if not result.passed:
        raise typer.Exit(1)


def main() -> None:
    app(prog_name="dsrlab")


if __name__ == "__main__":
    main()
