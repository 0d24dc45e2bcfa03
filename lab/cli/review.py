"""``dsrlab review``: DSR flows and broken DSR replies in any capture (lab.check.review)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lab.cli.output import console, err, fail, note, on_terminal, table

if TYPE_CHECKING:
    from rich.text import Text

    from lab.capture.layout import Role
    from lab.check.review import DsrFlow, ReviewResult, Target
    from lab.wire.dsropt import OptionOrder
    from lab.wire.pcapread import PcapError

PROGRESS_MIN_BYTES = 32 * 1024 * 1024
_STATUS_STYLE = {"rewritten": "green", "lb-node": "cyan", "pod-side": "yellow",
                 "not-rewritten": "bold red", "no-reply": "yellow"}
_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
BACKENDS_SHOWN = 6  # per service, in the services table
TERMINAL_ROWS = 30  # rows per table on a terminal unless --limit says otherwise


def review(
    pcaps: Annotated[list[Path], typer.Argument(
        help="pcap/pcapng files, or capture directories (with manifest.json)",
        readable=False)],  # an unreadable file: our one error line, not click's box
    *,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
    order: Annotated[str, typer.Option(
        help="the option's byte order: auto (decided per flow), host or network")] = "auto",
    role: Annotated[str | None, typer.Option(
        help="where files without a manifest were captured: client, lb-node, "
             "backend-node or pod")] = None,
    limit: Annotated[int | None, typer.Option(
        min=0, show_default=False,
        help=f"rows per table (0: all; default: all when piped, {TERMINAL_ROWS} on a "
             "terminal)")] = None,
    partial: Annotated[bool, typer.Option(
        "--partial", help="review a truncated file up to where it breaks")] = False,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress",
        help="progress bar on stderr (default: for files over 32 MiB)")] = None,
) -> None:
    """List the DSR flows of captures and flag broken DSR replies.

    Exit status: 0 no error found, 1 an error-severity finding (e.g. a reply
    not rewritten to the service address), 2 unreadable input.
    """
    from rich.text import Text

    from lab.check.review import ReviewError, targets

    forced, the_role = _order(order), _role(role)
    if limit is None:  # piped (grep, a file, a CI log): every row; on a terminal a screenful
        limit = TERMINAL_ROWS if on_terminal() else 0
    try:
        todo = targets(pcaps)
    except ReviewError as exc:
        fail(str(exc), 2)
    results, errors = _review_all(todo, forced, the_role, partial=partial, progress=progress,
                                  show=None if json_out else lambda r: print_result(r, limit))
    diagnoses = _diagnose_sets(pcaps)
    if json_out:
        _print_json(results, errors, diagnoses)
    else:
        if len(results) > 1:
            print_overview(results)
        for directory, lines in diagnoses.items():
            for line in lines:
                console.print(Text.assemble(("diagnosis: ", "bold red"), f"{directory}: {line}"))
    if errors:
        raise typer.Exit(2)
    if any(r.count("error") for r in results) or any(diagnoses.values()):
        raise typer.Exit(1)


def _diagnose_sets(paths: list[Path]) -> dict[str, list[str]]:
    """The capture-set rules (lab.check.diagnose) on each capture directory given."""
    from lab.check.review.inputs import is_capture_set

    sets = [p for p in paths if is_capture_set(p)]
    if not sets:
        return {}
    from lab.capture.capdir import CaptureDir
    from lab.check.diagnose import diagnose
    from lab.errors import LabError

    out: dict[str, list[str]] = {}
    for p in sets:
        try:
            out[str(p)] = [d.text() for d in diagnose(CaptureDir.load(p))]
        except (LabError, OSError) as exc:  # the file review above said what it could
            note("error", f"{p}: no diagnosis: {exc}", "red")
    return out


def _order(order: str) -> OptionOrder | None:
    from lab.wire.dsropt import ORDERS

    if order == "auto":
        return None
    if order not in ORDERS:
        fail(f"--order must be auto, host or network, not {order!r}", 2)
    return order


def _role(role: str | None) -> Role | None:
    from lab.capture.layout import ROLES

    if role is not None and role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}", 2)
    return role


def _review_all(todo: list[Target], order: OptionOrder | None, role: Role | None, *,
                partial: bool, progress: bool | None,
                show: Callable[[ReviewResult], None] | None,
                ) -> tuple[list[ReviewResult], list[PcapError]]:
    """Review each target in turn; ``show`` each result as it comes (None: JSON later).

    A file that cannot be read is an error line on stderr (not with JSON) and
    the next file is reviewed.
    """
    from lab.check.review import review as review_file
    from lab.wire.pcapread import PcapError

    results: list[ReviewResult] = []
    errors: list[PcapError] = []
    for t in todo:
        try:
            size = os.stat(t.path).st_size
        except (OSError, ValueError):  # the review says what the path is
            size = 0
        bar = progress if progress is not None else size >= PROGRESS_MIN_BYTES
        try:
            with _progress(t.path, size, bar) as tick:
                r = review_file(t.path, order=order, role=t.role or role, point=t.point,
                                partial=partial, progress=tick)
        except PcapError as exc:
            errors.append(exc)
            if show is not None:
                hint = " (--partial reviews the packets before it)" if exc.truncated else ""
                note("error", f"{exc}{hint}", "red")
            continue
        results.append(r)
        if show is not None:
            show(r)
    return results, errors


@contextlib.contextmanager
def _progress(path: Path, size: int, show: bool,
              ) -> Iterator[Callable[[int, int], None] | None]:
    """A Rich progress bar on stderr, as a review progress callback (None: no bar).

    Only when stderr is a terminal: a bar cannot be drawn into a pipe or log.
    """
    if not (show and err.is_terminal):
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                  DownloadColumn(), TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(f"reviewing {path.name}", total=size)

        def tick(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield tick


def _print_json(results: list[ReviewResult], errors: list[PcapError],
                diagnoses: dict[str, list[str]]) -> None:
    doc: dict[str, Any] = {
        "files": [r.to_dict() for r in results],
        "diagnoses": diagnoses,
        "errors": [{"path": e.path, "offset": e.offset, "message": e.reason,
                    "truncated": e.truncated} for e in errors],
    }
    # indented for a terminal, compact (fast, one line) for a pipe
    sys.stdout.write(json.dumps(doc, indent=2 if sys.stdout.isatty() else None) + "\n")


# -- one file's result ---------------------------------------------------------------------


def print_result(r: ReviewResult, limit: int) -> None:
    """A file's header line, its services (when several), flows and findings."""
    _print_header(r)
    if len(r.services) > 1:
        _print_services(r)
    if r.flows:
        _print_flows(r, limit)
    if r.findings:
        _print_findings(r, limit)
    elif r.flows:
        console.print("  [green]no findings[/]")
    else:
        console.print("  no DSR option in this file (IPv4 option 0x9a length 8 first, IPv6 "
                      "destination option 0x1b, Geneve option 0x014b/0x81)")


