"""A scenario this kernel or backend cannot run is skipped before its lab or its
captures start: nothing is brought up, no capture set is begun (``delay-on-lb``
on a kernel without ``sch_netem`` used to leave an unfinished set of six empty
pcaps every time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.env.faults import NO_NETEM, FaultUnavailable, check_available, netem_available
from lab.model.scenario import Fault
from lab.runner.scenario import run_scenario
from tests.cli.helpers import REPO, dsrlab

DELAY_ON_LB = REPO / "scenarios" / "failures" / "delay-on-lb.yaml"


def _no_netem() -> None:
    if netem_available():
        pytest.skip("this kernel has sch_netem: delay-on-lb runs here")


@pytest.mark.netns
def test_a_delay_without_netem_is_refused_before_the_lab(tmp_path: Path) -> None:
    _no_netem()
    said: list[str] = []
    with pytest.raises(FaultUnavailable) as err:
        run_scenario(DELAY_ON_LB, captures_root=tmp_path / "captures", progress=said.append)
    assert str(err.value) == f"100 ms delay on cilium-dsr-control-plane: {NO_NETEM}"
    assert said == []  # not even "bringing up"
    assert not (tmp_path / "captures").exists()


@pytest.mark.netns
def test_dsrlab_run_of_a_skipped_scenario_leaves_no_capture_set(tmp_path: Path) -> None:
    _no_netem()
    out = dsrlab("run", "delay-on-lb", "--captures", str(tmp_path / "captures"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr == f"error: 100 ms delay on cilium-dsr-control-plane: {NO_NETEM}\n"
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "captures").exists()


@pytest.mark.parametrize("fault", [Fault(host="client", loss_percent=5),
                                   Fault(host="client", link_down=True)],
                         ids=["loss", "link-down"])
def test_a_backend_without_namespaces_refuses_faults_up_front(fault: Fault) -> None:
    with pytest.raises(FaultUnavailable, match="the kind backend has none"):
        check_available([fault], "kind")


def test_faults_the_kernel_makes_pass_the_check() -> None:
    check_available([Fault(host="client", loss_percent=5), Fault(host="client",
                                                                 link_down=True)], "netns")
