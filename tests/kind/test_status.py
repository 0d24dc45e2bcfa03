"""Reading the kind backend's tools back (lab/env/kind/status.py), from fixtures of
their real output (tests/kind/fixtures/README.md says where each comes from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.env.kind.status import (
    ToolOutputError,
    check_cilium,
    control_plane_address,
    parse_cilium_status,
    parse_kind_clusters,
    parse_nodes,
)
from lab.model.topology import load_topology
from tests.seed import SEED_TOPOLOGY_PATH

FIXTURES = Path(__file__).parent / "fixtures"


def test_kubectl_nodes_give_the_control_planes_address() -> None:
    nodes = parse_nodes((FIXTURES / "kubectl-get-nodes.json").read_text())
    assert [(n.name, n.role, n.internal_ip, n.ready) for n in nodes] == [
        ("cilium-dsr-control-plane", "control-plane", "172.18.0.2", True),
        ("cilium-dsr-worker", "worker", "172.18.0.4", True),
        ("cilium-dsr-worker2", "worker", "172.18.0.3", True)]
    assert nodes[0].kernel == "5.15.0-106-generic"
    assert control_plane_address(nodes) == "172.18.0.2"


def test_a_node_not_ready_and_no_control_plane() -> None:
    data = json.loads((FIXTURES / "kubectl-get-nodes.json").read_text())
    data["items"][1]["status"]["conditions"][-1]["status"] = "False"
    data["items"] = data["items"][1:]
    nodes = parse_nodes(json.dumps(data))
    assert [n.ready for n in nodes] == [False, True]
    with pytest.raises(ToolOutputError, match="no control-plane node"):
        control_plane_address(nodes)


@pytest.mark.parametrize("text", ["", "not json", "{}", '{"items": 3}'])
def test_a_node_list_that_is_not_one(text: str) -> None:
    with pytest.raises(ToolOutputError, match="kubectl get nodes -o json: not a node list"):
        parse_nodes(text)


def test_cilium_status_of_the_write_up() -> None:
    st = parse_cilium_status((FIXTURES / "cilium-status-verbose-1.13.txt").read_text())
    assert (st.version, st.kube_proxy_replacement, st.mode, st.backend_selection) == (
        "1.13.0-rc5", "Strict", "DSR", "Random")
    assert st.devices == "eth0 172.18.0.3 (Direct Routing)"
    assert st.replaces_kube_proxy
    assert check_cilium(st, load_topology(SEED_TOPOLOGY_PATH)) == []


def test_cilium_status_that_does_not_match_the_topology() -> None:
    text = (FIXTURES / "cilium-status-verbose-1.13.txt").read_text()
    st = parse_cilium_status(text.replace("Mode:                   DSR",
                                          "Mode:                   SNAT"))
    assert check_cilium(st, load_topology(SEED_TOPOLOGY_PATH)) == [
        "Cilium's load-balancer mode is SNAT, the topology asks for dsr"]


def test_cilium_status_of_a_newer_agent_spelling() -> None:
    """1.14+ says True where 1.13 said Strict; the mode line is the same."""
    st = parse_cilium_status("Cilium: Ok 1.16.3 (v1.16.3-abc)\nKubeProxyReplacement: True "
                             "[eth0 172.18.0.3 (Direct Routing)]\n"
                             "KubeProxyReplacement Details:\n  Status: True\n"
                             "  Mode: DSR\n    DSR Dispatch Mode: IP Option/Extension\n"
                             "  Backend Selection: Maglev (Table Size: 16381)\n")
    assert (st.version, st.kube_proxy_replacement, st.mode) == ("1.16.3", "True", "DSR")
    assert st.replaces_kube_proxy
    assert st.backend_selection.startswith("Maglev")


@pytest.mark.parametrize(("text", "missing"), [
    ("", "no KubeProxyReplacement and no the KubeProxyReplacement Details' Mode"),
    ("KubeProxyReplacement: Disabled\n", "no the KubeProxyReplacement Details' Mode"),
])
def test_cilium_status_without_what_the_lab_needs(text: str, missing: str) -> None:
    with pytest.raises(ToolOutputError, match=missing):
        parse_cilium_status(text)


def test_kind_clusters() -> None:
    assert parse_kind_clusters((FIXTURES / "kind-get-clusters.txt").read_text()) == [
        "cilium-dsr"]
    assert parse_kind_clusters("No kind clusters found.\n") == []
