"""``dsrlab plan --backend kind TOPOLOGY``: what the kind backend would run, before it
runs (the kind config, Cilium's Helm values in its version's spelling, the
commands with their deadlines, the manifests); ``--json`` for machines."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lab.cli.output import fail, one_line_errors


class PlanBackend(StrEnum):
    kind = "kind"
    netns = "netns"


def plan(
    topology: Annotated[Path, typer.Argument(help="topology YAML, e.g. topologies/seed.yaml")],
    *,
    backend: Annotated[PlanBackend, typer.Option(help="the backend whose plan to print")] =
    PlanBackend.kind,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Print what a backend would do with a topology, doing nothing."""
    from lab.env.kind.plan import build_plan
    from lab.model.topology import load_topology

    if backend is PlanBackend.netns:
        fail("the netns backend installs nothing: `dsrlab up TOPOLOGY` makes the lab in "
             "well under a second (and `dsrlab down RUN_ID` removes it)", code=2)
    with one_line_errors():
        made = build_plan(load_topology(topology))
    # plain text whole (a pipe, a CI log): no Rich markup, no wrapping
    sys.stdout.write(made.to_json() if json_out else made.to_text())
