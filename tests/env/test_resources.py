"""A lab sized to the machine: open files raised to the hard limit, memory and open files
worked out before anything starts, one line when the machine cannot give them."""

from __future__ import annotations

import resource
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab.env import resources
from lab.env.resources import ResourceError, lab_needs, parse_size
from lab.model.scale import scale_data, scale_topology
from tests.cli.helpers import DSRLAB, ENV, REPO, dsrlab
from tests.seed import SEED_TOPOLOGY_PATH, TOPOLOGY

GIB = 1 << 30


def _scale_yaml(tmp_path: Path, nodes: int) -> Path:
    path = tmp_path / f"scale-{nodes}.yaml"
    path.write_text(yaml.safe_dump(scale_data(nodes), sort_keys=False))
    return path


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- what a lab needs, worked out ------------------------------------------------------

def test_what_a_lab_needs_grows_with_it_and_stays_within_the_machine_at_300_nodes() -> None:
    seed = lab_needs(TOPOLOGY)
    big = lab_needs(scale_topology(300))
    assert seed.memory < big.memory
    assert seed.open_files < big.open_files
    assert big.what == "300 nodes and 600 pods"
    # 300 nodes with a capture at every hop of a scenario (client, LB node, 299 other
    # nodes, 600 pods): under 5 GiB all told (measured: 4.3 GiB); 32 MiB rings each,
    # 56 MiB held, were 49 GiB of rings alone
    roles = ["client", "lb-node", *["backend-node"] * 299, *["pod"] * 600]
    captured = lab_needs(scale_topology(300), captures=roles)  # type: ignore[arg-type]
    assert captured.memory < 5 * GIB
    assert captured.what == "300 nodes and 600 pods with 901 capture points"


@pytest.mark.parametrize(("text", "value"), [
    ("2G", 2 * GIB), ("512M", 512 << 20), ("512MiB", 512 << 20), ("1.5g", 3 * GIB // 2),
    ("1048576", 1 << 20), (" 64 k ", 64 << 10)])
def test_memory_sizes_are_read_in_binary_units(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("raw", ["lots", "-1G", "0", "2X", "1e9", "\x1b]0;title\x07"])
def test_a_bad_memory_limit_is_one_line_naming_the_setting(raw: str) -> None:
    with pytest.raises(ResourceError) as err:
        resources.memory_limit({resources.MEMORY_LIMIT_ENV: raw})
    message = str(err.value)
    assert message.startswith(f"{resources.MEMORY_LIMIT_ENV}=")
    assert message.isprintable()
    assert len(message) < 200


# -- the machine's limits, live ---------------------------------------------------------


@pytest.mark.netns
def test_a_100_node_lab_under_ulimit_1024_raises_the_soft_limit_to_the_hard_one() -> None:
    """Soft 1024 (the common default), hard 8192: the lab comes up, the process's soft
    limit is the hard one (before: raised only to its own estimate)."""
    code = ("import resource\n"
            "from lab.env.netns import NetnsBackend\n"
            "from lab.model.scale import scale_topology\n"
            "with NetnsBackend(datapath=False).up(scale_topology(100)) as lab:\n"
            "    print(*resource.getrlimit(resource.RLIMIT_NOFILE), len(lab.hosts))\n")
    out = subprocess.run(["prlimit", "--nofile=1024:8192", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8192", "8192", "301"]


@pytest.mark.netns
def test_a_lab_beyond_the_hard_limit_on_open_files_is_refused_in_one_line(
        tmp_path: Path) -> None:
    """``ulimit -n 1024`` (soft and hard) and 100 nodes: one line, nothing created
    (before: a traceback, ``Too many open files``, half-way through the bring-up)."""
    topo = _scale_yaml(tmp_path, 100)
    state = tmp_path / "state"
    line = f"ulimit -n 1024; exec {shlex.join([*DSRLAB, 'up', str(topo)])}"
    out = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=300,
                         check=False, cwd=REPO, env={**ENV, "DSRLAB_STATE_DIR": str(state)})
    error = _one_error_line(out)
    assert "100 nodes and 200 pods need about" in error
    assert "open files" in error
    assert "1,024" in error
    assert "ulimit -n" in error
    assert not state.exists() or not list(state.iterdir())


@pytest.mark.netns
def test_a_lab_beyond_the_memory_limit_is_refused_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"DSRLAB_STATE_DIR": str(state), resources.MEMORY_LIMIT_ENV: "64M"}
    out = dsrlab("up", str(SEED_TOPOLOGY_PATH), env=env)
    error = _one_error_line(out)
    assert "3 nodes and 2 pods need about" in error
    assert f"64 MiB is available ({resources.MEMORY_LIMIT_ENV}=64 MiB)" in error
    assert not state.exists() or not list(state.iterdir())


@pytest.mark.netns
def test_a_scenario_whose_captures_go_over_the_memory_limit_is_refused_before_its_lab(
        tmp_path: Path) -> None:
    """The seed's lab fits in 300 MiB, not with its six captures' rings: the run is
    refused before any lab or capture set exists."""
    state, captures = tmp_path / "state", tmp_path / "captures"
    env = {"DSRLAB_STATE_DIR": str(state), resources.MEMORY_LIMIT_ENV: "300M"}
    assert lab_needs(TOPOLOGY).memory < 300 << 20
    out = dsrlab("run", "seed", "--captures", str(captures), env=env, timeout=300)
    error = _one_error_line(out)
    assert "3 nodes and 2 pods with 6 capture points need about" in error
    assert not captures.exists() or not any(captures.rglob("*.pcap"))
    assert not state.exists() or not list(state.iterdir())


def test_the_soft_limit_is_raised_to_the_hard_one_in_this_process() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
        assert resources.raise_open_files() == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
