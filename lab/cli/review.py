"""``dsrlab review`` and ``dsrlab wireshark``: faces over lab.check.review and .wireshark.

Registered in :mod:`lab.cli` with ``app.command("review")(review)`` and
``app.command("wireshark")(wireshark)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lab.capture.layout import ROLES, Role
from lab.check import wireshark as ws
from lab.check.review import ReviewError, ReviewResult, targets
from lab.check.review import review as review_file
from lab.wire.dsropt import ORDERS, OptionOrder
from lab.wire.pcapread import PcapError

console = Console(highlight=False)
plain = Console(highlight=False, soft_wrap=True)  # paths and commands: never wrapped
err = Console(stderr=True, highlight=False)

PROGRESS_MIN_BYTES = 32 * 1024 * 1024
_STATUS_STYLE = {"rewritten": "green", "lb-node": "cyan", "pod-side": "yellow",
                 "not-rewritten": "bold red", "no-reply": "yellow"}
_SEV_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def _print_result(r: ReviewResult, limit: int) -> None:
    where = f" ({r.point}, {r.role})" if r.point else (f" (role {r.role})" if r.role else "")
    console.print(f"[bold]{escape(r.path)}[/]{escape(where)}: {r.format}, "
                  f"{', '.join(r.linktypes)}; {r.packets} packets, {r.ipv4_packets} IPv4, "
                  f"{r.option_packets} with the DSR option first; {len(r.flows)} DSR flows "
                  f"[dim]({r.seconds * 1000:.0f} ms)[/]")
    if r.truncated_at is not None:
        console.print(f"  [yellow]file truncated at byte {r.truncated_at}; reviewed the "
                      "packets before it[/]")
    if r.skipped_linktypes:
        skipped = ", ".join(f"{k}: {v}" for k, v in r.skipped_linktypes.items())
        console.print(f"  [yellow]not decoded (link type): {skipped}[/]")
    if len(r.services) > 1:
        svc = Table(title="services named by DSR options", title_justify="left")
        for col in ("service", "byte order", "flows", "backends", "status"):
            svc.add_column(col)
        for name, flows in r.services.items():
            statuses: dict[str, int] = {}
            for f in flows:
                statuses[f.status] = statuses.get(f.status, 0) + 1
            orders = sorted({f"{f.order} ({f.order_basis})" for f in flows})
            backends = sorted({str(f.backend) for f in flows})
            svc.add_row(name, ", ".join(orders), str(len(flows)),
                        ", ".join(backends[:6]) + (" ..." if len(backends) > 6 else ""),
                        ", ".join(f"[{_STATUS_STYLE.get(k, '')}]{k}[/]: {v}"
                                  for k, v in statuses.items()))
        console.print(svc)
    if r.flows:
        shown = r.flows if limit <= 0 else r.flows[:limit]
        t = Table(title="DSR flows", title_justify="left")
        for col in ("frame", "proto", "client", "backend", "service", "option", "replies "
                    "svc/pod", "status"):
            t.add_column(col)
        for f in shown:
            t.add_row(str(f.first_frame), f.proto, str(f.client), str(f.backend),
                      f"{f.service} ({f.order})", f.option_hex,
                      f"{f.rewritten_replies}/{f.unrewritten_replies}",
                      f"[{_STATUS_STYLE.get(f.status, '')}]{f.status}[/]")
        console.print(t)
        if len(shown) < len(r.flows):
            console.print(f"  [dim]... and {len(r.flows) - len(shown)} more flows "
                          "(--limit 0 for all, --json for everything)[/]")
    if r.findings:
        shown_f = r.findings if limit <= 0 else r.findings[:limit]
        t = Table(title="findings", title_justify="left")
        for col in ("severity", "frame", "kind", "what"):
            t.add_column(col)
        for x in shown_f:
            t.add_row(f"[{_SEV_STYLE[x.severity]}]{x.severity}[/]", str(x.frame), x.kind,
                      escape(x.message))
        console.print(t)
        if len(shown_f) < len(r.findings):
            console.print(f"  [dim]... and {len(r.findings) - len(shown_f)} more findings[/]")
    elif r.flows:
        console.print("  [green]no findings[/]")
    else:
        console.print("  no DSR option (type 0x9a, length 8) in this file")


@contextlib.contextmanager
def _progress(path: Path, size: int, show: bool,
              ) -> Iterator[Callable[[int, int], None] | None]:
    """A Rich progress bar on stderr, as a review progress callback (None: no bar)."""
    if not show:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(f"reviewing {path.name}", total=size)

        def tick(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield tick


def review(
    pcaps: Annotated[list[Path], typer.Argument(
        help="pcap/pcapng files, or capture directories (with manifest.json)")],
    *,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
    order: Annotated[str, typer.Option(
        help="the option's byte order: auto (decided per flow), host or network")] = "auto",
    role: Annotated[str | None, typer.Option(
        help="where files without a manifest were captured: client, lb-node, "
             "backend-node or pod")] = None,
    limit: Annotated[int, typer.Option(help="rows per table (0: all)")] = 30,
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
    if order != "auto" and order not in ORDERS:
        err.print(f"[red]error:[/] --order must be auto, host or network, not {order!r}")
        raise typer.Exit(2)
    if role is not None and role not in ROLES:
        err.print(f"[red]error:[/] --role must be one of {', '.join(ROLES)}, not {role!r}")
        raise typer.Exit(2)
    forced: OptionOrder | None = None if order == "auto" else order  # type: ignore[assignment]
    the_role: Role | None = role
    try:
        todo = targets(pcaps)
    except ReviewError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    results: list[ReviewResult] = []
    errors: list[PcapError] = []
    for t in todo:
        try:
            size = t.path.stat().st_size if t.path.exists() else 0
            show = progress if progress is not None else size >= PROGRESS_MIN_BYTES
            with _progress(t.path, size, show) as tick:
                r = review_file(t.path, order=forced, role=t.role or the_role,
                                point=t.point, partial=partial, progress=tick)
        except PcapError as exc:
            errors.append(exc)
            if not json_out:
                hint = " (--partial reviews the packets before it)" if exc.truncated else ""
                err.print(f"[red]error:[/] {escape(str(exc))}{hint}")
            continue
        results.append(r)
        if not json_out:
            _print_result(r, limit)
    if not json_out and len(results) > 1:
        _print_overview(results)
    if json_out:
        doc: dict[str, Any] = {
            "files": [r.to_dict() for r in results],
            "errors": [{"path": e.path, "offset": e.offset, "message": e.reason,
                        "truncated": e.truncated} for e in errors],
        }
        # indented for a terminal, compact (fast, one line) for a pipe
        sys.stdout.write(json.dumps(doc, indent=2 if sys.stdout.isatty() else None) + "\n")
    if errors:
        raise typer.Exit(2)
    if any(r.count("error") for r in results):
        raise typer.Exit(1)


def wireshark(
    check: Annotated[bool, typer.Option(
        "--check", help="load the script into tshark and list the fields it adds")] = False,
    install_it: Annotated[bool, typer.Option(
        "--install", help="copy the script into the personal Lua plugins folder")] = False,
    path_only: Annotated[bool, typer.Option(
        "--path", help="print only the installed .lua path")] = False,
) -> None:
    """How to load the DSR option dissector into Wireshark or tshark."""
    try:
        lua = ws.lua_path()
    except ws.WiresharkError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if path_only:
        sys.stdout.write(f"{lua}\n")
        return
    info: ws.TsharkInfo | None
    try:
        info = ws.tshark_info()
    except ws.WiresharkError as exc:
        info = None
        err.print(f"[yellow]note:[/] {exc}")
    personal = info.personal_lua_dir if info else (
        Path.home() / ".local" / "lib" / "wireshark" / "plugins")
    plain.print(f"Lua dissector:  {lua}")
    plain.print(f"tshark:         tshark -X {ws.lua_flag(lua)} -r FILE.pcap -Y dsropt")
    plain.print("                tshark -X ... -r FILE.pcap -Y 'dsropt.service.ip == "
                  "172.18.0.2' -O dsropt")
    plain.print(f"Wireshark:      wireshark -X {ws.lua_flag(lua)} FILE.pcap")
    plain.print(f"for good:       mkdir -p {personal} && cp {lua} {personal}/")
    plain.print("                (the personal Lua plugins folder: tshark -G folders; "
                  "or `dsrlab wireshark --install`)")
    plain.print(f"byte order:     -o {ws.ORDER_PREF}:auto|host|network (default auto: "
                  "the plausible reading; Cilium 1.13-1.15 write host order)")
    plain.print("fields:")
    for name, what in ws.FIELDS.items():
        plain.print(f"  {name:<22} {what}")
    if info is not None:
        plain.print(f"tshark:         {info.version}; "
                      f"{info.lua + ' built in' if info.lua else '[red]built without Lua[/]'}")
        if info.init_lua is not None:
            plain.print(f"init.lua:       {info.init_lua}: enable_lua = "
                          f"{_lua_bool(info.enable_lua)}, run_user_scripts_when_superuser = "
                          f"{_lua_bool(info.run_as_superuser)}")
        if os.geteuid() == 0:
            if info.blocked_for_root:
                plain.print("[red]as root, Wireshark will silently ignore the script[/] "
                              "(run_user_scripts_when_superuser = false): run tshark as "
                              "another user, or set it to true in init.lua")
            else:
                plain.print("as root:        user Lua scripts run (tshark warns "
                              "'Running as user \"root\"', harmless)")
    rc = 0
    if install_it:
        dest = ws.install(personal)
        plain.print(f"installed:      {dest}")
    if check:
        try:
            fields = ws.check_loads()
        except ws.WiresharkError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        if fields:
            plain.print(f"[green]check: tshark loads it[/] ({len(fields)} dsropt fields: "
                          f"{', '.join(sorted(fields))})")
        else:
            plain.print("[red]check: tshark did not load it[/] (no dsropt fields)")
            rc = 1
    if rc:
        raise typer.Exit(rc)


def _print_overview(results: list[ReviewResult]) -> None:
    t = Table(title="overview", title_justify="left")
    for col in ("capture", "role", "packets", "with option", "DSR flows", "status",
                "errors", "warnings"):
        t.add_column(col)
    for r in results:
        statuses: dict[str, int] = {}
        for f in r.flows:
            statuses[f.status] = statuses.get(f.status, 0) + 1
        errors, warnings = r.count("error"), r.count("warning")
        t.add_row(escape(r.point or r.path), r.role or "-", str(r.packets), str(r.option_packets),
                  str(len(r.flows)),
                  ", ".join(f"[{_STATUS_STYLE.get(k, '')}]{k}[/]: {v}"
                            for k, v in statuses.items()) or "-",
                  f"[bold red]{errors}[/]" if errors else "0",
                  f"[yellow]{warnings}[/]" if warnings else "0")
    console.print(t)


def _lua_bool(v: bool | None) -> str:
    return "not set" if v is None else ("true" if v else "false")
