"""Cilium's own objects under the running kernel's verifier: one report per version.

:func:`verify_topology` loads what a topology's nodes load on ``--datapath
cilium`` (every node's ``bpf_host``, each pod's ``bpf_lxc``, ``bpf_overlay``
with a tunnel), built for the running kernel's probed features, node by node
with the node's maps shared as the agent shares them, and reports per
program (``bpf_host/cil_from_netdev``, ``bpf_lxc/tail_handle_ipv4``...) the
instructions the verifier processed: the largest figure over the nodes, since
each node's object is compiled with its own headers. A rejection names the
object and program, the count the verifier printed and its log's tail (the
report is :class:`lab.datapath.verifier.VerifierReport`, its ``datapath``
``cilium v1.13.0``...). The kernel matrix writes them per kernel (the pytest
option ``--dsrlab-cilium-verifier-report``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from lab.datapath import libbpf
from lab.datapath.cilium import probes
from lab.datapath.cilium.build import build_node, build_overlay
from lab.datapath.cilium.load import CiliumNode
from lab.datapath.cilium.plan import check_supported, lb_params, plan_node
from lab.datapath.cilium.source import ENV_VAR, CiliumSource, discover
from lab.datapath.errors import DatapathError
from lab.datapath.loader import with_processed
from lab.datapath.verifier import ProgramLoad, VerifierReport, log_tail, rejection_figures
from lab.model.scenario import TOPOLOGY_DIR
from lab.model.topology import Topology

SEED_TOPOLOGY = TOPOLOGY_DIR / "seed.yaml"  # what the matrix's reports load (scenarios/seed)


def datapath_name(source: CiliumSource) -> str:
    return f"cilium {source.version}"


def verify_topology(source: CiliumSource, topology: Topology,
                    cache_dir: Path | None = None) -> VerifierReport:
    """Every object of ``topology``'s nodes through this kernel's verifier."""
    kernel = platform.release()
    features = probes.running()
    head = {"kernel": kernel, "datapath": datapath_name(source),
            "features": features.describe()}
    if os.geteuid() != 0:
        return VerifierReport(**head, outcome="skip", reason="needs root (BPF)")
    try:
        check_supported(topology, source.version)
    except DatapathError as exc:
        return VerifierReport(**head, outcome="skip", reason=str(exc).splitlines()[0])
    lb = lb_params(topology)
    sizes: dict[str, tuple[int | None, int]] = {}
    for node in topology.nodes:
        plan = plan_node(topology, node.name)
        current = "bpf_host"
        try:
            host, lxcs = build_node(source, plan.node, plan.pods, lb, cache_dir,
                                    features=features)
            objects = [("host", "bpf_host", host.path)]
            if plan.node.encap_ifindex is not None:
                overlay = build_overlay(source, plan.node, lb, cache_dir, features=features)
                objects.append(("overlay", "bpf_overlay", overlay.path))
            objects += [(pod.name, "bpf_lxc", lxcs[pod.name].path) for pod in plan.pods]
            with CiliumNode(node.name) as loaded:
                for role, obj_name, path in objects:
                    current = obj_name
                    obj = loaded.load(role, path)
                    for pname, fd in obj.programs.items():
                        _keep_largest(sizes, f"{obj_name}/{pname}", with_processed(
                            libbpf.prog_sizes(fd), obj.processed.get(pname)))
        except DatapathError as exc:
            program, processed = rejection_figures(exc.log)
            return VerifierReport(
                **head, outcome="fail", reason=f"{node.name}: {str(exc).splitlines()[0]}",
                failed_program=f"{current}/{program}" if program else current,
                processed_insns=processed, log_tail=log_tail(exc.log))
    return VerifierReport(**head, outcome="pass", programs=[
        ProgramLoad(program=name, verified_insns=v, xlated_insns=x)
        for name, (v, x) in sorted(sizes.items())])


def _keep_largest(sizes: dict[str, tuple[int | None, int]], name: str,
                  got: tuple[int | None, int]) -> None:
    have = sizes.get(name)
    if have is None or (got[0] or 0, got[1]) > (have[0] or 0, have[1]):
        sizes[name] = got


def verify_sources(where: str | None, topology: Topology,
                   cache_dir: Path | None = None) -> list[VerifierReport]:
    """A report per Cilium source at ``where`` (``$DSRLAB_CILIUM_SRC``), oldest first;
    one skip saying why when there is none."""
    kernel = platform.release()
    if not where:
        return [VerifierReport(kernel=kernel, datapath="cilium", outcome="skip",
                               reason=f"no Cilium source: {ENV_VAR} is not set")]
    try:
        sources = discover(where)
    except DatapathError as exc:
        return [VerifierReport(kernel=kernel, datapath="cilium", outcome="skip",
                               reason=str(exc).splitlines()[0])]
    return [verify_topology(s, topology, cache_dir) for s in sources]
