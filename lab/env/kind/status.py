"""Reading the tools' output back: ``kubectl get nodes -o json``, ``cilium status
--verbose`` (in the agent), ``kind get clusters``.

Each parser takes the text a tool printed and returns typed records, or says in
one line what it could not find; :func:`check_cilium` compares what Cilium
reports with what the topology asked for (kube-proxy replaced, the mode).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.model.topology import Topology


class ToolOutputError(LabError, ValueError):
    """A tool's output that does not say what the lab needs to know."""


@dataclass(frozen=True)
class ClusterNode:
    name: str
    role: str  # control-plane or worker
    internal_ip: str
    ready: bool
    kernel: str
    kubelet: str
    internal_ip6: str = ""  # a dual-stack cluster's IPv6 InternalIP


def parse_nodes(text: str) -> list[ClusterNode]:
    """``kubectl get nodes -o json``: each node's name, role, InternalIP, Ready."""
    try:
        data = json.loads(text)
        items: list[dict[str, Any]] = data["items"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TypeError("items is not a list of objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise ToolOutputError(f"kubectl get nodes -o json: not a node list ({exc})") from None
    nodes = []
    for item in items:
        meta, status = item.get("metadata", {}), item.get("status", {})
        node_labels = meta.get("labels", {})
        role = "control-plane" if any(
            k in node_labels for k in ("node-role.kubernetes.io/control-plane",
                                       "node-role.kubernetes.io/master")) else "worker"
        internal = [str(a.get("address", "")) for a in status.get("addresses", [])
                    if a.get("type") == "InternalIP"]
        # a dual-stack node lists one InternalIP per family
        ip = next((a for a in internal if "." in a), internal[0] if internal else "")
        ip6 = next((a for a in internal if ":" in a), "")
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions", []))
        info = status.get("nodeInfo", {})
        nodes.append(ClusterNode(meta.get("name", ""), role, ip, ready,
                                 info.get("kernelVersion", ""), info.get("kubeletVersion", ""),
                                 ip6))
    return nodes


def control_plane_address(nodes: list[ClusterNode]) -> str:
    """Helm's ``k8sServiceHost``: the control-plane's InternalIP (the write-up's
    ``kubectl get node -o wide | grep control-plane``)."""
    for n in nodes:
        if n.role == "control-plane" and n.internal_ip:
            return n.internal_ip
    raise ToolOutputError("kubectl get nodes: no control-plane node with an InternalIP")


@dataclass(frozen=True)
class CiliumStatus:
    """What ``cilium status --verbose`` says of kube-proxy replacement."""

    version: str  # "1.13.0-rc5"
    kube_proxy_replacement: str  # "Strict" (1.13), "True" (1.14+), "Disabled", "False"
    devices: str  # "eth0 172.18.0.3 (Direct Routing)"
    mode: str  # "DSR", "SNAT", "Hybrid"; "" when Cilium does no NodePort (kube-proxy kept)
    backend_selection: str  # "Random", "Maglev (Table Size: 16381)"
    dsr_dispatch: str = ""  # 1.15+: "IP Option/Extension", "IPIP", "Geneve" (DSR, Hybrid)

    @property
    def replaces_kube_proxy(self) -> bool:
        return self.kube_proxy_replacement.lower() in ("strict", "true", "partial")


# the agent's words for each dispatch of the topology (its DSR Dispatch Mode line)
DISPATCH_WORDS = {"opt": "IP Option/Extension", "ipip": "IPIP", "geneve": "Geneve"}
_LINE = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z ]*?):\s*(?P<value>.*?)\s*$")
_DETAILS = "KubeProxyReplacement Details:"


def parse_cilium_status(text: str) -> CiliumStatus:
    """The agent's own words: ``Cilium:``, ``KubeProxyReplacement:`` and, in its
    ``KubeProxyReplacement Details:`` block (the indented lines under it, up to the next
    line that is not), ``Status:``, ``Devices:``, ``Mode:``, ``DSR Dispatch Mode:``
    (1.15+) and ``Backend Selection:``. Without kube-proxy replacement the block has
    no ``Mode:`` line, and none is needed."""
    found: dict[str, str] = {}
    details = False
    for line in text.splitlines():
        if line.strip() == _DETAILS:
            details = True
            continue
        if line.strip() and not line[:1].isspace():
            details = False  # a section of its own: its indented lines are not the details'
        m = _LINE.match(line)
        if not m:
            continue
        key, value = m["key"], m["value"]
        if not details:
            if key == "Cilium" and "version" not in found:
                v = re.search(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?", value)
                found["version"] = v[0] if v else value
            elif key == "KubeProxyReplacement":
                found.setdefault("kpr", value.split()[0] if value else "")
                dev = re.search(r"\[(.*)\]", value)
                if dev:
                    found.setdefault("devices", dev[1])
        elif key == "Status":
            found["kpr"] = value
        elif key == "Devices":
            found["devices"] = value
        elif key in ("Mode", "DSR Dispatch Mode", "Backend Selection"):
            found.setdefault(key, value)
    if "kpr" not in found:
        raise ToolOutputError("cilium status --verbose: no KubeProxyReplacement line")
    st = CiliumStatus(found.get("version", ""), found["kpr"], found.get("devices", ""),
                      found.get("Mode", ""), found.get("Backend Selection", ""),
                      found.get("DSR Dispatch Mode", ""))
    if st.replaces_kube_proxy and not st.mode:
        raise ToolOutputError(f"cilium status --verbose: KubeProxyReplacement is "
                              f"{st.kube_proxy_replacement} but no Mode line under "
                              f"{_DETAILS.rstrip(':')}")
    return st


def check_cilium(status: CiliumStatus, t: Topology) -> list[str]:
    """What Cilium reports that the topology did not ask for (empty: it matches)."""
    problems = []
    want_kpr = t.cluster.kube_proxy == "none"
    if status.replaces_kube_proxy != want_kpr:
        problems.append(f"KubeProxyReplacement is {status.kube_proxy_replacement}, the "
                        f"topology {'replaces' if want_kpr else 'keeps'} kube-proxy")
    if not (want_kpr and status.replaces_kube_proxy):
        return problems  # kube-proxy serves the NodePorts: no mode of Cilium's to compare
    lb = t.load_balancer
    if status.mode.upper() != lb.mode.upper():
        problems.append(f"Cilium's load-balancer mode is {status.mode}, the topology asks "
                        f"for {lb.mode}")
    want_dispatch = DISPATCH_WORDS[lb.dispatch]
    if status.dsr_dispatch and lb.mode != "snat" and status.dsr_dispatch != want_dispatch:
        problems.append(f"Cilium's DSR dispatch mode is {status.dsr_dispatch}, the topology "
                        f"asks for {lb.dispatch} ({want_dispatch})")
    want_sel = lb.algorithm
    if status.backend_selection and not status.backend_selection.lower().startswith(want_sel):
        problems.append(f"backend selection is {status.backend_selection}, the topology "
                        f"asks for {want_sel}")
    return problems


def parse_kind_clusters(text: str) -> list[str]:
    """``kind get clusters``: one name a line (``No kind clusters found.``: none)."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("No kind clusters found")]
