"""The kind backend's command sequence, with recording stand-ins for kind, kubectl,
helm and docker first on PATH (tests/kind/bin/fake-tool): what it runs, in which
order, with which arguments, what it makes of their output, and that a failure or
a Cilium in the wrong mode tears down what it made. No cluster runs here; the
tests that need one carry the ``kind`` marker (test_real_cluster.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.env.base import BackendError, Lab
from lab.env.kind.backend import KindBackend, ready_endpoints
from lab.env.kind.plan import build_plan
from lab.model.topology import Topology, load_topology, parse_topology
from lab.plumbing import names, owner
from tests.kind.dockerfake import API_VERSION, FakeDockerApi
from tests.seed import SEED_TOPOLOGY_PATH

BIN = Path(__file__).parent / "bin"


@pytest.fixture
def docker_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeDockerApi]:
    api = FakeDockerApi(tmp_path / "docker.sock")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{api.socket}")
    yield api
    api.close()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
             docker_api: FakeDockerApi) -> Path:
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")
    monkeypatch.setenv("DSRLAB_RECORD", str(record))
    return record


def _calls(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def _seed() -> Topology:
    return load_topology(SEED_TOPOLOGY_PATH)


def test_up_runs_the_plan_in_order_and_finds_the_clusters_hosts(
        recorded: Path, tmp_path: Path, docker_api: FakeDockerApi) -> None:
    run_id = names.new_run_id()
    said: list[str] = []
    backend = KindBackend(workdir=tmp_path / "work", state_dir=tmp_path / "state",
                          progress=said.append)
    lab = backend.up(_seed(), run_id=run_id)
    try:
        assert isinstance(lab, Lab)  # the backend contract the runner uses
        assert said[:2] == ["the kind clusters already here (kind, up to 30 s)",
                            "create the cluster (kind, up to 600 s)"]
        folder = tmp_path / "work" / run_id
        plan = build_plan(_seed(), run_id)
        expected = []
        for cmd in plan.commands:
            argv = [str(folder / a) if a in ("kind-config.yaml", "manifests.yaml") else a
                    for a in cmd.argv]
            # the control-plane's address as read from kubectl get nodes
            expected.append(["k8sServiceHost=172.18.0.2" if a.startswith("k8sServiceHost=")
                             else a for a in argv])
        calls = _calls(recorded)
        assert calls[:len(expected)] == expected
        assert calls[len(expected):] == [  # discovery
            ["kubectl", "--context", "kind-cilium-dsr", "get", "nodes", "-o", "json"],
            ["kubectl", "--context", "kind-cilium-dsr", "get", "pods", "-A", "-l",
             f"app.kubernetes.io/managed-by=dsrlab,dsrlab.io/run={run_id}", "-o", "json"]]
        # the files the commands name are there, as data
        assert (folder / "kind-config.yaml").is_file()
        assert "kind: DaemonSet" in (folder / "manifests.yaml").read_text()
        assert len(list((folder / "logs").glob("*.log"))) == len(calls)
        # the hosts: this machine on the kind bridge, the node containers, the pods
        hosts = {h.name: (h.kind, str(h.ip), h.ifname, h.netns) for h in lab.hosts.values()}
        assert hosts == {
            "client": ("client", "172.18.0.1", "br-67ecd2c684e4", "host"),
            "cilium-dsr-control-plane": ("node", "172.18.0.2", "eth0",
                                         "cilium-dsr-control-plane"),
            "cilium-dsr-worker": ("node", "172.18.0.4", "eth0", "cilium-dsr-worker"),
            "cilium-dsr-worker2": ("node", "172.18.0.3", "eth0", "cilium-dsr-worker2"),
            "cni-8zxj9": ("pod", "10.0.2.123", "eth0", "cilium-dsr-worker/cni-8zxj9"),
            "cni-m7tjc": ("pod", "10.0.0.216", "eth0", "cilium-dsr-worker2/cni-m7tjc"),
        }
        assert [p.name for p in lab.topology.backends("serversvc")] == ["cni-8zxj9",
                                                                        "cni-m7tjc"]
        assert lab.exec_argv("client", ["curl", "x"]) == ["curl", "x"]
        # the kind network from the Docker API (its IPv4 gateway: the client's address)
        assert docker_api.seen[-1].endswith("/networks/kind")
        # a node's commands run in its container's namespace, with this machine's tcpdump
        assert lab.exec_argv("cilium-dsr-worker", ["tcpdump", "-i", "eth0"]) == [
            "nsenter", "-t", "4002", "-n", "--", "tcpdump", "-i", "eth0"]
        assert lab.pod_uids["cni-8zxj9"] == "2c1e8a52-8c55-4bd2-9a3c-5e1f0b6c1d01"
        # recorded for teardown once created
        record = json.loads((tmp_path / "state" / f"{run_id}.kind.json").read_text())
        assert record["cluster"] == "cilium-dsr"
        # the Docker API version agreed with the daemon, never a pinned one
        assert "/version" in docker_api.seen
        assert all(p.startswith(f"/v{API_VERSION}/") for p in docker_api.seen
                   if p not in ("/version", "/_ping"))
    finally:
        lab.down()
    assert _calls(recorded)[-1] == ["kind", "delete", "cluster", "--name", "cilium-dsr"]
    assert not (tmp_path / "state" / f"{run_id}.kind.json").exists()
    assert owner.alive_owner(run_id) is None


@pytest.mark.parametrize(("env", "message"), [
    ({"FAKE_FAIL": "helm install"},
     r"install Cilium: `helm install cilium cilium/cilium .*` failed: "
     r"Error: helm failed on purpose \(output in .*-install-cilium\.log\)"),
    ({"FAKE_MODE": "SNAT"}, r"Cilium is not running as the topology asks: Cilium's "
                            r"load-balancer mode is SNAT, the topology asks for dsr"),
])
def test_a_failed_bring_up_says_why_and_removes_the_cluster(
        recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        env: dict[str, str], message: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    run_id = names.new_run_id()
    backend = KindBackend(workdir=tmp_path / "work", state_dir=tmp_path / "state")
    with pytest.raises(BackendError, match=message):
        backend.up(_seed(), run_id=run_id)
    calls = _calls(recorded)
    assert [c[:3] for c in calls[:2]] == [["kind", "get", "clusters"],
                                          ["kind", "create", "cluster"]]
    assert calls[-1] == ["kind", "delete", "cluster", "--name", "cilium-dsr"]
    assert not (tmp_path / "state" / f"{run_id}.kind.json").exists()
    assert owner.alive_owner(run_id) is None


@pytest.mark.parametrize("clusters", ["cilium-dsr", "other,cilium-dsr"])
def test_a_cluster_of_that_name_already_here_is_left_alone(
        recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        clusters: str) -> None:
    """The user's cluster named as the topology: no create, no delete, one line saying
    which cluster and the ways out."""
    monkeypatch.setenv("FAKE_CLUSTERS", clusters)
    run_id = names.new_run_id()
    backend = KindBackend(workdir=tmp_path / "work", state_dir=tmp_path / "state")
    with pytest.raises(BackendError) as err:
        backend.up(_seed(), run_id=run_id)
    assert str(err.value) == (
        "a kind cluster named cilium-dsr is already here, not made by this run: the lab "
        f"leaves it alone. Give the topology another name ({SEED_TOPOLOGY_PATH} name: and "
        "its nodes), or use that cluster read only: kind get kubeconfig --name cilium-dsr "
        "> FILE, then --kubeconfig FILE")
    assert _calls(recorded) == [["kind", "get", "clusters"]]
    assert not (tmp_path / "state" / f"{run_id}.kind.json").exists()
    assert owner.alive_owner(run_id) is None


def test_a_failed_kind_create_deletes_nothing(
        recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kind create failing (e.g. a cluster of that name made meanwhile): the cluster was
    never the lab's, so no kind delete (kind removes what it half-made itself)."""
    monkeypatch.setenv("FAKE_FAIL", "kind create")
    run_id = names.new_run_id()
    backend = KindBackend(workdir=tmp_path / "work", state_dir=tmp_path / "state")
    with pytest.raises(BackendError, match=r"^create the cluster: `kind create cluster "):
        backend.up(_seed(), run_id=run_id)
    calls = _calls(recorded)
    assert [c[:3] for c in calls] == [["kind", "get", "clusters"],
                                      ["kind", "create", "cluster"]]
    assert not (tmp_path / "state" / f"{run_id}.kind.json").exists()


