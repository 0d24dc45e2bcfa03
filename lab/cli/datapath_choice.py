"""The ``--datapath`` and ``--cilium-src`` options of ``run`` and ``up``: which
datapath the netns backend's nodes run, as backend options.

Not given, the topology's ``datapath:`` decides (``lab`` unless it says
``cilium``; :mod:`lab.env.netns.choice`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lab.cli.output import fail, one_line_errors

if TYPE_CHECKING:
    from lab.model.topology import Topology


class NodeDatapath(StrEnum):
    lab = "lab"
    cilium = "cilium"
    none = "none"
    both = "both"  # run only: the lab's and Cilium's, each scenario compared hop by hop


DatapathOption = Annotated[NodeDatapath | None, typer.Option(
    "--datapath", help="what the nodes run: lab (bpf/dsr.c, the lab's model of Cilium's "
    "DSR), cilium (Cilium's own programs, built from --cilium-src), none, or (run only) "
    "both: the lab's and each Cilium source's, their captures compared hop by hop "
    "(default: the topology's datapath:, else lab)", show_default=False)]
CiliumSrcOption = Annotated[Path | None, typer.Option(
    metavar="PATH", help="with --datapath cilium (or a topology's datapath: cilium): a "
    "Cilium checkout, its bpf/, or a bpf/ tarball (default: $DSRLAB_CILIUM_SRC)",
    show_default=False)]


CiliumSrcsOption = Annotated[list[Path] | None, typer.Option(
    "--cilium-src", metavar="PATH", help="with --datapath cilium (or a topology's datapath: "
    "cilium): a Cilium checkout, its bpf/, or a bpf/ tarball (default: $DSRLAB_CILIUM_SRC); "
    "with --datapath both, give it once per Cilium version to compare (default: every "
    "source $DSRLAB_CILIUM_SRC names)", show_default=False)]


def check_cilium_src(datapath: NodeDatapath | None, cilium_src: Path | None) -> None:
    """``--cilium-src`` with another ``--datapath`` than cilium (or both, where it
    may be given once per version): exit 2."""
    if cilium_src is not None and datapath not in (None, NodeDatapath.cilium,
                                                    NodeDatapath.both):
        fail("--cilium-src goes with --datapath cilium", code=2)


def one_cilium_src(datapath: NodeDatapath | None, given: list[Path] | None) -> Path | None:
    """The one ``--cilium-src`` of a run on one datapath (several only with both)."""
    if given and len(given) > 1 and datapath is not NodeDatapath.both:
        fail("--cilium-src is given once (several go with --datapath both)", code=2)
    first = given[0] if given else None
    check_cilium_src(datapath, first)
    return first


def backend_options(datapath: NodeDatapath | None, cilium_src: Path | None,
                    topology: Topology) -> dict[str, Any]:
    """The netns backend's options for the choice (the command's, else the
    topology's); a bad or missing Cilium source is one error line, before anything
    starts."""
    from lab.env.netns.choice import chosen, node_datapaths

    check_cilium_src(datapath, cilium_src)
    choice = None if datapath is None else datapath.value
    if cilium_src is not None and chosen(choice, topology) != "cilium":
        fail(f"--cilium-src goes with --datapath cilium (topology {topology.name} says "
             f"datapath: {topology.datapath})", code=2)
    with one_line_errors():
        datapaths = node_datapaths(choice, topology, cilium_src)
    return {"datapath": datapaths is not None, "datapaths": datapaths}
