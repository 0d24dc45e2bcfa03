"""The load-balancer mode matrix (scenarios/modes/): every cell of mode x protocol x
receiving node x option byte order runs on the netns backend and its expected trace
holds; the traces tell the modes apart (a DSR trace fails on a SNAT run and the
other way round); externalTrafficPolicy=Local serves on a node with a pod and
drops on one without."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from lab.model.scenario import SCENARIO_DIR, all_scenarios, load_scenario
from lab.runner.scenario import ScenarioRun, run_scenario

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

MODES = SCENARIO_DIR / "modes"
CELLS = sorted(p for p in all_scenarios() if p.parent == MODES)


def expected_cells() -> set[str]:
    cells = set()
    for mode, proto, where in itertools.product(("dsr", "snat", "hybrid"), ("tcp", "udp"),
                                                ("remote", "local")):
        cells.add(f"{mode}-{proto}-{where}")
        if mode == "dsr":  # the option only exists in DSR: both byte orders
            cells.add(f"{mode}-network-{proto}-{where}")
    return cells


def failed_checks(run: ScenarioRun) -> str:
    assert run.result is not None
    lines = [f"{c.claim}/{c.name}: {c.detail}" for c in run.result.checks if not c.passed]
    return "\n".join(lines[:8]) + f"\ncaptures: {run.capture_dir}"


def test_every_cell_of_the_matrix_has_a_scenario() -> None:
    names = {p.stem for p in CELLS}
    assert expected_cells() <= names
    assert {"local-policy-serves", "local-policy-drops"} <= names


@pytest.mark.parametrize("path", CELLS, ids=[p.stem for p in CELLS])
def test_the_cell_passes_its_trace(path: Path, captures_root: Path) -> None:
    run = run_scenario(path, captures_root=captures_root)
    assert run.passed, failed_checks(run)
    sc, topo = run.scenario, run.topology
    port = topo.service(sc.target.service).port(sc.target.port)
    if sc.name == "local-policy-drops":
        assert not any(e.ok for e in run.exchanges)
    else:
        assert all(e.ok for e in run.exchanges), [e.error for e in run.exchanges]
        assert {e.url.split(":")[0] for e in run.exchanges} == {
            "udp" if port.protocol == "UDP" else "http"}


@pytest.mark.parametrize(("scenario", "wrong_trace"), [
    ("dsr-tcp-remote", "snat-tcp.trace.yaml"),
    ("snat-tcp-remote", "../seed.trace.yaml"),
    ("snat-udp-remote", "dsr-udp.trace.yaml"),
    ("dsr-udp-remote", "snat-udp.trace.yaml"),
    ("dsr-tcp-local", "../seed.trace.yaml"),
])
def test_a_trace_fails_on_another_modes_run(scenario: str, wrong_trace: str,
                                            tmp_path: Path, captures_root: Path) -> None:
    data = yaml.safe_load((MODES / f"{scenario}.yaml").read_text())
    data["topology"] = str((MODES / data["topology"]).resolve())
    data["trace"] = str((MODES / wrong_trace).resolve())
    swapped = tmp_path / f"{scenario}.yaml"
    swapped.write_text(yaml.safe_dump(data))
    run = run_scenario(swapped, captures_root=captures_root)
    assert not run.passed


def test_settings_change_the_topology_the_scenario_runs() -> None:
    sc, topo = load_scenario(MODES / "hybrid-udp-local.yaml")
    assert sc.settings["load_balancer.mode"] == "hybrid"
    assert topo.load_balancer.mode == "hybrid"
    assert [p.name for p in topo.pods] == ["cni-8zxj9"]
    assert topo.load_balancer.forwarding("UDP") == "snat"
