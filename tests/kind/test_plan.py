"""The kind backend's plan (lab/env/kind): the write-up's cluster from the seed
topology, Cilium's Helm values in each chart version's spelling (golden files, one
per version of the table), the manifests as data, and ``dsrlab plan``."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.env.kind.agent import refusals
from lab.env.kind.config import KindConfigError
from lab.env.kind.manifests import SERVER_CONFIGMAP, manifests
from lab.env.kind.plan import build_plan
from lab.env.kind.values import (
    SPELLINGS,
    ChartVersionError,
    chart_line,
    helm_values,
    set_args,
)
from lab.model.topology import Topology, TopologyError, load_topology, parse_topology
from tests.cli.helpers import dsrlab
from tests.kind.goldenview import golden_view
from tests.seed import SEED_TOPOLOGY_PATH

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("DSRLAB_REGEN_GOLDEN") == "1"  # rewrite the golden files

# the write-up's install.sh, its helm install line by line (k8sServiceHost: the
# control-plane's address, 172.18.0.2 in its cluster; --version and --namespace apart),
# but for its monitorAggregation=none, a key the chart does not read: the plan sets the
# chart's bpf.monitorAggregation (and says so)
WRITE_UP_SETS = [
    "k8sServiceHost=172.18.0.2",
    "k8sServicePort=6443",
    "debug.enabled=true",
    "debug.verbose=datapath",
    "bpf.monitorAggregation=none",
    "ipam.mode=cluster-pool",
    "cluster.name=cilium-dsr",
    "kubeProxyReplacement=strict",
    "tunnel=disabled",
    "autoDirectNodeRoutes=true",
    "ipv4NativeRoutingCIDR=10.0.0.0/8",
    "bpf.masquerade=true",
    "installNoConntrackIptablesRules=true",
    "loadBalancer.mode=dsr",
]


def _seed(**changes: Any) -> Topology:
    data = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = data
        for p in parents:
            target = target[p]
        target[last] = value
    return parse_topology(data, SEED_TOPOLOGY_PATH)


def test_the_seed_plan_is_the_write_ups_install() -> None:
    plan = build_plan(load_topology(SEED_TOPOLOGY_PATH))
    # the image kind v0.22.0 lists for 1.23, by digest (it has no v1.23.4: the plan says so)
    assert plan.node_image == ("kindest/node:v1.23.17@sha256:14d0a9a892b943866d7e6be119a068"
                               "71291c517d279aedb816a4b4bc0ec0a5b3")
    assert plan.notes == [
        "cluster.kubernetes_version v1.23.4: kind v0.22.0 lists no node image of it; the "
        "cluster runs v1.23.17, the image kind v0.22.0 lists for that minor",
        "bpf.monitorAggregation: the write-up's --set monitorAggregation=none is not a key "
        "of the chart (Helm drops it; the agent keeps its default, medium): "
        "bpf.monitorAggregation is the one that takes effect"]
    assert plan.cluster == "cilium-dsr"
    assert plan.node_names == ["cilium-dsr-control-plane", "cilium-dsr-worker",
                               "cilium-dsr-worker2"]
    assert plan.kind_config == {
        "kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"disableDefaultCNI": True, "kubeProxyMode": "none"},
        "nodes": [{"role": "control-plane"}, {"role": "worker"}, {"role": "worker"}]}
    sets = set_args(plan.values)
    assert sets[::2] == ["--set"] * len(WRITE_UP_SETS)
    assert sets[1::2] == WRITE_UP_SETS
    install = next(c for c in plan.commands if c.argv[:2] == ["helm", "install"])
    assert install.argv[2:4] == ["cilium", "cilium/cilium"]
    assert install.argv[install.argv.index("--version") + 1] == "1.13.0-rc5"
    assert install.argv[install.argv.index("--namespace") + 1] == "kube-system"
    assert plan.not_helm == {}
    # every command has a deadline; the cluster goes by name
    assert all(c.deadline_s > 0 for c in plan.commands)
    assert [c.argv for c in plan.teardown] == [["kind", "delete", "cluster", "--name",
                                                "cilium-dsr"]]



@pytest.mark.parametrize("line", sorted(SPELLINGS), ids=lambda v: f"{v[0]}.{v[1]}")
def test_the_plan_for_each_cilium_line_matches_its_golden_file(line: tuple[int, int]) -> None:
    version = f"{line[0]}.{line[1]}.0"
    got = golden_view(_seed(**{"cluster.cilium_version": version}))
    path = GOLDEN / f"seed-{line[0]}.{line[1]}.json"
    if REGEN:
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(path.read_text()), f"{path} (DSRLAB_REGEN_GOLDEN=1 rewrites it)"


def test_the_spellings_differ_where_the_charts_do() -> None:
    v13 = helm_values(_seed(), "172.18.0.2")
    v14 = helm_values(_seed(**{"cluster.cilium_version": "1.14.5"}), "172.18.0.2")
    v16 = helm_values(_seed(**{"cluster.cilium_version": "1.16.3"}), "172.18.0.2")
    assert (v13["kubeProxyReplacement"], v13["tunnel"]) == ("strict", "disabled")
    assert "routingMode" not in v13
    for v in (v14, v16):
        assert (v["kubeProxyReplacement"], v["routingMode"]) == ("true", "native")
        assert "tunnel" not in v
    # the agent's own CLI: cilium up to 1.14, cilium-dbg from 1.15
    for version, cli in (("1.13.0-rc5", "cilium"), ("1.14.5", "cilium"),
                         ("1.15.1", "cilium-dbg"), ("1.16.3", "cilium-dbg")):
        status = next(c for c in build_plan(_seed(**{"cluster.cilium_version": version}))
                      .commands if c.argv[-2:] == ["status", "--verbose"])
        assert status.argv[-3] == cli, version
    kept = _seed(**{"cluster.kube_proxy": "iptables", "cluster.cilium_version": "1.15.1"})
    assert helm_values(kept, "x")["kubeProxyReplacement"] == "false"
    assert helm_values(_seed(**{"cluster.kube_proxy": "iptables"}), "x")[
        "kubeProxyReplacement"] == "disabled"


@pytest.mark.parametrize(("version", "expected"), [
    ("1.13.0-rc5", {"tunnel": "geneve"}),
    ("1.14.5", {"routingMode": "tunnel", "tunnelProtocol": "geneve"}),
])
def test_tunnel_routing_in_each_spelling(version: str, expected: dict[str, str]) -> None:
    t = _seed(**{"cluster.cilium_version": version, "cluster.routing": "tunnel",
                 "cluster.tunnel_protocol": "geneve", "load_balancer.mode": "snat"})
    values = helm_values(t, "x")
    assert {k: values[k] for k in expected} == expected
    assert "ipv4NativeRoutingCIDR" not in values
    assert "autoDirectNodeRoutes" not in values


def test_maglev_mtu_and_what_helm_cannot_set() -> None:
    t = _seed(**{"load_balancer.algorithm": "maglev", "load_balancer.maglev_table_size": 65521,
                 "load_balancer.maglev_hash_seed": 7, "cluster.mtu": 1450,
                 "load_balancer.dsr_icmp_errors": False})
    plan = build_plan(t)
    assert (plan.values["loadBalancer.algorithm"], plan.values["maglev.tableSize"],
            plan.values["MTU"]) == ("maglev", 65521, 1450)
    assert "maglev.hashSeed" not in plan.values
    assert set(plan.not_helm) == {"load_balancer.maglev_hash_seed"}


def test_fragment_tracking_is_cilium_default_and_only_its_absence_is_said() -> None:
    assert "fragmentTracking" not in build_plan(_seed()).values  # the write-up's line
    off = build_plan(_seed(**{"load_balancer.fragment_tracking": False}))
    assert off.values["fragmentTracking"] is False
    (helm,) = [c for c in off.commands if c.argv[:2] == ["helm", "install"]]
    assert "fragmentTracking=false" in helm.argv


def test_dsr_icmp_errors_are_ciliums_path_mtu_discovery() -> None:
    """Cilium compiles ENABLE_DSR_ICMP_ERRORS in only when its agent runs with
    --enable-pmtu-discovery (Helm pmtuDiscovery.enabled, off by default)."""
    assert "pmtuDiscovery.enabled" not in build_plan(_seed()).values  # the write-up's line
    on = build_plan(_seed(**{"load_balancer.dsr_icmp_errors": True}))
    assert on.values["pmtuDiscovery.enabled"] is True
    (helm,) = [c for c in on.commands if c.argv[:2] == ["helm", "install"]]
    assert "pmtuDiscovery.enabled=true" in helm.argv
    assert "load_balancer.dsr_icmp_errors" not in on.not_helm


@pytest.mark.parametrize("version", ["1.12.9", "2.0.0", "latest"])
def test_a_version_without_a_spelling_is_a_clear_error(version: str) -> None:
    with pytest.raises(ChartVersionError, match=r"cluster\.cilium_version: "):
        build_plan(_seed(**{"cluster.cilium_version": version}))


def test_the_manifests_are_the_write_ups_objects_labelled_as_the_labs() -> None:
    t = load_topology(SEED_TOPOLOGY_PATH)
    cm, ds, svc = manifests(t, "abc123")
    for obj in (cm, ds, svc):
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dsrlab"
        assert obj["metadata"]["labels"]["dsrlab.io/run"] == "abc123"
    assert (ds["kind"], ds["metadata"]["name"]) == ("DaemonSet", "cni")
    assert ds["spec"]["selector"] == {"matchLabels": {"app": "cni"}}
    assert ds["spec"]["template"]["metadata"]["labels"]["app"] == "cni"
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert {e["name"] for e in container["env"]} == {"POD_NAME", "POD_IP"}
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["selector"] == {"app": "cni"}
    assert svc["spec"]["ports"] == [{"name": "tcp-32000", "protocol": "TCP", "port": 80,
                                     "targetPort": 80, "nodePort": 32000}]
    assert cm["metadata"]["name"] == SERVER_CONFIGMAP
    # data, not templated text: it round-trips through YAML unchanged
    assert list(yaml.safe_load_all(yaml.safe_dump_all([cm, ds, svc]))) == [cm, ds, svc]


def test_udp_ports_get_the_echo_too() -> None:
    t = load_topology(SEED_TOPOLOGY_PATH.parent / "modes.yaml")
    _, ds, svc = manifests(t, "abc123")
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    assert "--udp" in container["command"]
    assert {p["protocol"] for p in container["ports"]} == {"TCP", "UDP"}
    assert {(p["protocol"], p["nodePort"]) for p in svc["spec"]["ports"]} == {
        ("TCP", 32000), ("UDP", 32000)}


def test_dsrlab_plan_prints_the_write_ups_settings() -> None:
    out = dsrlab("plan", "--backend", "kind", str(SEED_TOPOLOGY_PATH))
    assert out.returncode == 0, out.stderr
    for setting in WRITE_UP_SETS[1:]:
        assert f"--set {setting}" in out.stdout
    assert ("kind create cluster --name cilium-dsr --image kindest/node:v1.23.17@sha256:"
            in out.stdout)
    assert "# departing from the write-up:\n#   cluster.kubernetes_version v1.23.4: " in \
        out.stdout
    assert re.search(r"^#   k8sServiceHost = 172\.18\.0\.2 ", out.stdout, re.M)
    as_json = dsrlab("plan", str(SEED_TOPOLOGY_PATH), "--json")
    assert json.loads(as_json.stdout)["helm"]["values"]["loadBalancer.mode"] == "dsr"


def test_dsrlab_plan_bad_input_is_one_line(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(SEED_TOPOLOGY_PATH.read_text().replace("1.13.0-rc5", "1.12.3"))
    out = dsrlab("plan", str(old))
    assert out.returncode == 1
    assert out.stderr == (f"error: {old}: cluster.cilium_version: 1.12.3: the plan knows "
                          "the Helm values of Cilium 1.13, 1.14, 1.15, 1.16 "
                          "(lab/env/kind/values.py)\n")
    assert dsrlab("plan", "--backend", "netns", str(SEED_TOPOLOGY_PATH)).returncode == 2


# -- what Cilium's agent refuses at start-up, checked at plan time -------------------------

LINES = {"1.13": "1.13.0-rc5", "1.14": "1.14.0", "1.15": "1.15.0", "1.16": "1.16.0"}


def _combinations() -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the settings the spelling table turns into Helm values."""
    out = []
    for line, kube_proxy, routing, protocol, mode, dispatch in itertools.product(
            LINES, ("none", "iptables"), ("native", "tunnel"), ("vxlan", "geneve"),
            ("snat", "dsr", "hybrid"), ("opt", "ipip", "geneve")):
        key = (f"{line} kube_proxy={kube_proxy} routing={routing}/{protocol} mode={mode} "
               f"dispatch={dispatch}")
        out.append((key, {"cluster.cilium_version": LINES[line],
                          "cluster.kube_proxy": kube_proxy, "cluster.routing": routing,
                          "cluster.tunnel_protocol": protocol, "load_balancer.mode": mode,
                          "load_balancer.dispatch": dispatch}))
    return out


