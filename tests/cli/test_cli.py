"""The ``dsrlab`` command as a user runs it (a real subprocess, real labs)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.env.netns import NetnsBackend
from lab.env.podserver import body_for
from lab.model.topology import load_topology
from lab.plumbing import nsutil
from tests.cli.helpers import dsrlab
from tests.seed import LB_NODE, NODE_PORT, SEED_TOPOLOGY_PATH, TOPOLOGY, VIP

SEED = SEED_TOPOLOGY_PATH


@pytest.mark.netns
@pytest.mark.bpf
def test_up_leaves_a_working_lab_and_down_removes_it() -> None:
    out = dsrlab("up", str(SEED))
    assert out.returncode == 0, out.stderr
    m = re.search(r"dsrlab down ([0-9a-f]{6})", out.stdout)
    assert m, out.stdout
    run_id = m[1]
    try:
        # piped: the host table shows every name whole (no "…", nothing wrapped), no
        # spinner frames or colours in the pipe
        ips = {TOPOLOGY.client.name: TOPOLOGY.client.ip, **{n.name: n.ip for n in TOPOLOGY.nodes},
               **{p.name: p.ip for p in TOPOLOGY.pods}}
        rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()
                if line.split() and line.split()[0] in ips}
        assert set(rows) == set(TOPOLOGY.host_names()), out.stdout
        for host, row in rows.items():
            assert row[2] == str(ips[host]), row
            assert row[-1] == f"dsrlab-{run_id}-{host}", row
        assert f"dsrlab-{run_id}-{LB_NODE.name}" in out.stdout.split()  # the longest name
        assert not re.search(r"[\x1b\r…│┃]", out.stdout + out.stderr), out.stdout
        listed = dsrlab("list")
        row = rf"^{run_id} +{len(ips)} +[1-9]\d* +up \(dsrlab up\)$"
        assert re.search(row, listed.stdout, re.M), listed.stdout
        client = f"dsrlab-{run_id}-client"
        curl = subprocess.run(nsutil.exec_argv(client, ["curl", "-sS", "--max-time", "5",
                                                        f"http://{VIP}:{NODE_PORT}/"]),
                              capture_output=True, text=True, timeout=20, check=False)
        assert curl.stdout.startswith("PodName: cni-"), curl.stderr
    finally:
        down = dsrlab("down", run_id)
    assert down.returncode == 0, down.stderr
    assert f"lab {run_id} is down" in down.stdout
    assert f"  removed namespace dsrlab-{run_id}-{LB_NODE.name}" in down.stdout
    assert run_id not in cleanup.find_runs()


@pytest.mark.netns
def test_up_with_a_broken_topology_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED.read_text().replace("ip: 172.18.0.4", "ip: 172.99.0.4"))
    out = dsrlab("up", str(bad))
    assert out.returncode == 1
    assert f"{bad}: nodes[1].ip: 172.99.0.4 is not in network.subnet" in out.stderr


@pytest.mark.netns
def test_run_of_an_unknown_scenario_lists_the_known_ones() -> None:
    out = dsrlab("run", "nope")
    assert out.returncode == 1
    assert out.stderr.startswith("error: no scenario 'nope' (known: seed, ")  # the top level first
    assert ", snat-tcp-remote, " in out.stderr  # and the subfolders' by name


@pytest.mark.netns
def test_clean_of_an_unknown_run_id_is_an_error() -> None:
    run_id = "fedcba"
    assert run_id not in cleanup.find_runs()
    out = dsrlab("clean", run_id)
    assert out.returncode == 1
    assert f"nothing carries run tag {run_id}" in out.stderr


@pytest.mark.netns
def test_clean_removes_a_leftover_lab_by_its_tag() -> None:
    lab = NetnsBackend(datapath=False).up(load_topology(SEED))
    lab.close_handles()  # no state file; namespaces and servers left
    try:
        assert lab.run_id in cleanup.find_runs()
        assert dsrlab("clean", "--dry-run", lab.run_id).returncode == 0
        assert lab.run_id in cleanup.find_runs()
        # this (live) process still holds the run: a bare clean leaves it alone (asked
        # with --dry-run: a bare clean would take other users' labs on a shared machine)
        bare = dsrlab("clean", "--dry-run")
        assert (f"run {lab.run_id}: in use by pid {os.getpid()} (a run in progress), "
                "left alone") in bare.stdout
        assert lab.run_id in cleanup.find_runs()
        out = dsrlab("clean", lab.run_id)  # named, a live run is refused too
        assert out.returncode == 1
        assert out.stderr == (f"error: run {lab.run_id} is in progress (pid {os.getpid()}): "
                              f"nothing removed; dsrlab clean --force {lab.run_id} stops "
                              "it first\n")
        # its own process takes everything by the tag
        res = cleanup.find_runs([lab.run_id])[lab.run_id]
        assert len(res.namespaces) == len(TOPOLOGY.host_names())
        assert res.pids
        done = cleanup.clean_run(res)
        assert [d for d in done if d.startswith("removed namespace")] == [
            f"removed namespace {ns}" for ns in res.namespaces]
        assert not (cleanup.STATE_DIR / f"{lab.run_id}.owner").exists()
        assert lab.run_id not in cleanup.find_runs()
    finally:
        if lab.run_id in cleanup.find_runs():
            cleanup.clean_run(cleanup.find_runs()[lab.run_id])


@pytest.mark.netns
@pytest.mark.bpf
def test_a_udp_service_is_served_end_to_end_through_the_node_port(tmp_path: Path) -> None:
    """The pods echo datagrams for a UDP service (after the pod's line: who answered)
    and the datapath balances UDP: a UDP NodePort is accepted, and a datagram to it
    comes back from the service address."""
    udp = tmp_path / "udp.yaml"
    udp.write_text(SEED.read_text().replace("protocol: TCP", "protocol: UDP"))
    topo = load_topology(udp)
    assert topo.services[0].protocol == "UDP"
    with NetnsBackend(datapath=True).up(topo) as lab, \
            nsutil.socket_in(lab.hosts[topo.client.name].netns, socket.AF_INET,
                             socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for i in range(3):
            sock.sendto(b"ping %d" % i, (VIP, NODE_PORT))
            data, source = sock.recvfrom(100)
            assert source == (VIP, NODE_PORT)
            pod = next(p for p in TOPOLOGY.pods if data.startswith(
                body_for(p.name, str(p.ip)).encode()))
            assert data == body_for(pod.name, str(pod.ip)).encode() + b"ping %d" % i


@pytest.mark.netns
def test_markup_in_a_name_prints_literally_with_its_brackets(tmp_path: Path) -> None:
    bad = tmp_path / "markup.yaml"
    bad.write_text(SEED.read_text().replace(f"name: {LB_NODE.name}\n", 'name: "[/red]"\n', 1))
    out = dsrlab("up", str(bad))
    assert out.returncode == 1
    assert out.stderr == (f"error: {bad}: nodes[0].name: String should match pattern "
                          "'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' (got '[/red]')\n")
    for args in (["down", "[/red]"], ["clean", "[bold]x[/bold]"], ["clean", "--", "[/red]"]):
        out = dsrlab(*args)
        assert out.returncode == 1, args
        assert out.stderr == f"error: run id {args[-1]!r} is not 6 lowercase hex digits\n"


@pytest.mark.parametrize("args", [["run"], ["run", "--all", "seed"]])
def test_run_takes_a_scenario_or_all(args: list[str]) -> None:
    res = dsrlab(*args)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == "error: give a scenario or --all (not both)"
