"""The workloads and Services of a topology as Kubernetes objects (data, not text).

Every object carries the lab's labels (:data:`MANAGED_BY`, :func:`labels`), so
teardown and ``dsrlab clean`` find exactly what the lab made. The pods answer
as the netns lab's do (``PodName: <name> | PodIP: eth0 <ip>/32``): they run the
lab's own pod server (``lab/env/podserver.py``, standard library only), handed
to them in a ConfigMap, on a stock Python image, with their name and address
from the downward API. Nothing is installed into a pod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.model.topology import Service, Topology, Workload

MANAGED_BY = "dsrlab"
RUN_LABEL = "dsrlab.io/run"
POD_IMAGE = "python:3.11-alpine"
SERVER_MOUNT = "/dsrlab"
SERVER_CONFIGMAP = "dsrlab-podserver"
PODSERVER_SOURCE = Path(__file__).resolve().parents[1] / "podserver.py"


def labels(run_id: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": MANAGED_BY, RUN_LABEL: run_id}


def _meta(name: str, run_id: str, namespace: str, **extra: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {**labels(run_id), **extra}}


def server_configmap(run_id: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(SERVER_CONFIGMAP, run_id, namespace),
            "data": {"podserver.py": PODSERVER_SOURCE.read_text(encoding="utf-8")}}


def _udp_too(t: Topology, w: Workload) -> bool:
    return any(p.protocol == "UDP" for s in t.services if s.selector == w.name
               for p in s.all_ports)


def workload(t: Topology, w: Workload, run_id: str, namespace: str) -> dict[str, Any]:
    """A DaemonSet (one pod per schedulable node: the workers, as in the write-up) or a
    Deployment of as many replicas as the topology lists pods."""
    argv = ["python", "-I", f"{SERVER_MOUNT}/podserver.py", "--bind", f"0.0.0.0:{w.port}",
            "--name", "$(POD_NAME)", "--ip", "$(POD_IP)"]
    if _udp_too(t, w):
        argv.append("--udp")
    ports = [{"containerPort": w.port, "protocol": "TCP"}]
    if _udp_too(t, w):
        ports.append({"containerPort": w.port, "protocol": "UDP"})
    container = {
        "name": "podserver", "image": POD_IMAGE, "command": argv, "ports": ports,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "readinessProbe": {"tcpSocket": {"port": w.port}, "periodSeconds": 1},
        "volumeMounts": [{"name": "podserver", "mountPath": SERVER_MOUNT, "readOnly": True}],
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": w.name}},
        "template": {
            "metadata": {"labels": {**labels(run_id), "app": w.name}},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 1,
                     "volumes": [{"name": "podserver",
                                  "configMap": {"name": SERVER_CONFIGMAP}}]}}}
    if w.kind == "Deployment":
        spec["replicas"] = len(w.pods)
    return {"apiVersion": "apps/v1", "kind": w.kind,
            "metadata": _meta(w.name, run_id, namespace, app=w.name), "spec": spec}


def service(s: Service, run_id: str, namespace: str) -> dict[str, Any]:
    ports = [{"name": p.name or f"{p.protocol.lower()}-{p.node_port}",
              "protocol": p.protocol, "port": p.target_port, "targetPort": p.target_port,
              "nodePort": p.node_port} for p in s.all_ports]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(s.name, run_id, namespace),
            "spec": {"type": s.type, "selector": {"app": s.selector},
                     "externalTrafficPolicy": s.external_traffic_policy, "ports": ports}}


def manifests(t: Topology, run_id: str, namespace: str = "default") -> list[dict[str, Any]]:
    """Every object the lab applies for ``t``, in the order to apply them."""
    return [server_configmap(run_id, namespace),
            *(workload(t, w, run_id, namespace) for w in t.workloads),
            *(service(s, run_id, namespace) for s in t.services)]