def _outcome(changes: dict[str, Any]) -> str:
    try:
        t = _seed(**changes)
    except TopologyError as exc:
        return "topology: " + str(exc).split(": ", 1)[1]
    try:
        plan = build_plan(t)
    except ChartVersionError as exc:
        return "refused: " + str(exc).split(": ", 1)[1]
    return "ok: " + " ".join(a for a in set_args(plan.values)[1::2]
                             if a.split("=")[0] in AGENT_KEYS)


AGENT_KEYS = {"kubeProxyReplacement", "tunnel", "routingMode", "tunnelProtocol",
              "loadBalancer.mode", "loadBalancer.dsrDispatch",
              "installNoConntrackIptablesRules"}


def test_every_combination_the_spelling_table_emits_is_checked_against_its_agent() -> None:
    """One table: for every Cilium line and every routing, tunnel protocol, kube-proxy,
    mode and dispatch, the values the plan emits or the agent's refusal in its words
    (tests/kind/golden/agent-rules.json; DSRLAB_REGEN_GOLDEN=1 rewrites it)."""
    got = {key: _outcome(changes) for key, changes in _combinations()}
    path = GOLDEN / "agent-rules.json"
    if REGEN:
        path.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(path.read_text()), f"{path} (DSRLAB_REGEN_GOLDEN=1 rewrites it)"
    # whatever the plan emits, the agent of its line starts with it
    for key, changes in _combinations():
        if got[key].startswith("ok: "):
            t = _seed(**changes)
            assert refusals(chart_line(t.cluster.cilium_version),
                            helm_values(t, "x")) == [], key


