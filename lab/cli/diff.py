"""``dsrlab diff A B``: two capture sets of one scenario compared hop by hop
(lab.check.capdiff)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.output import console, fail

if TYPE_CHECKING:
    from lab.check.capdiff import CaptureDiff


def diff(
    a: Annotated[Path, typer.Argument(help="a capture set folder (with manifest.json)",
                                      show_default=False)],
    b: Annotated[Path, typer.Argument(help="another capture set of the same scenario",
                                      show_default=False)],
    *,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Compare two capture sets of one scenario hop by hop (lab vs Cilium, one Cilium
    release vs another, yesterday vs today).

    The Nth connection of A is paired with the Nth of B; at each role (client, LB
    node, the flow's own backend node and pod) its packets are compared field by
    field, with what differs between any two runs masked (client ports, IP ids,
    ISNs, checksum values, the backend chosen, times). Exit status: 0 the same,
    1 a difference (the first per role shown as expected (A) / got (B)), 2 bad input.
    """
    from lab.check.capdiff import DiffError, diff_folders

    try:
        result = diff_folders(a, b)
    except DiffError as exc:
        fail(str(exc), code=2)
    if json_out:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_diff(result)
    if not result.same:
        raise typer.Exit(1)


def print_diff(d: CaptureDiff) -> None:
    """The two sets, a line per role, each role's first difference, the verdict."""
    from rich.text import Text
    for label, folder, what in (("A", d.a, d.datapath_a), ("B", d.b, d.datapath_b)):
        console.print(Text.assemble(f"{label}: ", (folder, "bold"), f"  ({what})"))
    lines = d.summary_lines()
    if d.flows_a != d.flows_b:  # the flow counts' line comes first
        console.print(Text(lines.pop(0), style="yellow" if d.flows_same else "red"))
    for line, role in zip(lines, d.roles, strict=True):
        console.print(Text(line, style="green" if role.same else "red"))
    for block in d.details():
        console.print(Text(block))
    flows = min(d.flows_a, d.flows_b)
    if d.same:
        console.print(Text.assemble(("SAME", "bold green"), f": {d.scenario}, {flows} flow"
                                    f"{'s' * (flows != 1)} at {len(d.roles)} roles"))
    else:
        roles = sum(not r.same for r in d.roles)
        console.print(Text.assemble(("DIFFERENT", "bold red"), f": {d.scenario}, "
                                    f"{roles} of {len(d.roles)} roles differ"))