def _print_header(r: ReviewResult) -> None:
    from rich.text import Text
    where = f" ({r.point}, {r.role})" if r.point else (f" (role {r.role})" if r.role else "")
    console.print(Text.assemble(
        (r.path, "bold"),
        f"{where}: {r.format}, {', '.join(r.linktypes)}; {r.packets} packets, "
        f"{r.ipv4_packets} IPv4, " + (f"{r.ipv6_packets} IPv6, " if r.ipv6_packets else "")
        + f"{r.option_packets} with the DSR option first; "
        f"{len(r.flows)} DSR flows ", (f"({r.seconds * 1000:.0f} ms)", "dim")))
    if r.truncated_at is not None:
        console.print(f"  file truncated at byte {r.truncated_at}; reviewed the packets "
                      "before it", style="yellow", markup=False)
    if r.skipped_linktypes:
        skipped = ", ".join(f"{k}: {v}" for k, v in r.skipped_linktypes.items())
        console.print(f"  not decoded (link type): {skipped}", style="yellow", markup=False)


def _statuses(flows: list[DsrFlow]) -> Text:
    """``rewritten: 3, no-reply: 1``, each status in its colour."""
    from rich.text import Text
    counts: dict[str, int] = {}
    for f in flows:
        counts[f.status] = counts.get(f.status, 0) + 1
    return Text(", ").join(Text.assemble((k, _STATUS_STYLE.get(k, "")), f": {v}")
                           for k, v in counts.items())


def _print_services(r: ReviewResult) -> None:
    rows = []
    for name, flows in r.services.items():
        orders = sorted({_how(f) if f.order_basis == "carrier" else
                         f"{f.order} ({f.order_basis})" for f in flows})
        backends = sorted({str(f.backend) for f in flows})
        more = " ..." if len(backends) > BACKENDS_SHOWN else ""
        rows.append((name, ", ".join(orders), str(len(flows)),
                     ", ".join(backends[:BACKENDS_SHOWN]) + more, _statuses(flows)))
    table(("service", "byte order", "flows", "backends", "status"), rows,
          title="services named by DSR options")


def _how(f: DsrFlow) -> str:
    """How the service travelled: the IPv4 option's byte order (``host``), ``IPv6
    option`` or ``Geneve``."""
    if f.dispatch == "geneve":
        return "Geneve"
    return "IPv6 option" if f.order_basis == "carrier" else f.order


def _print_flows(r: ReviewResult, limit: int) -> None:
    from rich.text import Text
    shown = r.flows if limit <= 0 else r.flows[:limit]
    table(("frame", "proto", "client", "backend", "service", "option", "replies svc/pod",
           "status"),
          ((str(f.first_frame), f.proto, str(f.client), str(f.backend),
            f"{f.service} ({_how(f)})", f.option_hex,
            f"{f.rewritten_replies}/{f.unrewritten_replies}",
            Text(f.status, _STATUS_STYLE.get(f.status, ""))) for f in shown),
          title="DSR flows",
          leave_out=("option", "replies svc/pod", "proto", "service", "backend"))
    if len(shown) < len(r.flows):
        console.print(f"  ... and {len(r.flows) - len(shown)} more flows "
                      "(--limit 0 for all, --json for everything)", style="dim", markup=False)


def _print_findings(r: ReviewResult, limit: int) -> None:
    from rich.text import Text
    shown = r.findings if limit <= 0 else r.findings[:limit]
    table(("severity", "frame", "kind", "what"),
          ((Text(x.severity, _SEV_STYLE[x.severity]), str(x.frame), x.kind, x.message)
           for x in shown),
          title="findings")
    if len(shown) < len(r.findings):
        console.print(f"  ... and {len(r.findings) - len(shown)} more findings", style="dim",
                      markup=False)


def print_overview(results: list[ReviewResult]) -> None:
    """One line per file reviewed: where, what, how many errors and warnings."""
    from rich.text import Text
    def count(n: int, style: str) -> Text:
        return Text(str(n), style if n else "")

    table(("capture", "role", "packets", "with option", "DSR flows", "status", "errors",
           "warnings"),
          ((r.point or r.path, r.role or "-", str(r.packets), str(r.option_packets),
            str(len(r.flows)), _statuses(r.flows) or "-", count(r.count("error"), "bold red"),
            count(r.count("warning"), "yellow")) for r in results),
          title="overview")
