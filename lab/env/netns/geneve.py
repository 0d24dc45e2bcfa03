"""Geneve dispatch (``load_balancer.dispatch: geneve``) on the netns backend.

The lab's datapath writes and reads Geneve itself (``bpf/lib/geneve.h``), so
it needs no kernel tunnel device: only the DSR dispatch is encapsulated, the
rest of the inter-node traffic keeps the lab's native routes. Cilium's own
datapath sends Geneve through a kernel Geneve device (``cilium_geneve``,
``external``): :func:`refusal` tries to make one in a scratch lab namespace
and says so in one line when the kernel cannot (built without CONFIG_GENEVE).
"""

from __future__ import annotations

import functools
import subprocess

from lab.env.netns.datapath import LabDatapaths, NodeDatapaths
from lab.model.topology import Topology
from lab.plumbing import names, nsutil

PROBE_DEVICE = "dsrlab-gnv0"


@functools.cache
def kernel_geneve_problem() -> str | None:
    """None when a Geneve device (``type geneve external``) can be made here, else
    what ``ip link`` said; tried once per process, in a namespace of its own."""
    name = names.netns_name(names.new_run_id(), "gnv-probe")
    with nsutil.scratch(name):
        proc = subprocess.run(
            nsutil.exec_argv(name, ["ip", "link", "add", PROBE_DEVICE, "type", "geneve",
                                    "external"]),
            capture_output=True, text=True, check=False, timeout=30)
    if proc.returncode == 0:
        return None
    said = " ".join(proc.stderr.split()).removeprefix("Error: ").rstrip(".")
    return said or f"exit {proc.returncode}"


def refusal(topology: Topology, datapaths: NodeDatapaths | None) -> str | None:
    """Why the netns backend cannot run ``topology``'s DSR dispatch with
    ``datapaths`` (None: it can)."""
    dispatch = topology.load_balancer.dispatch
    where = topology.source or topology.name
    if dispatch == "opt" or datapaths is None:
        return None
    if dispatch != "geneve":
        return (f"{where}: load_balancer.dispatch: the netns backend carries the service "
                f"in an IPv4 option (opt) or in Geneve (geneve), not {dispatch}")
    if isinstance(datapaths, LabDatapaths):
        return None
    problem = kernel_geneve_problem()
    if problem is not None:
        return (f"{where}: load_balancer.dispatch: geneve on Cilium's datapath needs a kernel "
                f"Geneve device, and this kernel has none (ip link add type geneve external: "
                f"{problem}); use --datapath lab")
    return None