@pytest.mark.parametrize(("changes", "words"), [
    # dispatch=geneve: from 1.14, with Geneve
    ({"load_balancer.dispatch": "geneve"},
     "Invalid value for --bpf-lb-dsr-dispatch: geneve"),
    ({"cluster.cilium_version": "1.15.0", "load_balancer.dispatch": "geneve"},
     'Node Port "dsr" mode with geneve dispatch requires geneve tunnel protocol.'),
    ({"cluster.cilium_version": "1.16.0", "cluster.routing": "tunnel",
      "load_balancer.dispatch": "geneve"},
     'Node Port "dsr" mode cannot be used with vxlan tunneling.'),
    ({"cluster.cilium_version": "1.14.0", "cluster.routing": "tunnel",
      "cluster.tunnel_protocol": "geneve", "load_balancer.dispatch": "ipip"},
     'Node Port "dsr" mode with ipip dispatch cannot be used with geneve tunneling.'),
    ({"cluster.cilium_version": "1.15.0", "cluster.routing": "tunnel",
      "cluster.tunnel_protocol": "geneve", "load_balancer.dispatch": "ipip"},
     'Tunnel routing with Node Port "dsr" mode requires geneve dispatch.'),
    # ipip: the standalone load balancer's only
    ({"load_balancer.dispatch": "ipip"},
     "DSR dispatch mode ipip only supported for --datapath-mode=lb-only"),
    ({"cluster.cilium_version": "1.16.0", "load_balancer.mode": "hybrid",
      "load_balancer.dispatch": "ipip"}, "Invalid value for --bpf-lb-dsr-dispatch: ipip"),
    # 1.13: DSR with native routing only
    ({"cluster.routing": "tunnel", "cluster.tunnel_protocol": "geneve",
      "load_balancer.dispatch": "ipip"},
     'Node Port "dsr" mode cannot be used with tunneling.'),
])
def test_a_plan_the_agent_would_refuse_is_refused_in_its_words(
        changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ChartVersionError) as err:
        build_plan(_seed(**changes))
    assert f'the agent refuses this at start-up: "{words}"' in str(err.value)
    assert str(err.value).startswith(f"{SEED_TOPOLOGY_PATH}: Cilium ")


