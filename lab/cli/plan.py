"""``dsrlab plan TOPOLOGY``: what the kind backend would run, before it runs (the
kind config, Cilium's Helm values in its version's spelling, the commands with
their deadlines, the manifests); ``--json`` for machines. The netns backend
has no plan (it installs nothing and is up in well under a second), so
``--backend`` offers kind only and names the way for netns."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lab.cli.output import fail, one_line_errors


def plan(
    topology: Annotated[Path, typer.Argument(help="topology YAML, e.g. topologies/seed.yaml")],
    *,
    backend: Annotated[str, typer.Option(
        help="kind, the one backend with a plan (a netns lab installs nothing: "
             "`dsrlab up TOPOLOGY` makes it)")] = "kind",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Print what a backend would do with a topology, doing nothing."""
    from lab.env.kind.plan import build_plan
    from lab.model.topology import load_topology

    if backend == "netns":
        fail("the netns backend has no plan: it installs nothing, and `dsrlab up TOPOLOGY` "
             "makes the lab in well under a second (`dsrlab down RUN_ID` removes it)", code=2)
    if backend != "kind":
        fail(f"--backend: only kind has a plan, not {backend!r}", code=2)
    with one_line_errors():
        made = build_plan(load_topology(topology))
    # plain text whole (a pipe, a CI log): no Rich markup, no wrapping
    sys.stdout.write(made.to_json() if json_out else made.to_text())