def test_cilium_1_15_saying_another_dsr_dispatch_tears_down(
        recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_STATUS", "cilium-status-verbose-1.15.txt")
    data = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
    data["cluster"] |= {"cilium_version": "1.15.0", "tunnel_protocol": "geneve"}
    data["load_balancer"]["dispatch"] = "geneve"
    t = parse_topology(data, SEED_TOPOLOGY_PATH)
    backend = KindBackend(workdir=tmp_path / "work", state_dir=tmp_path / "state")
    with pytest.raises(BackendError, match=r"Cilium's DSR dispatch mode is IP "
                                           r"Option/Extension, the topology asks for "
                                           r"geneve \(Geneve\)$"):
        backend.up(t)
    calls = _calls(recorded)
    assert ["kubectl", "--context", "kind-cilium-dsr", "-n", "kube-system", "exec",
            "ds/cilium", "-c", "cilium-agent", "--", "cilium-dbg", "status",
            "--verbose"] in calls
    assert calls[-1] == ["kind", "delete", "cluster", "--name", "cilium-dsr"]


def test_an_existing_cluster_is_only_read(recorded: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    run_id = names.new_run_id()
    lab = KindBackend(kubeconfig=str(kubeconfig), workdir=tmp_path / "work",
                      state_dir=tmp_path / "state").up(_seed(), run_id=run_id)
    lab.down()
    calls = _calls(recorded)
    verbs = [c[3] if c[0] == "kubectl" else c[1] for c in calls]
    assert not {"create", "install", "apply", "delete", "patch"} & set(verbs[:-1])
    assert all(c[:3] == ["kubectl", "--kubeconfig", str(kubeconfig)]
               for c in calls if c[0] == "kubectl")
    # teardown deletes only what carries the run's label (here: nothing was made)
    assert calls[-1] == ["kubectl", "--kubeconfig", str(kubeconfig), "delete",
                         "daemonsets,deployments,services,configmaps", "--all-namespaces",
                         "-l", f"dsrlab.io/run={run_id}", "--ignore-not-found",
                         "--wait=false"]
    assert "kind" not in {c[0] for c in calls}


def test_ready_endpoints_reads_endpointslices() -> None:
    text = json.dumps({"items": [{"endpoints": [
        {"addresses": ["10.0.2.123"], "conditions": {"ready": True}},
        {"addresses": ["10.0.0.216"], "conditions": {"ready": False}}]}, {"endpoints": None}]})
    assert ready_endpoints(text) == ["10.0.2.123"]
    assert ready_endpoints("not json") == []


def test_dsrlab_clean_removes_what_a_crashed_kind_run_recorded(recorded: Path) -> None:
    """A run that died after recording its cluster: ``dsrlab clean``'s pass deletes the
    cluster by the name in the record, and the record with it."""
    from lab.env import cleanup  # noqa: PLC0415
    from lab.env.kind import residue  # noqa: PLC0415

    run_id = names.new_run_id()
    record = cleanup.STATE_DIR / f"{run_id}{residue.SUFFIX}"
    residue.record(record, cluster="cilium-dsr", kubeconfig=None, context="kind-cilium-dsr",
                   label=f"dsrlab.io/run={run_id}")
    try:
        res = cleanup.find_runs([run_id])[run_id]
        assert res.dead  # no owner, not left up on purpose
        done = cleanup.clean_run(res)
    finally:
        record.unlink(missing_ok=True)
    assert _calls(recorded) == [["kind", "delete", "cluster", "--name", "cilium-dsr"]]
    assert "ran: kind delete cluster --name cilium-dsr" in done
    assert not record.exists()


def test_a_record_made_before_the_cluster_removes_nothing(recorded: Path) -> None:
    """A kind run that died before its cluster was created: its record names no cluster
    and no kubeconfig, so clean runs nothing (not kubectl on the default context)."""
    from lab.env import cleanup  # noqa: PLC0415
    from lab.env.kind import residue  # noqa: PLC0415

    assert residue.removal_commands({"cluster": None, "kubeconfig": None, "context": None,
                                     "label": "dsrlab.io/run=abc123"}) == []
    run_id = names.new_run_id()
    record = cleanup.STATE_DIR / f"{run_id}{residue.SUFFIX}"
    residue.record(record, cluster=None, kubeconfig=None, context=None,
                   label=f"dsrlab.io/run={run_id}")
    try:
        cleanup.clean_run(cleanup.find_runs([run_id])[run_id])
    finally:
        record.unlink(missing_ok=True)
    assert not recorded.exists()  # no tool was called


def test_an_existing_clusters_record_deletes_by_label_only() -> None:
    from lab.env.kind.residue import removal_commands  # noqa: PLC0415

    assert removal_commands({"cluster": None, "kubeconfig": "/k", "context": None,
                             "label": "dsrlab.io/run=abc123"}) == [
        ["kubectl", "--kubeconfig", "/k", "delete",
         "daemonsets,deployments,services,configmaps", "--all-namespaces", "-l",
         "dsrlab.io/run=abc123", "--ignore-not-found", "--wait=false"]]


@pytest.mark.parametrize("cgroup", [
    "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
    "kubelet-kubepods-besteffort-pod2c1e8a52_8c55_4bd2_9a3c_5e1f0b6c1d01.slice/cri-x.scope\n",
    "0::/kubepods/besteffort/pod2c1e8a52-8c55-4bd2-9a3c-5e1f0b6c1d01/abc\n",
])
def test_a_pods_process_is_found_by_its_uid_in_the_cgroups(tmp_path: Path, cgroup: str) -> None:
    from lab.env.kind.containers import pod_pid  # noqa: PLC0415

    for pid, text in ((1, "0::/init.scope\n"), (77, "0::/system.slice/docker.service\n"),
                      (4242, cgroup)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    (tmp_path / "self").mkdir()
    assert pod_pid("2c1e8a52-8c55-4bd2-9a3c-5e1f0b6c1d01", tmp_path) == 4242
    assert pod_pid("00000000-0000-0000-0000-000000000000", tmp_path) is None


def test_no_docker_daemon_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lab.env.kind.containers import Docker  # noqa: PLC0415

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(BackendError, match=r"^the Docker daemon does not answer: "):
        Docker().ping()


def test_the_docker_api_version_is_the_daemons(docker_api: FakeDockerApi) -> None:
    """A daemon whose minimum API is 1.44 (Docker 29) answers: the SDK asks which version
    it speaks first instead of sending a pinned 1.41 it refuses."""
    from lab.env.kind.containers import Docker  # noqa: PLC0415

    assert Docker().container_pid("cilium-dsr-worker") == 4002
    assert docker_api.seen == ["/version",
                               f"/v{API_VERSION}/containers/cilium-dsr-worker/json"]


def test_a_dual_stack_cluster_is_found_in_both_families(
        recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The nodes' IPv6 InternalIPs, the pods' IPv6 podIPs and the kind network's IPv6
    gateway (the client's) come from the cluster, as the IPv4 ones do."""
    monkeypatch.setenv("FAKE_NODES", "kubectl-get-nodes-dual.json")
    monkeypatch.setenv("FAKE_PODS", "kubectl-get-pods-dual.json")
    dual = load_topology(SEED_TOPOLOGY_PATH.parent / "seed-dual-stack.yaml")
    backend = KindBackend(workdir=tmp_path / "work", state_dir=tmp_path / "state")
    lab = backend.up(dual, run_id=names.new_run_id())
    try:
        t = lab.topology
        assert {n.name: str(n.ip6) for n in t.nodes} == {
            "cilium-dsr-control-plane": "fc00:f853:ccd:e793::2",
            "cilium-dsr-worker": "fc00:f853:ccd:e793::4",
            "cilium-dsr-worker2": "fc00:f853:ccd:e793::3"}
        assert {p.name: str(p.ip6) for p in t.pods} == {
            "cni-8zxj9": "fd00:10:244:2::1a", "cni-m7tjc": "fd00:10:244::2b"}
        assert str(t.client.ip6) == "fc00:f853:ccd:e793::1"
        assert str(t.client.ip) == "172.18.0.1"
    finally:
        lab.down()


def test_a_single_stack_cluster_for_a_dual_stack_topology_is_a_clear_error(
        recorded: Path, tmp_path: Path) -> None:
    dual = load_topology(SEED_TOPOLOGY_PATH.parent / "seed-dual-stack.yaml")
    backend = KindBackend(workdir=tmp_path / "work", state_dir=tmp_path / "state")
    with pytest.raises(BackendError, match="no IPv6 InternalIP"):
        backend.up(dual, run_id=names.new_run_id())
