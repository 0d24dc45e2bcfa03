"""Everything the kind backend will run for a topology, decided before it runs.

:func:`build_plan` gives a :class:`KindPlan`: the kind cluster config, Cilium's
chart, version and Helm values (in that version's spelling), the manifests, and
the command sequence, each command with its deadline. ``dsrlab plan --backend kind
TOPOLOGY`` prints it (text, or ``--json``); the backend runs the same plan, so
what was printed is what runs.

The control-plane's address (Helm's ``k8sServiceHost``) is kind's to assign:
the plan shows the topology's (the seed's 172.18.0.2, what kind gave the
write-up's cluster), and the run reads the real one from ``kubectl get nodes``
before ``helm install``, as the write-up's script did.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from lab.env.kind.agent import refusals
from lab.env.kind.config import (
    KindConfigError,
    cluster_name,
    expected_node_names,
    image_note,
    kind_config,
    node_image,
    node_name_problem,
)
from lab.env.kind.manifests import manifests
from lab.env.kind.values import (
    API_SERVER_VALUE,
    CHART,
    CHART_REPO,
    NAMESPACE,
    NOT_HELM,
    RELEASE,
    WRITE_UP_NOT_CHART,
    ChartVersionError,
    agent_cli,
    chart_line,
    helm_values,
    set_args,
)
from lab.model.topology import Topology

KIND_CONFIG_FILE = "kind-config.yaml"
MANIFESTS_FILE = "manifests.yaml"


@dataclass(frozen=True)
class Command:
    """One tool call of the plan: why, the argv, and how long it may take."""

    what: str
    argv: list[str]
    deadline_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "argv": self.argv, "deadline_s": self.deadline_s}


@dataclass(frozen=True)
class KindPlan:
    cluster: str
    context: str
    node_image: str
    node_names: list[str]
    kind_config: dict[str, Any]
    chart: str
    chart_version: str
    namespace: str
    values: dict[str, Any]
    manifests: list[dict[str, Any]]
    commands: list[Command]
    teardown: list[Command]
    not_helm: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # where the plan departs from the write-up

    def values_with(self, api_server: str) -> dict[str, Any]:
        """The values with the running cluster's control-plane address."""
        return {**self.values, API_SERVER_VALUE: api_server}

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "context": self.context,
                "node_image": self.node_image, "node_names": self.node_names,
                "kind_config": self.kind_config,
                "helm": {"chart": self.chart, "version": self.chart_version,
                         "namespace": self.namespace, "values": self.values},
                "manifests": self.manifests,
                "commands": [c.as_dict() for c in self.commands],
                "teardown": [c.as_dict() for c in self.teardown],
                "not_helm": self.not_helm, "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def to_text(self) -> str:
        """The plan as a person reads it: the kind config and the manifests as YAML,
        the commands one a line (Helm's values as its --set arguments)."""
        out = [f"# kind cluster {self.cluster} (context {self.context}), nodes "
               f"{', '.join(self.node_names)}, image {self.node_image}",
               f"# {KIND_CONFIG_FILE}",
               yaml.safe_dump(self.kind_config, sort_keys=False).rstrip(),
               "",
               f"# Cilium {self.chart_version} ({self.chart}, namespace {self.namespace})"]
        out += [f"#   {k} = {_shown(v)}" + ("   (the topology's; the run reads kind's from "
                                             "kubectl get nodes)" if k == API_SERVER_VALUE
                                             else "") for k, v in self.values.items()]
        if self.notes:
            out.append("# departing from the write-up:")
            out += [f"#   {n}" for n in self.notes]
        if self.not_helm:
            out.append("# not Helm values (the netns lab's only):")
            out += [f"#   {k}: {why}" for k, why in self.not_helm.items()]
        out += ["", "# commands, in order (deadline in seconds)"]
        out += [f"{shlex.join(c.argv)}    # {c.what} ({c.deadline_s:g} s)"
                for c in self.commands]
        out += ["", "# teardown"]
        out += [f"{shlex.join(c.argv)}    # {c.what} ({c.deadline_s:g} s)"
                for c in self.teardown]
        out += ["", f"# {MANIFESTS_FILE}",
                yaml.safe_dump_all(_summarized(self.manifests), sort_keys=False).rstrip()]
        return "\n".join(out) + "\n"


