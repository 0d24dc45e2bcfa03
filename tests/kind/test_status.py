"""Reading the kind backend's tools back (lab/env/kind/status.py), from fixtures of
their real output (tests/kind/fixtures/README.md says where each comes from)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.env.kind.status import (
    ToolOutputError,
    check_cilium,
    control_plane_address,
    parse_cilium_status,
    parse_kind_clusters,
    parse_nodes,
)
from lab.model.topology import Topology, load_topology, parse_topology
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
    assert st.dsr_dispatch == "IP Option/Extension"


def _seed_on(version: str, **changes: Any) -> Topology:
    data = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
    data["cluster"]["cilium_version"] = version
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        data[section][key] = value
    return parse_topology(data, SEED_TOPOLOGY_PATH)


@pytest.mark.parametrize(("line", "version", "dispatch"), [
    ("1.14", "1.14.0", ""),  # 1.14 prints no dispatch line
    ("1.15", "1.15.0", "IP Option/Extension"),
    ("1.16", "1.16.0", "IP Option/Extension"),
])
def test_cilium_status_of_each_line(line: str, version: str, dispatch: str) -> None:
    st = parse_cilium_status((FIXTURES / f"cilium-status-verbose-{line}.txt").read_text())
    assert (st.version, st.kube_proxy_replacement, st.mode, st.dsr_dispatch,
            st.backend_selection) == (version, "True", "DSR", dispatch, "Random")
    assert st.devices == "eth0 172.18.0.3 (Direct Routing)"
    assert check_cilium(st, _seed_on(version)) == []


@pytest.mark.parametrize("line", ["1.15", "1.16"])
def test_the_dsr_dispatch_mode_is_compared_with_the_topologys(line: str) -> None:
    st = parse_cilium_status((FIXTURES / f"cilium-status-verbose-{line}.txt").read_text())
    geneve = _seed_on(f"{line}.0", **{"cluster.tunnel_protocol": "geneve",
                                      "load_balancer.dispatch": "geneve"})
    assert check_cilium(st, geneve) == [
        "Cilium's DSR dispatch mode is IP Option/Extension, the topology asks for geneve "
        "(Geneve)"]
    said_geneve = dataclasses.replace(st, dsr_dispatch="Geneve")
    assert check_cilium(said_geneve, geneve) == []
    assert check_cilium(said_geneve, _seed_on(f"{line}.0")) == [
        "Cilium's DSR dispatch mode is Geneve, the topology asks for opt "
        "(IP Option/Extension)"]


def test_cilium_status_with_kube_proxy_kept_has_no_mode_and_needs_none() -> None:
    text = (FIXTURES / "cilium-status-verbose-1.16-kube-proxy-kept.txt").read_text()
    st = parse_cilium_status(text)
    assert (st.kube_proxy_replacement, st.mode, st.dsr_dispatch, st.backend_selection,
            st.devices) == ("False", "", "", "", "")
    assert not st.replaces_kube_proxy
    kept = _seed_on("1.16.0", **{"cluster.kube_proxy": "iptables"})
    assert check_cilium(st, kept) == []
    assert check_cilium(st, _seed_on("1.16.0")) == [
        "KubeProxyReplacement is False, the topology replaces kube-proxy"]


def test_the_details_end_where_the_next_section_starts() -> None:
    """Lines indented under a later section are that section's: its Status:/Mode: are
    not the KubeProxyReplacement Details' (the details' state is reset)."""
    text = (FIXTURES / "cilium-status-verbose-1.16-kube-proxy-kept.txt").read_text()
    later = "ClusterMesh:   1/1 remote clusters ready, 0 global-services\n" \
            "  Status:       True\n  Mode:         DSR\n  Devices:      eth1\n"
    st = parse_cilium_status(text + later)
    assert (st.kube_proxy_replacement, st.mode, st.devices) == ("False", "", "")
    replaced = (FIXTURES / "cilium-status-verbose-1.15.txt").read_text()
    st = parse_cilium_status(replaced + later.replace("DSR", "SNAT"))
    assert (st.kube_proxy_replacement, st.mode) == ("True", "DSR")


@pytest.mark.parametrize(("text", "missing"), [
    ("", "cilium status --verbose: no KubeProxyReplacement line"),
    ("KubeProxyReplacement: True\n", "cilium status --verbose: KubeProxyReplacement is True "
                                      "but no Mode line under KubeProxyReplacement Details"),
    ("KubeProxyReplacement: Strict\nKubeProxyReplacement Details:\n  Status: Strict\n",
     "cilium status --verbose: KubeProxyReplacement is Strict but no Mode line under "
     "KubeProxyReplacement Details"),
])
def test_cilium_status_without_what_the_lab_needs(text: str, missing: str) -> None:
    with pytest.raises(ToolOutputError) as err:
        parse_cilium_status(text)
    assert str(err.value) == missing


def test_kind_clusters() -> None:
    assert parse_kind_clusters((FIXTURES / "kind-get-clusters.txt").read_text()) == [
        "cilium-dsr"]
    assert parse_kind_clusters("No kind clusters found.\n") == []
