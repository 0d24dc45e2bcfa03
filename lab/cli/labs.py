"""``dsrlab up``, ``down``, ``clean`` and ``list``: labs on this machine, by run tag.

The machine may be shared: a bare ``dsrlab clean`` removes only what dead
runs left (owner gone, not left up on purpose); a lab brought up with
``dsrlab up`` (or ``run --keep``) goes only when named or with ``--all``,
which lists what it will remove and asks first. A run in progress (the
kernel's record of its namespaces names a live process, whatever state
directory is in use) is never touched: named, it is refused, and
``--force`` asks it to stop first (it undoes its own lab and says so). A bare ``dsrlab down`` takes
the one lab up, and with several asks which. Run ids are six lowercase hex
digits everywhere; an id that looks like an option goes after ``--``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.datapath_choice import (
    CiliumSrcOption,
    DatapathOption,
    NodeDatapath,
    backend_options,
    check_cilium_src,
)
from lab.cli.output import console, fail, need_root, one_line_errors, status, table

if TYPE_CHECKING:
    from lab.capture.layout import CaptureSet
    from lab.env.base import Lab
    from lab.env.cleanup import RunResidue
    from lab.plumbing.owner import Holder

RUN_ID_HELP = ("the lab's run id, 6 lowercase hex digits (default: a random one); "
               "refused when a lab or leftover of that id is on this machine")


def up(
    topology: Annotated[Path, typer.Argument(help="topology YAML, e.g. topologies/seed.yaml")],
    datapath: DatapathOption = None,
    cilium_src: CiliumSrcOption = None,
    run_id: Annotated[str | None, typer.Option(help=RUN_ID_HELP, show_default=False)] = None,
) -> None:
    """Bring a topology up on the netns backend and leave it running."""
    from lab import settings
    from lab.env.netns import NetnsBackend
    from lab.model.topology import load_topology

    need_root()
    if datapath is NodeDatapath.both:
        fail("--datapath both goes with run (a lab up runs one datapath)", code=2)
    check_cilium_src(datapath, cilium_src)
    if run_id is not None:
        check_new_run_id(run_id)
    with one_line_errors():
        settings.check_environment()  # before any namespace exists
        topo = load_topology(topology)
    options = backend_options(datapath, cilium_src, topo)  # the topology's, unless chosen
    with one_line_errors():
        with status(f"bringing up {topo.name}"):
            lab = NetnsBackend(**options).up(topo, run_id=run_id)
        state = lab.detach()  # its state not written: taken down, one error line
    _print_lab(lab, f"lab {lab.run_id} ({topo.name}) is up", state)


def _print_lab(lab: Lab, title: str, state: Path) -> None:
    t = lab.topology
    if t.dual_stack:  # each host's IPv6 address beside its IPv4 one
        ip6 = {t.client.name: t.client.ip6, **{n.name: n.ip6 for n in t.nodes},
               **{p.name: p.ip6 for p in t.pods}}
        table(("host", "kind", "address", "IPv6 address", "interface", "namespace"),
              ((h.name, h.kind, str(h.ip), str(ip6.get(h.name) or ""), h.ifname, h.netns)
               for h in lab.hosts.values()),
              title=title, leave_out=("kind", "interface", "IPv6 address", "address"))
    else:
        table(("host", "kind", "address", "interface", "namespace"),
              ((h.name, h.kind, str(h.ip), h.ifname, h.netns) for h in lab.hosts.values()),
              title=title, leave_out=("kind", "interface", "address"))  # the namespace stays
    first = next(iter(lab.hosts.values()))
    console.print(f"state: {state}", markup=False)
    console.print(f"a shell on a host: nsenter --net=/run/netns/{first.netns} bash",
                  markup=False)
    console.print(f"take it down:      dsrlab down {lab.run_id}", markup=False)


def check_new_run_id(run_id: str, captures: Path | None = None) -> None:
    """A run id the user chose for a new lab: the lab's own form (6 lowercase hex
    digits), and nothing on this machine (namespaces, processes, files under
    /run/dsrlab; with ``captures``, a capture set) carries it yet. Else exit 2."""
    from lab.env import cleanup
    from lab.plumbing import names

    try:
        names.check_run_id(run_id)
    except ValueError as exc:
        fail(f"--run-id: {exc}", 2)
    with one_line_errors():
        taken = cleanup.find_runs([run_id])
    if run_id in taken:
        fail(f"--run-id: run id {run_id} is in use on this machine "
             f"({_summary(taken[run_id])}); choose another (dsrlab list shows them)", 2)
    if captures is not None:
        used = sorted(p for p in captures.glob(f"*/{run_id}") if p.is_dir())
        if used:
            fail(f"--run-id: run id {run_id} already has a capture set ({used[0]}); "
                 "choose another", 2)


def _check_ids(run_ids: list[str]) -> None:
    """Every id is a run id (6 lowercase hex digits), or a one-line error."""
    from lab.plumbing import names

    for run_id in run_ids:
        try:
            names.check_run_id(run_id)
        except ValueError as exc:
            fail(str(exc))


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def down(
    run_id: Annotated[str | None, typer.Argument(
        help="run id, 6 hex digits (default: the only lab up; with several, you are asked). "
             "An id that starts with '-' goes after '--': dsrlab down -- ID",
        show_default=False)] = None,
) -> None:
    """Take a lab brought up with ``dsrlab up`` down again.

    Without RUN_ID: the only lab up; with several up, they are listed and you
    are asked for one. A run id is 6 lowercase hex digits; one that starts
    with '-' goes after '--': dsrlab down -- ID
    """
    from lab.env import cleanup

    need_root()
    if run_id is not None:
        _check_ids([run_id])
    with one_line_errors(LookupError, ValueError):
        if run_id is None:
            run_id = _pick_lab(cleanup.find_runs())
        done = cleanup.tear_down(run_id)
    for line in done:
        console.print(f"  {line}", markup=False)
    console.print(f"lab {run_id} is down", markup=False)


def _pick_lab(runs: dict[str, RunResidue]) -> str:
    """The run id ``down`` takes without one: the only lab up; with several, asked for."""
    # only labs this state directory knows: a bare down never guesses at another user's
    labs = [r for r in runs.values() if r.state_file is not None and r.holder is None]
    if not labs:
        fail("no lab is up (dsrlab list shows leftovers: dsrlab clean removes them)")
    if len(labs) == 1:
        return labs[0].run_id
    _print_runs(labs, title=f"{len(labs)} labs are up")
    ids = ", ".join(r.run_id for r in labs)
    if not _stdin_is_terminal():
        fail(f"{len(labs)} labs are up ({ids}): name one: dsrlab down RUN_ID")
    answer = typer.prompt("run id to take down", default="", show_default=False,
                          err=True).strip()
    if answer not in {r.run_id for r in labs}:
        fail(f"{answer or 'nothing'} is none of the labs up ({ids}); nothing taken down")
    return answer


def clean(  # noqa: PLR0917 (typer: one parameter per option)
    run_ids: Annotated[list[str] | None, typer.Argument(
        help="only these run ids (6 hex digits each; default: what dead runs left). "
             "An id that starts with '-' goes after '--': dsrlab clean -- ID",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would go")] = False,
    all_runs: Annotated[bool, typer.Option(
        "--all", help="every lab on this machine: also labs left up with `dsrlab up` or "
                      "`run --keep` (lists them and asks first); runs in progress only "
                      "with --force")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask (needed for --all when "
                                                    "stdin is not a terminal)")] = False,
    captures: Annotated[Path, typer.Option(
        help="where capture sets are: unfinished ones (no results.json) are listed")
    ] = Path("captures"),
    incomplete: Annotated[bool, typer.Option(
        "--incomplete", help="also remove unfinished capture sets under --captures")
    ] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="with run ids or --all: a run still in progress is first asked to "
                        "stop (it undoes its lab and says 'stopped by dsrlab clean'), then "
                        "what is left goes")
    ] = False,
) -> None:
    """Remove what dead runs left (namespaces, processes, files under /run/dsrlab).

    Without run ids only runs whose owner is gone and that were not left up on
    purpose go; a lab left up with `dsrlab up` goes when named, or with --all
    (which asks unless --yes). A run in progress (its process runs, whichever
    state directory it uses) is never touched: named, it is refused, unless
    --force, which asks it to stop first. A run id is 6 lowercase hex digits;
    one that starts with '-' goes after '--': dsrlab clean -- ID
    """
    from lab.env import cleanup

    need_root()
    if run_ids:
        _check_ids(run_ids)
        if all_runs:
            fail("name run ids or give --all, not both")
    if force and not (run_ids or all_runs):
        fail("--force goes with run ids or --all: a bare clean takes only what dead runs "
             "left")
    if all_runs and not yes and not dry_run and not _stdin_is_terminal():
        # refused before anything is even looked at: nobody is there to answer
        fail("--all removes every lab on this machine and asks first, but stdin is not "
             "a terminal: pass --yes to remove them without asking")
    from lab.capture.layout import incomplete_capture_sets

    with one_line_errors():
        unfinished = [s for s in incomplete_capture_sets(captures)
                      if not run_ids or s.run_id in run_ids]
        runs = _chosen_runs(cleanup.find_runs(), run_ids, all_runs,
                            {s.run_id for s in unfinished})
        live = _live(runs, unfinished if run_ids else [])
        if live and (dry_run or not force):
            _leave_live(live, runs, refuse=bool(run_ids) and not dry_run, force=force)
        elif live:
            stopped = _stop_live(live)
            unfinished = [s for s in incomplete_capture_sets(captures)
                          if not run_ids or s.run_id in run_ids]
            runs = _chosen_runs(cleanup.find_runs(), run_ids, all_runs,
                                {s.run_id for s in unfinished} | stopped)
        if all_runs and runs and not dry_run and not yes:
            _confirm_all(runs)
        if not runs and not (run_ids and unfinished):
            console.print("no runs to clean")
        for res in runs.values():
            console.print(f"run {res.run_id}: {_summary(res)}", markup=False)
            if not dry_run:
                for line in cleanup.clean_run(res):
                    console.print(f"  {line}", markup=False)
        _clean_captures(unfinished, captures, remove=incomplete and not dry_run,
                        run_ids=run_ids or [])


def _live(runs: dict[str, RunResidue], sets: list[CaptureSet]) -> dict[str, Holder]:
    """The chosen runs (and named capture sets) a live process still drives, by run id."""
    import os

    from lab.capture.layout import writer_of

    live = {k: r.holder for k, r in runs.items()
            if r.holder is not None and r.holder.pid != os.getpid()}
    for cs in sets:
        writer = writer_of(cs.path)
        if writer is not None and cs.run_id not in live:
            live[cs.run_id] = writer
    return live


def _leave_live(live: dict[str, Holder], runs: dict[str, RunResidue], *, refuse: bool,
                force: bool) -> None:
    """Runs in progress are not touched: named, the whole command is refused (one line);
    with --all (or --dry-run) each is left out with a line saying so."""
    if refuse:
        ids = ", ".join(live)
        pids = ", ".join(str(h.pid) for h in live.values())
        fail(f"run {ids} is in progress (pid {pids}): nothing removed; "
             f"dsrlab clean --force {' '.join(live)} stops it first")
    for run_id, holder in live.items():
        then = "would be asked to stop (--force)" if force else \
            "left alone (--force stops it first)"
        console.print(f"run {run_id}: in use by pid {holder.pid} (a run in progress), {then}",
                      markup=False)
        runs.pop(run_id, None)


def _stop_live(live: dict[str, Holder]) -> set[str]:
    """--force: ask each live run's process to stop and wait until it has; the run ids."""
    import signal

    from lab.env import cleanup

    done: dict[tuple[int, int], float] = {}
    for run_id, holder in live.items():
        key = (holder.pid, holder.process.start_time)
        if holder.pid <= 0:
            fail(f"run {run_id}: a process that cannot be named is writing its capture "
                 "set; nothing removed")
        if key not in done:
            cleanup.check_stoppable(holder)
            console.print(f"run {run_id}: in use by pid {holder.pid}, asking it to stop "
                          f"({signal.Signals(holder.stop_signal).name})", markup=False)
            done[key] = cleanup.stop_holder(holder)
            console.print(f"  pid {holder.pid} stopped after {done[key]:.1f} s", markup=False)
    return set(live)


