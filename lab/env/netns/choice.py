"""Which datapath a netns lab's nodes run: the command's choice, else the topology's.

The precedence: ``--datapath`` (``--dsrlab-datapath``) when given, else the
topology's ``datapath:`` (``lab`` unless it says ``cilium``). Cilium's programs
are built from the source ``--cilium-src`` names, else ``$DSRLAB_CILIUM_SRC``;
none found is one :class:`~lab.datapath.cilium.source.CiliumSourceError` naming
what asked for Cilium (the option, or the topology file and its field), raised
before any lab exists. :func:`refusal` says why Cilium's datapath cannot run a
topology (``check_supported``), for a caller that skips such a scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lab.env.netns.datapath import LabDatapaths, NodeDatapaths
from lab.model.topology import Topology

if TYPE_CHECKING:
    from lab.datapath.cilium.source import CiliumSource

CHOICES = ("lab", "cilium", "none")


def chosen(choice: str | None, topology: Topology) -> str:
    """The datapath that runs (one of :data:`CHOICES`): ``choice`` when given, else
    the topology's."""
    if choice is not None and choice not in CHOICES:
        raise ValueError(f"no datapath {choice!r} (known: {', '.join(CHOICES)})")
    return choice if choice is not None else topology.datapath


def node_datapaths(choice: str | None, topology: Topology,
                   cilium_src: Path | str | None = None, *,
                   source: CiliumSource | None = None) -> NodeDatapaths | None:
    """The recipe for ``NetnsBackend(datapaths=...)`` (None: no datapath at all).
    ``source``: a Cilium source chosen already (shared by several labs)."""
    which = chosen(choice, topology)
    if which == "none":
        return None
    if which == "lab":
        return LabDatapaths()
    from lab.datapath.cilium.source import choose  # noqa: PLC0415  (Cilium's on use only)
    from lab.env.netns.cilium import CiliumDatapaths  # noqa: PLC0415

    if source is None:
        asked = ("--datapath cilium" if choice is not None
                 else f"{topology.source or topology.name}: datapath: cilium")
        source = choose(cilium_src, wanted_by=asked)
    return CiliumDatapaths(source)


def refusal(datapaths: NodeDatapaths | None, topology: Topology) -> str | None:
    """Why ``datapaths`` cannot run ``topology`` (None: it can): Cilium's version and
    the settings the lab does not run on Cilium's datapath."""
    from lab.datapath.cilium.plan import UnsupportedByCilium, check_supported  # noqa: PLC0415
    from lab.env.netns.cilium import CiliumDatapaths  # noqa: PLC0415

    if not isinstance(datapaths, CiliumDatapaths):
        return None
    try:
        check_supported(topology, datapaths.source.version)
    except UnsupportedByCilium as exc:
        return str(exc)
    return None
