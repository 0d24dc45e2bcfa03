"""The kind backend: the topology as a real kind cluster with Cilium installed by
Helm (or an existing cluster, by kubeconfig), behind the same contract as the
netns backend (:class:`lab.env.base.Lab`), so scenarios, captures, traces and the
report run unchanged.

``up`` never creates over a kind cluster that is already there (``kind get clusters``
first) and records a cluster for teardown only once it has created it
(:mod:`.residue`), so the lab deletes nothing it did not make; it runs the
plan (:mod:`.plan`) with every call under its deadline and its output kept
(:mod:`.tools`), waits by condition (nodes Ready, Cilium's agents rolled out,
``cilium status --verbose`` saying the topology's mode, the workloads rolled out,
every service with ready endpoints), then finds the hosts: the client is this
machine on the kind network's bridge; a node is its container's network
namespace (its PID from the Docker SDK); a pod is its own network namespace (a
process of this machine in the pod's cgroups, found by the pod's UID). Commands run in a node's or
a pod's namespace with this machine's own binaries through ``nsenter`` (tcpdump,
curl): nothing is installed into a node or a pod.

The topology the lab returns is the cluster's: the nodes' addresses kind gave,
the pods the DaemonSet made (names and addresses), so the traces, which name
roles and hosts, never literals, apply as they are.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import yaml

from lab.atomic import write_text
from lab.env.base import BackendError, LabHost, LeftBy
from lab.env.kind import residue
from lab.env.kind.containers import Docker, pod_pid
from lab.env.kind.manifests import RUN_LABEL
from lab.env.kind.plan import KIND_CONFIG_FILE, MANIFESTS_FILE, Command, KindPlan, build_plan
from lab.env.kind.status import (
    ToolOutputError,
    check_cilium,
    control_plane_address,
    parse_cilium_status,
    parse_kind_clusters,
    parse_nodes,
)
from lab.env.kind.tools import Tools
from lab.env.kind.values import agent_cli
from lab.env.state import state_path
from lab.model.topology import Node, Pod, Topology
from lab.plumbing import names, owner
from lab.plumbing.nsmark import LEFT_UP_BY

A = TypeVar("A")
R = TypeVar("R")
KIND_NETWORK = "kind"
ENDPOINTS_DEADLINE_S = 120.0
POLL_S = 1.0


class KindLab:
    """A running kind (or existing) cluster as a lab."""

    backend = "kind"

    def __init__(self, topology: Topology, run_id: str, plan: KindPlan, tools: Tools,
                 hosts: dict[str, LabHost], *, created: bool, record: Path) -> None:
        self.topology = topology
        self.run_id = run_id
        self.plan = plan
        self.tools = tools
        self.hosts = hosts
        self.created = created
        self.record = record
        self._pids: dict[str, int] = {}
        self.pod_uids: dict[str, str] = {}  # pod name -> its UID (kubectl)
        self._closed = False

    # -- running commands on hosts ------------------------------------------------
    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` as run on ``host``: here for the client (this machine), else in the
        node's or pod's network namespace with this machine's binaries."""
        h = self.hosts[host]
        if h.kind == "client":
            return list(argv)
        return ["nsenter", "-t", str(self._pid(h)), "-n", "--", *argv]

    def run(self, host: str, argv: list[str], *, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.exec_argv(host, argv), capture_output=True, text=True,
                              timeout=timeout, check=check, stdin=subprocess.DEVNULL)

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.exec_argv(host, argv), stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr)

    def _pid(self, h: LabHost) -> int:
        """A process of this machine in the host's network namespace (cached): a node's
        container's first process, or any process in a pod's cgroups."""
        if h.name not in self._pids:
            if h.kind == "node":
                self._pids[h.name] = Docker().container_pid(h.netns)
            else:
                uid = self.pod_uids.get(h.name)
                pid = pod_pid(uid) if uid else None
                if pid is None:
                    raise BackendError(f"no process of this machine in pod {h.name} "
                                       f"(uid {uid})")
                self._pids[h.name] = pid
        return self._pids[h.name]

    def datapath_record(self) -> dict[str, str]:
        """The cluster runs Cilium's agent: the version the topology installs."""
        return {"name": "cilium", "version": f"v{self.topology.cluster.cilium_version}"}

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Nothing left to wait for: ``up`` returned once every service had ready
        endpoints (the pods' readiness probes passed)."""

    # -- the end -----------------------------------------------------------------
    def down(self) -> None:
        if self._closed:
            return
        self._closed = True
        done = residue.remove(self.record)  # the cluster, or the lab's own objects
        failed = [d for d in done if not d.startswith("ran: ")]
        self.record.unlink(missing_ok=True)
        owner.release(self.run_id)
        if failed:
            raise BackendError(f"teardown of kind lab {self.run_id}: " + "; ".join(failed))

    def detach(self, *, by: LeftBy = "up") -> Path:
        """Leave the cluster up for ``dsrlab down RUN_ID``: the state file says it was
        left up on purpose (a bare ``dsrlab clean`` leaves it), the record what to
        remove then."""
        self._closed = True
        path = state_path(self.run_id)
        write_text(path, json.dumps({"run_id": self.run_id, "backend": self.backend,
                                   "topology_name": self.topology.name,
                                   "left_up_by": LEFT_UP_BY[by],
                                   "cluster": self.plan.cluster if self.created else None,
                                   "record": str(self.record), "created": time.time()},
                                  indent=2))
        owner.release(self.run_id)
        return path

    def __enter__(self) -> KindLab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()


class KindBackend:
    """Brings topologies up as kind clusters (``kubeconfig``: on an existing cluster,
    creating nothing)."""

    name = "kind"

    def __init__(self, *, kubeconfig: str | None = None, workdir: Path | None = None,
                 state_dir: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.progress = progress
        self.workdir = workdir or Path("build") / "kind"
        self.state_dir = state_dir or owner.OWNER_DIR

    def up(self, topology: Topology, *, run_id: str | None = None) -> KindLab:
        run_id = run_id or names.new_run_id()
        plan = build_plan(topology, run_id)
        folder = self.workdir / run_id
        tools = Tools(folder / "logs", say=self.progress)
        record = self.state_dir / f"{run_id}{residue.SUFFIX}"
        owner.claim(run_id)
        # nothing is the lab's yet: a kind cluster goes into the record once the lab has
        # created it, never before (a cluster of that name may be someone else's)
        residue.record(record, cluster=None, kubeconfig=self.kubeconfig, context=None,
                       label=f"{RUN_LABEL}={run_id}")
        try:
            if self.kubeconfig:
                hosts, topo, uids = self._existing(topology, plan, tools)
            else:
                hosts, topo, uids = self._create(topology, plan, tools, folder, run_id,
                                                 record=record)
        except BaseException:
            residue.remove(record)
            record.unlink(missing_ok=True)
            owner.release(run_id)
            raise
        lab = KindLab(topo, run_id, plan, tools, hosts, created=not self.kubeconfig,
                      record=record)
        lab.pod_uids = uids
        return lab

    # -- a new cluster -------------------------------------------------------------
    def _create(self, t: Topology, plan: KindPlan, tools: Tools, folder: Path,
                run_id: str, *, record: Path
                ) -> tuple[dict[str, LabHost], Topology, dict[str, str]]:
        write_text(folder / KIND_CONFIG_FILE, yaml.safe_dump(plan.kind_config,
                                                             sort_keys=False))
        write_text(folder / MANIFESTS_FILE, yaml.safe_dump_all(plan.manifests,
                                                               sort_keys=False))
        api_server = ""
        for cmd in plan.commands:
            argv = _in_folder(cmd.argv, folder)
            if argv[:2] == ["helm", "install"]:
                argv = _with_api_server(argv, plan, api_server)
            if "endpointslices" in argv:
                wait_endpoints(tools, cmd, argv)
                continue
            out = tools.run(cmd.what, argv, cmd.deadline_s)
            if argv[:3] == ["kind", "get", "clusters"]:
                refuse_existing(t, plan, out.stdout + out.stderr)
            elif argv[:3] == ["kind", "create", "cluster"]:  # now it is the lab's
                residue.record(record, cluster=plan.cluster, kubeconfig=None,
                               context=plan.context, label=f"{RUN_LABEL}={run_id}")
            elif argv[-4:] == ["get", "nodes", "-o", "json"]:
                api_server = _read(control_plane_address, _read(parse_nodes, out.stdout))
            elif argv[-2:] == ["status", "--verbose"]:
                self._check_cilium(t, out.stdout)
        return discover(t, plan, tools, run_id)

    # -- an existing cluster ---------------------------------------------------------
    def _existing(self, t: Topology, plan: KindPlan, tools: Tools
                  ) -> tuple[dict[str, LabHost], Topology, dict[str, str]]:
        """Read only: the nodes, Cilium's mode, the topology's services and their
        endpoints as they are; nothing is created or changed."""
        assert self.kubeconfig is not None
        kubectl = ["kubectl", "--kubeconfig", self.kubeconfig]
        status = tools.run("Cilium's kube-proxy replacement and its mode",
                           [*kubectl, "-n", "kube-system", "exec", "ds/cilium", "-c",
                            "cilium-agent", "--", agent_cli(t), "status", "--verbose"], 60)
        self._check_cilium(t, status.stdout)
        return discover(t, plan, tools, None, kubectl=kubectl)

    @staticmethod
    def _check_cilium(t: Topology, text: str) -> None:
        problems = check_cilium(_read(parse_cilium_status, text), t)
        if problems:
            raise BackendError("Cilium is not running as the topology asks: "
                               + "; ".join(problems))


def refuse_existing(t: Topology, plan: KindPlan, clusters_text: str) -> None:
    """A kind cluster of the plan's name is not the lab's to create nor delete: a one-line
    error naming it and the ways out."""
    if plan.cluster in parse_kind_clusters(clusters_text):
        raise BackendError(
            f"a kind cluster named {plan.cluster} is already here, not made by this run: "
            f"the lab leaves it alone. Give the topology another name ({t.source or 'its'} "
            f"name: and its nodes), or use that cluster read only: kind get kubeconfig "
            f"--name {plan.cluster} > FILE, then --kubeconfig FILE")


def _read(parse: Callable[[A], R], given: A) -> R:
    """A parser's answer; what it cannot read, a backend error."""
    try:
        return parse(given)
    except ToolOutputError as exc:
        raise BackendError(str(exc)) from None


def _in_folder(argv: list[str], folder: Path) -> list[str]:
    """The plan's file names as paths in the run's folder."""
    return [str(folder / a) if a in (KIND_CONFIG_FILE, MANIFESTS_FILE) else a for a in argv]


def _with_api_server(argv: list[str], plan: KindPlan, api_server: str) -> list[str]:
    if not api_server:
        raise BackendError("helm install: the control-plane's address was not read first")
    key = "k8sServiceHost="
    return [f"{key}{api_server}" if a.startswith(key) else a for a in argv]


def wait_endpoints(tools: Tools, cmd: Command, argv: list[str]) -> None:
    """Until the service's EndpointSlices list at least one ready endpoint (polled at
    :data:`POLL_S` under :data:`ENDPOINTS_DEADLINE_S`)."""
    deadline = time.monotonic() + ENDPOINTS_DEADLINE_S
    while True:
        out = tools.run(cmd.what, argv, cmd.deadline_s)
        if ready_endpoints(out.stdout):
            return
        if time.monotonic() > deadline:
            raise BackendError(f"{cmd.what}: no ready endpoint after "
                               f"{ENDPOINTS_DEADLINE_S:g} s")
        time.sleep(POLL_S)


def ready_endpoints(text: str) -> list[str]:
    """The addresses of ready endpoints in ``kubectl get endpointslices -o json``."""
    try:
        items = json.loads(text).get("items", [])
    except (ValueError, AttributeError):
        return []
    return [addr for s in items for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") for addr in e.get("addresses", [])]


def pod_ip6(item: dict[str, Any]) -> ipaddress.IPv6Address | None:
    """A pod's IPv6 address from ``status.podIPs`` (a dual-stack pod has one per family)."""
    for entry in item.get("status", {}).get("podIPs") or []:
        text = str(entry.get("ip", ""))
        if ":" in text:
            return ipaddress.IPv6Address(text)
    return None


def discover(t: Topology, plan: KindPlan, tools: Tools, run_id: str | None, *,
             kubectl: list[str] | None = None
             ) -> tuple[dict[str, LabHost], Topology, dict[str, str]]:
    """The running cluster's hosts, the topology with its real addresses and pods, and
    each pod's UID."""
    kubectl = kubectl or ["kubectl", "--context", plan.context]
    nodes = _read(parse_nodes, tools.run("the nodes", [*kubectl, "get", "nodes", "-o",
                                                       "json"], 30).stdout)
    selector = (f"app.kubernetes.io/managed-by=dsrlab,{RUN_LABEL}={run_id}" if run_id
                else ",".join(f"app={w.name}" for w in t.workloads[:1]))
    pods_json = tools.run("the pods", [*kubectl, "get", "pods", "-A", "-l", selector, "-o",
                                       "json"], 30).stdout
    net = Docker().network(KIND_NETWORK)
    bridge, gateway = net.bridge, net.gateway
    dual = t.dual_stack
    by_name = {n.name: n for n in nodes}
    new_nodes: list[Node] = []
    for n in t.nodes:
        real = by_name.get(n.name)
        if real is None:
            raise BackendError(f"node {n.name} of {t.name} is not in the cluster (nodes: "
                               f"{', '.join(by_name) or 'none'})")
        update: dict[str, object] = {"ip": real.internal_ip}
        if dual:
            if not real.internal_ip6:
                raise BackendError(f"node {n.name} has no IPv6 InternalIP: the cluster is "
                                   "not dual-stack (kind networking.ipFamily: dual)")
            update["ip6"] = ipaddress.IPv6Address(real.internal_ip6)
        new_nodes.append(n.model_copy(update=update))
    items = [p for p in json.loads(pods_json).get("items", [])
             if p.get("status", {}).get("podIP") and p["spec"].get("nodeName")]
    pods = [Pod(name=p["metadata"]["name"], node=p["spec"]["nodeName"],
                ip=p["status"]["podIP"], ip6=pod_ip6(p) if dual else None) for p in items]
    uids = {p["metadata"]["name"]: str(p["metadata"].get("uid", "")) for p in items}
    workloads = []
    for w in t.workloads:
        mine = [p for p in pods if p.name.startswith(f"{w.name}-")]
        if not mine:
            raise BackendError(f"workload {w.name}: no running pod with an address in the "
                               f"cluster (selector {selector})")
        workloads.append(w.model_copy(update={"pods": mine}))
    client: dict[str, object] = {"ip": gateway}
    if dual:
        if net.gateway6 is None:
            raise BackendError(f"docker network {KIND_NETWORK} has no IPv6 gateway: the "
                               "cluster is not dual-stack")
        client["ip6"] = ipaddress.IPv6Address(net.gateway6)
    topo = t.model_copy(update={"nodes": new_nodes, "workloads": workloads,
                                "client": t.client.model_copy(update=client)})
    hosts = {t.client.name: LabHost(t.client.name, "client", topo.client.ip, bridge, "host")}
    hosts |= {n.name: LabHost(n.name, "node", n.ip, "eth0", n.name) for n in new_nodes}
    hosts |= {p.name: LabHost(p.name, "pod", p.ip, "eth0", f"{p.node}/{p.name}")
              for w in workloads for p in w.pods}
    return hosts, topo, uids
