"""``--datapath`` against a topology's ``datapath:`` as a user meets them: the command
line wins; a topology on Cilium with no Cilium source is one error line and no lab."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.cli.helpers import dsrlab
from tests.seed import SEED_SCENARIO_PATH, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

NO_SOURCE = ("needs a Cilium source: --cilium-src PATH (a checkout, its bpf/, or a bpf/ "
             "tarball) or DSRLAB_CILIUM_SRC")


def cilium_files(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the seed's topology saying ``datapath: cilium``, and the seed's
    scenario on it."""
    topo = tmp_path / "on-cilium.yaml"
    topo.write_text(yaml.safe_dump({**yaml.safe_load(SEED_TOPOLOGY_PATH.read_text()),
                                    "datapath": "cilium"}))
    scenario = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    scenario.update(name="seed-on-cilium", topology=str(topo), trace=str(SEED_TRACE_PATH))
    path = tmp_path / "seed-on-cilium.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return topo, path


def _no_lab_left(captures: Path) -> None:
    assert not captures.exists() or not any(captures.iterdir())


def test_a_topology_on_cilium_without_a_source_is_one_line(tmp_path: Path) -> None:
    topo, scenario = cilium_files(tmp_path)
    up = dsrlab("up", str(topo))
    assert (up.returncode, up.stdout) == (1, ""), up.stderr
    assert up.stderr == f"error: {topo}: datapath: cilium {NO_SOURCE}\n"
    captures = tmp_path / "captures"
    run = dsrlab("run", str(scenario), "--captures", str(captures), "--no-screenshot")
    assert (run.returncode, run.stdout) == (1, ""), run.stderr
    assert run.stderr == f"error: {topo}: datapath: cilium {NO_SOURCE}\n"
    _no_lab_left(captures)
    every = dsrlab("run", "--all", "--datapath", "cilium", "--scenarios", str(tmp_path),
                   "--captures", str(captures))
    assert (every.returncode, every.stdout) == (1, ""), every.stderr
    assert every.stderr == f"error: --datapath cilium {NO_SOURCE}\n"
    _no_lab_left(captures)


def test_cilium_src_goes_with_cilium_only(tmp_path: Path) -> None:
    src = str(tmp_path)
    up = dsrlab("up", str(SEED_TOPOLOGY_PATH), "--cilium-src", src)
    assert up.returncode == 2
    assert up.stderr == ("error: --cilium-src goes with --datapath cilium (topology "
                         "cilium-dsr says datapath: lab)\n")
    for args in (["run", "seed", "--datapath", "lab"], ["run", "--all", "--datapath", "none"]):
        out = dsrlab(*args, "--cilium-src", src)
        assert out.returncode == 2, args
        assert out.stderr == "error: --cilium-src goes with --datapath cilium\n"


def test_kind_refuses_a_datapath_given_on_the_command_line() -> None:
    """``--datapath lab`` was the default, so kind took it silently; now it is the user's
    choice, and kind runs real Cilium whatever it says."""
    out = dsrlab("run", "seed", "--backend", "kind", "--datapath", "lab")
    assert out.returncode == 2
    assert out.stderr.startswith("error: --datapath and --cilium-src are the netns "
                                 "backend's"), out.stderr


@pytest.mark.netns
def test_the_command_line_wins_over_the_topology(tmp_path: Path) -> None:
    """The topology says cilium (and no source is there to build it): ``--datapath
    none`` brings it up all the same."""
    topo, _ = cilium_files(tmp_path)
    up = dsrlab("up", "--datapath", "none", str(topo))
    assert up.returncode == 0, up.stderr
    run_id = re.search(r"dsrlab down ([0-9a-f]{6})", up.stdout)
    assert run_id, up.stdout
    down = dsrlab("down", run_id[1])
    assert down.returncode == 0, down.stderr
