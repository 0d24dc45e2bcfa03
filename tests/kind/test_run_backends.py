"""A scenario runs only on the backends its file lists (``backends:``), whatever runs it:
``dsrlab run --backend kind`` says so in one line before it looks for the kind tools,
and the library refuses before anything is brought up (the pytest plugin skips)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.env.base import Lab
from lab.model.scenario import ScenarioError
from lab.model.topology import Topology
from lab.runner.scenario import run_scenario
from tests.cli.helpers import REPO, dsrlab

NETNS_ONLY = REPO / "scenarios" / "modes" / "dsr-tcp-local.yaml"


class KindShapedBackend:
    """A backend named kind that records being asked to bring a lab up."""

    name = "kind"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def up(self, topology: Topology, *, run_id: str | None = None) -> Lab:
        self.asked.append(topology.name)
        raise AssertionError("a netns-only scenario was brought up on kind")


def test_the_library_refuses_a_backend_the_scenario_does_not_list(tmp_path: Path) -> None:
    backend = KindShapedBackend()
    with pytest.raises(ScenarioError) as err:
        run_scenario(NETNS_ONLY, captures_root=tmp_path, backend=backend)
    assert str(err.value) == (f"{NETNS_ONLY}: backends: scenario dsr-tcp-local runs on "
                              "netns, not on kind")
    assert backend.asked == []


@pytest.mark.skipif(os.geteuid() != 0, reason="dsrlab run needs root first")
def test_dsrlab_run_backend_kind_enforces_the_scenarios_backends() -> None:
    out = dsrlab("run", "dsr-tcp-local", "--backend", "kind")
    assert out.returncode == 2
    assert out.stderr == (f"error: {NETNS_ONLY}: backends: scenario dsr-tcp-local runs on "
                          "netns, not on kind\n")
    assert out.stdout == ""
