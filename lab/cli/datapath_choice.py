"""The ``--datapath`` and ``--cilium-src`` options of ``run`` and ``up``: which
datapath the netns backend's nodes run, as backend options."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from lab.cli.output import fail, one_line_errors


class NodeDatapath(StrEnum):
    lab = "lab"
    cilium = "cilium"
    none = "none"


DatapathOption = Annotated[NodeDatapath, typer.Option(
    "--datapath", help="what the nodes run: lab (bpf/dsr.c, the lab's model of Cilium's "
    "DSR), cilium (Cilium's own programs, built from --cilium-src) or none")]
CiliumSrcOption = Annotated[Path | None, typer.Option(
    metavar="PATH", help="with --datapath cilium: a Cilium checkout, its bpf/, or a bpf/ "
    "tarball (default: $DSRLAB_CILIUM_SRC)", show_default=False)]


def backend_options(datapath: NodeDatapath, cilium_src: Path | None) -> dict[str, Any]:
    """The netns backend's options for the choice; a bad or missing Cilium source is
    one error line, before anything starts."""
    if datapath is not NodeDatapath.cilium:
        if cilium_src is not None:
            fail("--cilium-src goes with --datapath cilium", code=2)
        return {"datapath": datapath is NodeDatapath.lab}
    from lab.datapath.cilium.source import choose
    from lab.env.netns.cilium import CiliumDatapaths

    with one_line_errors():
        source = choose(cilium_src)
    return {"datapath": True, "datapaths": CiliumDatapaths(source)}
