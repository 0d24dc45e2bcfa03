"""The ``dsrlab`` command as a user runs it (a real subprocess, real labs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.env.netns import NetnsBackend
from lab.model.topology import load_topology
from lab.plumbing import nsutil

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "topologies" / "seed.yaml"


def dsrlab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=REPO,
                          env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


@pytest.mark.netns
@pytest.mark.bpf
def test_up_leaves_a_working_lab_and_down_removes_it() -> None:
    out = dsrlab("up", str(SEED))
    assert out.returncode == 0, out.stderr
    m = re.search(r"dsrlab down ([0-9a-f]{6})", out.stdout)
    assert m, out.stdout
    run_id = m[1]
    try:
        assert run_id in dsrlab("list").stdout
        client = f"dsrlab-{run_id}-client"
        curl = subprocess.run(nsutil.exec_argv(client, ["curl", "-sS", "--max-time", "5",
                                                        "http://172.18.0.2:32000/"]),
                              capture_output=True, text=True, timeout=20, check=False)
        assert curl.stdout.startswith("PodName: cni-"), curl.stderr
    finally:
        down = dsrlab("down", run_id)
    assert down.returncode == 0, down.stderr
    assert f"lab {run_id} is down" in down.stdout
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
    assert "no scenario 'nope' (known: seed)" in out.stderr


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
        # this (live) process still holds the run: a bare clean leaves it alone
        bare = dsrlab("clean")
        assert f"run {lab.run_id}: in use by pid {os.getpid()}, left alone" in bare.stdout
        assert lab.run_id in cleanup.find_runs()
        out = dsrlab("clean", lab.run_id)  # named: it goes
        assert out.returncode == 0, out.stderr
        assert f"run {lab.run_id}: 6 namespaces, 2 processes" in out.stdout
        assert lab.run_id not in cleanup.find_runs()
    finally:
        if lab.run_id in cleanup.find_runs():
            cleanup.clean_run(cleanup.find_runs()[lab.run_id])
