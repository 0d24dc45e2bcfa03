"""The netns backend on real namespaces: bring-up, wiring, teardown, undo, cleanup."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.env.base import BackendError
from lab.env.netns import NetnsBackend, lxc_ifname, state_path
from lab.env.podserver import body_for
from lab.model.topology import Topology
from lab.plumbing import names, nsutil, procs, rootsnap

pytestmark = pytest.mark.netns


def _ip_json(lab_run: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    data = json.loads(lab_run.stdout)
    assert isinstance(data, list)
    return data


def test_every_host_is_a_namespace_wired_like_kind_and_cilium(seed_topology: Topology) -> None:
    with NetnsBackend(datapath=False).up(seed_topology) as lab:
        assert set(lab.hosts) == set(seed_topology.host_names())
        for host in lab.hosts.values():
            assert host.netns == names.netns_name(lab.run_id, host.name)
            assert nsutil.exists(host.netns)
        # client: the bridge with 172.18.0.1/16 and one port per node
        links = _ip_json(lab.run("client", ["ip", "-j", "-d", "link", "show"]))
        ports = [x for x in links if x.get("master") == "br-kind"]
        assert len(ports) == 3
        addrs = _ip_json(lab.run("client", ["ip", "-j", "-4", "addr", "show", "br-kind"]))
        assert [(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"]] == [("172.18.0.1", 16)]  # type: ignore[index,union-attr]
        # a node: eth0 with the kind address and docker's MAC, forwarding on
        worker = "cilium-dsr-worker"
        mac = _ip_json(lab.run(worker, ["ip", "-j", "link", "show", "eth0"]))[0]["address"]
        assert mac == "02:42:ac:12:00:04"
        eth0 = _ip_json(lab.run(worker, ["ip", "-j", "-4", "addr", "show", "eth0"]))[0]
        assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"]] == [("172.18.0.4", 16)]  # type: ignore[union-attr]
        assert nsutil.read_sysctl(lab.netns(worker), "net.ipv4.ip_forward") == "1"
        assert nsutil.read_sysctl(lab.netns(worker), "net.ipv4.conf.all.send_redirects") == "0"
        for host in lab.hosts.values():  # every host: no reverse-path filter, no IPv6
            assert nsutil.read_sysctl(host.netns, "net.ipv4.conf.all.rp_filter") == "0"
            assert nsutil.read_sysctl(host.netns, "net.ipv6.conf.default.disable_ipv6") == "1"
        routes = {r["dst"]: r for r in _ip_json(lab.run(worker, ["ip", "-j", "-4", "route"]))}
        assert routes["10.0.0.0/24"]["gateway"] == "172.18.0.3"  # worker2's pod CIDR
        assert routes["10.0.1.0/24"]["gateway"] == "172.18.0.2"  # control-plane's
        pod = seed_topology.pod("cni-8zxj9")
        assert routes["10.0.2.123"]["dev"] == lxc_ifname(pod)
        # the pod: a /32 and a default route via the node's router address
        paddr = _ip_json(lab.run(pod.name, ["ip", "-j", "-4", "addr", "show", "eth0"]))[0]
        assert [(a["local"], a["prefixlen"]) for a in paddr["addr_info"]] == [("10.0.2.123", 32)]  # type: ignore[union-attr]
        proutes = _ip_json(lab.run(pod.name, ["ip", "-j", "-4", "route"]))
        assert {"dst": "default", "gateway": "10.0.2.1"}.items() <= proutes[0].items()


def test_pods_answer_http_across_nodes(seed_topology: Topology) -> None:
    with NetnsBackend(datapath=False).up(seed_topology) as lab:
        for pod in seed_topology.pods:
            # from the node that does not host it: routed via autoDirectNodeRoutes
            other = next(n for n in seed_topology.nodes
                         if n.name != pod.node and n.role == "worker")
            out = lab.run(other.name, ["curl", "-sS", "--max-time", "5", f"http://{pod.ip}/"])
            assert out.stdout == body_for(pod.name, str(pod.ip))


def test_down_removes_namespaces_and_servers(seed_topology: Topology) -> None:
    lab = NetnsBackend(datapath=False).up(seed_topology)
    namespaces = [h.netns for h in lab.hosts.values()]
    pids = set(lab.pids.values())
    assert set(lab.pids) == {p.name for p in seed_topology.pods}
    assert len(pids) == 1  # one server process for every pod of the lab
    lab.down()
    assert not [ns for ns in namespaces if nsutil.exists(ns)]
    assert not [pid for pid in pids if procs.running(pid)]


def test_a_failed_start_undoes_itself_and_spares_what_it_did_not_make(
        seed_topology: Topology) -> None:
    run_id = names.new_run_id()
    blocker = names.netns_name(run_id, "cni-m7tjc")  # the last host to be created
    nsutil.create(blocker)
    try:
        with pytest.raises(Exception, match="already exists"):
            NetnsBackend(datapath=False).up(seed_topology, run_id=run_id)
        left = [ns for ns in nsutil.list_netns()
                if (p := names.parse_netns_name(ns)) and p.run_id == run_id]
        assert left == [blocker]
    finally:
        nsutil.remove(blocker)


def test_only_option_and_geneve_dispatch_are_accepted_and_a_refusal_creates_nothing(
        seed_topology: Topology) -> None:
    ipip = seed_topology.model_copy(update={"load_balancer": seed_topology.load_balancer
                                            .model_copy(update={"dispatch": "ipip"})})
    before = set(nsutil.list_netns())
    with pytest.raises(BackendError, match=r"load_balancer.dispatch: the netns backend "
                                           r"carries the service in an IPv4 option \(opt\) "
                                           r"or in Geneve \(geneve\), not ipip"):
        NetnsBackend().up(ipip)
    assert set(nsutil.list_netns()) == before


def test_up_and_down_leave_the_root_namespace_as_it_was(seed_topology: Topology) -> None:
    before = rootsnap.take()
    with NetnsBackend().up(seed_topology):
        during = rootsnap.take()
    assert rootsnap.diff(before, during) == []
    assert rootsnap.diff(before, rootsnap.take()) == []


def test_a_detached_lab_is_taken_down_by_its_run_id(seed_topology: Topology) -> None:
    lab = NetnsBackend(datapath=False).up(seed_topology)
    state = lab.detach()
    try:
        assert state == state_path(lab.run_id)
        recorded = json.loads(state.read_text())
        assert recorded["namespaces"]["client"] == lab.hosts["client"].netns
        residue = cleanup.find_runs()[lab.run_id]
        assert sorted(residue.namespaces) == sorted(h.netns for h in lab.hosts.values())
        assert set(lab.pids.values()) <= set(residue.pids)
        assert residue.owner_pid is None  # detached: handed over to dsrlab down/clean
    finally:
        cleanup.tear_down(lab.run_id)
    assert lab.run_id not in cleanup.find_runs()
    assert not state.exists()


def test_clean_finds_what_a_killed_run_left(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys
        from lab.env.netns import NetnsBackend
        from lab.model.topology import load_topology
        lab = NetnsBackend(datapath=False).up(load_topology(sys.argv[1]))
        print(lab.run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)   # no teardown, no state file
    """))
    seed = Path(__file__).resolve().parents[2] / "topologies" / "seed.yaml"
    proc = subprocess.run([sys.executable, str(script), str(seed)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == -9, proc.stderr
    run_id = proc.stdout.strip()
    residue = cleanup.find_runs()[run_id]
    try:
        assert len(residue.namespaces) == 6
        assert len(residue.pids) == 1  # the pod server outlived its parent
        assert residue.owner_pid is None  # its owner is dead: clean may take it
    finally:
        done = cleanup.clean_run(residue)
    assert sum(line.startswith("removed namespace") for line in done) == 6
    assert run_id not in cleanup.find_runs()
    assert not [pid for pid in residue.pids if procs.running(pid)]


def test_teardown_stops_what_still_runs_in_the_lab(seed_topology: Topology) -> None:
    """A process left running in a lab namespace (a capture whose stop was cut short by
    an interrupt) is stopped by the teardown: it would keep the removed namespace
    alive, out of sight of ``dsrlab clean``."""
    lab = NetnsBackend(datapath=False, servers=False).up(seed_topology)
    with lab:
        proc = lab.start("client", ["sleep", "60"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        ref = procs.ProcessRef.of(proc.pid)
        assert ref is not None
        deadline = time.monotonic() + 5
        while proc.pid not in nsutil.pids_in(lab.netns("client")):  # nsenter has moved it
            assert time.monotonic() < deadline, "sleep never entered the client namespace"
            time.sleep(0.001)
    try:
        assert not ref.running(), "a process of the lab outlived its teardown"
    finally:
        proc.kill()
        proc.wait()