def _summary(res: RunResidue) -> str:
    files = ", ".join([f.name for f in res.files]
                      + [str(d) for d in res.temp_dirs]) or "none"
    return (f"{len(res.namespaces)} namespaces, {len(res.pids)} processes, "
            f"{_state(res)}, files: {files}")


def _chosen_runs(runs: dict[str, RunResidue], run_ids: list[str] | None,
                 all_runs: bool, captured: set[str]) -> dict[str, RunResidue]:
    """The runs ``clean`` removes: the named ones, with --all every one, else the dead.
    A named id must carry a run tag or name an unfinished capture set (``captured``)."""
    if run_ids:
        unknown = sorted(set(run_ids) - set(runs) - captured)
        if unknown:
            fail(f"nothing carries run tag {', '.join(unknown)}")
        return {k: v for k, v in runs.items() if k in run_ids}
    if all_runs:
        return runs
    for res in runs.values():
        if res.holder is not None:
            console.print(f"run {res.run_id}: {_state(res)} (a run in progress), left alone",
                          markup=False)
        elif not res.dead:
            console.print(f"run {res.run_id}: {_state(res)}, left alone "
                          "(name it, or use --all)", markup=False)
    return {k: v for k, v in runs.items() if v.dead}


def _confirm_all(runs: dict[str, RunResidue]) -> None:
    """--all without --yes (on a terminal): list what goes and ask."""
    _print_runs(list(runs.values()), title="dsrlab clean --all removes")
    if not typer.confirm(f"remove these {len(runs)} runs?", default=False, err=True):
        fail("nothing removed")