@pytest.mark.parametrize(("line", "values", "words"), [
    ((1, 13), {"tunnel": "vxlan"},
     "install-no-conntrack-iptables-rules requires the agent to run in direct routing mode."),
    ((1, 16), {"routingMode": "tunnel", "tunnelProtocol": "geneve"},
     "install-no-conntrack-iptables-rules requires the agent to run in direct routing mode."),
    ((1, 14), {"routingMode": "native", "kubeProxyReplacement": "false"},
     "install-no-conntrack-iptables-rules requires the agent to run with "
     "kube-proxy-replacement=true."),
    ((1, 16), {"routingMode": "native", "kubeProxyReplacement": "false"},
     "install-no-conntrack-iptables-rules requires the agent to run with "
     "kube-proxy-replacement=true."),
    ((1, 15), {"routingMode": "native", "kubeProxyReplacement": "true",
               "bpf.masquerade": False},
     "install-no-conntrack-iptables-rules requires the agent to run with "
     "enable-bpf-masquerade."),
])
def test_no_conntrack_rules_are_refused_where_the_agent_refuses_them(
        line: tuple[int, int], values: dict[str, Any], words: str) -> None:
    """The plan no longer sets installNoConntrackIptablesRules where the agent refuses
    it; the rules say so for values that would."""
    base = {"kubeProxyReplacement": "strict" if line == (1, 13) else "true",
            "bpf.masquerade": True, "loadBalancer.mode": "snat",
            "installNoConntrackIptablesRules": True}
    assert [r.words for r in refusals(line, base | values)] == [words]