def _shown(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _summarized(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifests with the pod server's source shown by size, not whole."""
    return [{**o, "data": {k: f"<{len(v)} characters: lab/env/podserver.py>"
                           for k, v in o["data"].items()}} if o["kind"] == "ConfigMap" else o
            for o in objs]


def build_plan(t: Topology, run_id: str = "{run-id}") -> KindPlan:
    """The plan for ``t``; what kind or Cilium's agent would refuse (a Cilium version
    without a spelling, a Kubernetes without a node image, node names kind would not
    give, values the agent refuses at start-up) is a clear error, before anything runs."""
    where = t.source or t.name
    name = cluster_name(t)
    ctx = f"kind-{name}"
    control_plane = next((n for n in t.nodes if n.role == "control-plane"), None)
    if control_plane is None:
        raise ChartVersionError(f"{where}: nodes: a kind cluster needs a control-plane node")
    problem = node_name_problem(t)
    if problem:
        raise KindConfigError(f"{where}: {problem}")
    try:
        values = helm_values(t, str(control_plane.ip))
        image = node_image(t)
    except (ChartVersionError, KindConfigError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    refused = refusals(chart_line(t.cluster.cilium_version), values)
    if refused:
        raise ChartVersionError(f"{where}: Cilium {t.cluster.cilium_version}: "
                                + "; ".join(map(str, refused)))
    version = t.cluster.cilium_version.removeprefix("v")
    workloads = [w.name for w in t.workloads]
    kubectl = ["kubectl", "--context", ctx]
    commands = [
        Command("the kind clusters already here", ["kind", "get", "clusters"], 30),
        Command("create the cluster", ["kind", "create", "cluster", "--name", name, "--image",
                                       image, "--config", KIND_CONFIG_FILE], 600),
        Command("read the control-plane's address (k8sServiceHost)",
                [*kubectl, "get", "nodes", "-o", "json"], 30),
        Command("the Cilium chart repository", ["helm", "repo", "add", "--force-update",
                                                 "cilium", CHART_REPO], 60),
        Command("install Cilium", ["helm", "install", RELEASE, CHART, "--kube-context", ctx,
                                   "--version", version, "--namespace", NAMESPACE,
                                   *set_args(values)], 600),
        Command("nodes Ready", [*kubectl, "wait", "--for=condition=Ready", "nodes", "--all",
                                "--timeout=300s"], 310),
        Command("Cilium agents Ready", [*kubectl, "-n", NAMESPACE, "rollout", "status",
                                        "ds/cilium", "--timeout=300s"], 310),
        Command("Cilium's kube-proxy replacement and its mode",
                [*kubectl, "-n", NAMESPACE, "exec", "ds/cilium", "-c", "cilium-agent", "--",
                 agent_cli(t), "status", "--verbose"], 60),
        Command("the workloads and services", [*kubectl, "apply", "-f", MANIFESTS_FILE], 60),
        *(Command(f"{w} Ready", [*kubectl, "rollout", "status",
                                 f"{_kind_of(t, w)}/{w}", "--timeout=300s"], 310)
          for w in workloads),
        *(Command(f"{s.name}'s endpoints", [*kubectl, "get", "endpointslices", "-l",
                                            f"kubernetes.io/service-name={s.name}", "-o",
                                            "json"], 30) for s in t.services),
    ]
    teardown = [Command("delete the cluster", ["kind", "delete", "cluster", "--name", name],
                        300)]
    notes = [note for note in (image_note(t),) if note]
    notes += [f"{k}: {why}" for k, why in WRITE_UP_NOT_CHART.items() if k in values]
    if t.cluster.kube_proxy != "none":
        notes.append("loadBalancer.mode: with kube-proxy kept, kube-proxy serves the "
                     "NodePorts and Cilium's load-balancer settings take no effect")
    return KindPlan(cluster=name, context=ctx, node_image=image,
                    node_names=expected_node_names(t), kind_config=kind_config(t),
                    chart=CHART, chart_version=version, namespace=NAMESPACE, values=values,
                    manifests=manifests(t, run_id), commands=commands, teardown=teardown,
                    not_helm=_not_helm(t), notes=notes)


def _kind_of(t: Topology, workload: str) -> str:
    return {"DaemonSet": "daemonset", "Deployment": "deployment"}[t.workload(workload).kind]


def _not_helm(t: Topology) -> dict[str, str]:
    """What the topology sets that the real cluster will not do, said in the plan."""
    lb, out = t.load_balancer, {}
    if lb.option_byte_order != "host":
        out["load_balancer.option_byte_order"] = NOT_HELM["load_balancer.option_byte_order"]
    if lb.maglev_hash_seed:
        out["load_balancer.maglev_hash_seed"] = NOT_HELM["load_balancer.maglev_hash_seed"]
    if t.fabric.strip_ip_options or t.fabric.source_dest_check or \
            t.fabric.drop_ipv6_ext_headers:
        out["fabric"] = NOT_HELM["fabric"]
    return out