def _clean_captures(sets: list[CaptureSet], root: Path, *, remove: bool,
                    run_ids: list[str]) -> None:
    """List (and with ``remove`` delete) capture sets never finished; a set a live run
    is still writing is listed as such and never removed."""
    import shlex

    from lab.capture.layout import CaptureError, remove_capture_set, writer_of

    listed = False
    for cs in sets:
        writer = writer_of(cs.path)
        if writer is not None:
            console.print(f"unfinished capture set {cs.path}: being written by pid "
                          f"{writer.pid} (run {cs.run_id} is in progress), left alone",
                          markup=False)
            continue
        console.print(f"unfinished capture set {cs.path} (no results.json)", markup=False)
        listed = True
        if not remove:
            continue
        try:
            done = remove_capture_set(cs)
        except (CaptureError, OSError) as exc:
            console.print(f"  left alone: {exc}", markup=False)
            continue
        for line in done:
            console.print(f"  {line}", markup=False)
    if listed and not remove:
        ids = "".join(f" {i}" for i in run_ids)
        console.print(f"remove them with: dsrlab clean --captures {shlex.quote(str(root))} "
                      f"--incomplete{ids}", markup=False)


def list_labs() -> None:
    """Labs and leftovers on this machine, by run tag."""
    from lab.env import cleanup

    with one_line_errors():
        runs = cleanup.find_runs()
    if not runs:
        console.print("no labs")
        return
    _print_runs(list(runs.values()))


def _print_runs(runs: list[RunResidue], title: str | None = None) -> None:
    table(("run id", "namespaces", "processes", "state"),
          ((res.run_id, str(len(res.namespaces)), str(len(res.pids)), _state(res))
           for res in runs), title=title)


def _state(res: RunResidue) -> str:
    if res.holder is not None:
        return f"in use by pid {res.holder.pid}"
    if res.left_up_by is not None:
        return f"up ({res.left_up_by})"
    return "leftover"
