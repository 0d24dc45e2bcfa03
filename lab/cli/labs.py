"""``dsrlab up``, ``down``, ``clean`` and ``list``: labs on this machine, by run tag."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.output import console, fail, need_root, one_line_errors, status, table

if TYPE_CHECKING:
    from lab.env.base import Lab
    from lab.env.cleanup import RunResidue


def up(
    topology: Annotated[Path, typer.Argument(help="topology YAML, e.g. topologies/seed.yaml")],
    datapath: Annotated[bool, typer.Option(help="attach the DSR datapath on every node")] = True,
) -> None:
    """Bring a topology up on the netns backend and leave it running."""
    from lab.env.netns import NetnsBackend
    from lab.model.topology import load_topology

    need_root()
    with one_line_errors():
        topo = load_topology(topology)
        with status(f"bringing up {topo.name}"):
            lab = NetnsBackend(datapath=datapath).up(topo)
    state = lab.detach()
    _print_lab(lab, f"lab {lab.run_id} ({topo.name}) is up", state)


def _print_lab(lab: Lab, title: str, state: Path) -> None:
    table(("host", "kind", "address", "interface", "namespace"),
          ((h.name, h.kind, str(h.ip), h.ifname, h.netns) for h in lab.hosts.values()),
          title=title)
    first = next(iter(lab.hosts.values()))
    console.print(f"state: {state}", markup=False)
    console.print(f"a shell on a host: nsenter --net=/run/netns/{first.netns} bash",
                  markup=False)
    console.print(f"take it down:      dsrlab down {lab.run_id}", markup=False)


def down(
    run_id: Annotated[str | None, typer.Argument(help="run id (default: the only lab up)")] = None,
) -> None:
    """Take a lab brought up with ``dsrlab up`` down again."""
    from lab.env import cleanup

    need_root()
    with one_line_errors(LookupError, ValueError):
        if run_id is None:
            labs = [r for r in cleanup.find_runs().values() if r.state_file is not None]
            if len(labs) != 1:
                ids = ", ".join(r.run_id for r in labs) or "none"
                fail(f"name the run id: labs up: {ids}")
            run_id = labs[0].run_id
        done = cleanup.tear_down(run_id)
    for line in done:
        console.print(f"  {line}", markup=False)
    console.print(f"lab {run_id} is down", markup=False)


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

    need_root()
    with one_line_errors():
        runs = _chosen_runs(cleanup.find_runs(), run_ids, all_runs)
        if not runs:
            console.print("nothing to clean")
            return
        for res in runs.values():
            console.print(f"run {res.run_id}: {len(res.namespaces)} namespaces, "
                          f"{len(res.pids)} processes, state file: {res.state_file or 'none'}",
                          markup=False)
            if not dry_run:
                for line in cleanup.clean_run(res):
                    console.print(f"  {line}", markup=False)


def _chosen_runs(runs: dict[str, RunResidue], run_ids: list[str] | None,
                 all_runs: bool) -> dict[str, RunResidue]:
    """The runs ``clean`` removes: the named ones, else every one no live process holds."""
    if run_ids:
        unknown = sorted(set(run_ids) - set(runs))
        if unknown:
            fail(f"nothing carries run tag {', '.join(unknown)}")
        return {k: v for k, v in runs.items() if k in run_ids}
    if all_runs:
        return runs
    for res in runs.values():
        if res.owner_pid is not None:
            console.print(f"run {res.run_id}: in use by pid {res.owner_pid}, left alone "
                          "(name it, or use --all)", markup=False)
    return {k: v for k, v in runs.items() if v.owner_pid is None}


def list_labs() -> None:
    """Labs and leftovers on this machine, by run tag."""
    from lab.env import cleanup

    with one_line_errors():
        runs = cleanup.find_runs()
    if not runs:
        console.print("no labs")
        return
    table(("run id", "namespaces", "processes", "state"),
          ((res.run_id, str(len(res.namespaces)), str(len(res.pids)), _state(res))
           for res in runs.values()))


def _state(res: RunResidue) -> str:
    if res.state_file:
        return "up (dsrlab up)"
    return f"in use by pid {res.owner_pid}" if res.owner_pid else "leftover"