def test_no_conntrack_rules_only_with_native_routing_and_kube_proxy_replaced() -> None:
    assert build_plan(_seed()).values["installNoConntrackIptablesRules"] is True
    for changes in ({"cluster.kube_proxy": "iptables"},
                    {"cluster.kube_proxy": "iptables", "cluster.cilium_version": "1.16.0"},
                    {"cluster.routing": "tunnel", "load_balancer.mode": "snat"},
                    {"cluster.routing": "tunnel", "cluster.cilium_version": "1.16.0",
                     "cluster.tunnel_protocol": "geneve", "load_balancer.dispatch": "geneve"}):
        assert "installNoConntrackIptablesRules" not in build_plan(_seed(**changes)).values


def test_geneve_dispatch_with_native_routing_names_its_tunnel_protocol() -> None:
    values = build_plan(_seed(**{"cluster.cilium_version": "1.15.0",
                                 "cluster.tunnel_protocol": "geneve",
                                 "load_balancer.dispatch": "geneve"})).values
    assert (values["routingMode"], values["tunnelProtocol"],
            values["loadBalancer.dsrDispatch"]) == ("native", "geneve", "geneve")


# -- names and images: kind's, checked at plan time ----------------------------------------

def test_a_topology_whose_name_and_node_names_disagree_is_refused_at_plan_time() -> None:
    with pytest.raises(KindConfigError) as err:
        build_plan(_seed(name="cilium-modes"))
    assert str(err.value) == (
        f"{SEED_TOPOLOGY_PATH}: nodes: kind names the nodes of cluster cilium-modes: "
        "cilium-modes-control-plane, cilium-modes-worker, cilium-modes-worker2; the "
        "topology's are cilium-dsr-control-plane, cilium-dsr-worker, cilium-dsr-worker2 "
        "(rename: name: cilium-dsr, or the nodes after the topology's name)")


def test_roles_count_in_the_names_kind_gives() -> None:
    data = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
    data["nodes"][1]["role"] = "control-plane"  # cilium-dsr-worker as a control plane
    for p in data["workloads"][0]["pods"]:
        p["node"] = "cilium-dsr-worker2"
    data["workloads"][0]["pods"][0]["ip"] = "10.0.0.217"
    with pytest.raises(KindConfigError, match="kind names the nodes of cluster cilium-dsr: "
                                              "cilium-dsr-control-plane, "
                                              "cilium-dsr-control-plane2, cilium-dsr-worker"):
        build_plan(parse_topology(data, SEED_TOPOLOGY_PATH))


@pytest.mark.parametrize("path", sorted((SEED_TOPOLOGY_PATH.parent).glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_topology_of_the_repo_has_a_plan(path: Path) -> None:
    plan = build_plan(load_topology(path))
    assert plan.node_names == sorted(n.name for n in load_topology(path).nodes)


def test_dsrlab_plan_says_the_name_problem_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "modes.yaml"
    bad.write_text(SEED_TOPOLOGY_PATH.read_text().replace("name: cilium-dsr\n",
                                                          "name: cilium-modes\n"))
    out = dsrlab("plan", str(bad))
    assert out.returncode == 1
    assert out.stderr.startswith(f"error: {bad}: nodes: kind names the nodes of cluster "
                                 "cilium-modes: cilium-modes-control-plane, ")
    assert out.stderr.count("\n") == 1


@pytest.mark.parametrize("version", ["v1.30.0", "1.22.17"])
def test_a_kubernetes_without_a_node_image_of_the_kind_release(version: str) -> None:
    with pytest.raises(KindConfigError, match=rf"cluster\.kubernetes_version: {version}: "
                                              r"kind v0\.22\.0 has node images for "
                                              r"Kubernetes 1\.23, .*, 1\.29"):
        build_plan(_seed(**{"cluster.kubernetes_version": version}))
