"""A scenario's ``target.family``: IPv4 by default, IPv6 only where the topology and
the service have it, refused otherwise naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.model.scenario import SCENARIO_DIR, ScenarioError, load_scenario
from tests.seed import SEED_SCENARIO_PATH, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

DUAL_STACK = SEED_TOPOLOGY_PATH.parent / "seed-dual-stack.yaml"


def _scenario(folder: Path, *, topology: Path = DUAL_STACK, **changes: Any) -> Path:
    data = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    data.update(name="fam", topology=str(topology), trace=str(SEED_TRACE_PATH))
    data.update(changes)
    path = folder / "fam.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _target(family: str) -> dict[str, str]:
    return {"service": "serversvc", "node": "cilium-dsr-control-plane", "family": family}


def _refusal(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return str(info.value)


def test_the_family_is_ipv4_unless_a_scenario_says_ipv6(tmp_path: Path) -> None:
    sc, _ = load_scenario(_scenario(tmp_path, topology=SEED_TOPOLOGY_PATH))
    assert sc.target.family == "IPv4"
    sc, topo = load_scenario(_scenario(tmp_path, target=_target("IPv6")))
    assert (sc.target.family, topo.dual_stack) == ("IPv6", True)


def test_ipv6_on_a_single_stack_topology_is_refused_naming_file_and_field(
        tmp_path: Path) -> None:
    path = _scenario(tmp_path, topology=SEED_TOPOLOGY_PATH, target=_target("IPv6"))
    assert _refusal(path) == (
        f"{path}: target.family: IPv6 needs a dual-stack topology (network.subnet6 and "
        f"IPv6 addresses); cilium-dsr ({SEED_TOPOLOGY_PATH}) is IPv4 only")


def test_ipv6_to_a_service_without_it_is_refused(tmp_path: Path) -> None:
    path = _scenario(tmp_path, target=_target("IPv6"),
                     settings={"services[0].ip_families": ["IPv4"]})
    assert _refusal(path) == (
        f"{path}: target.family: service serversvc answers on IPv4 only (its "
        "ip_families); IPv6 needs ip_families: [IPv4, IPv6]")


def test_an_unknown_family_is_refused_by_the_field(tmp_path: Path) -> None:
    message = _refusal(_scenario(tmp_path, target=_target("IPv5")))
    assert "target.family" in message
    assert "IPv4" in message
    assert "IPv6" in message


def test_ipv6_refuses_the_ipv4_only_steps(tmp_path: Path) -> None:
    path = _scenario(tmp_path, target=_target("IPv6"),
                     steps=[{"requests": {"min": 1}}, {"send": [{"sport": 40000}]}])
    message = _refusal(path)
    assert message == (f"{path}: steps[1].send: crafted packets are IPv4; target.family "
                       "IPv6 sends requests, datagrams and transfers")


def test_the_shipped_ipv6_scenarios_load() -> None:
    sc, topo = load_scenario(SCENARIO_DIR / "ipv6" / "seed-ipv6.yaml")
    assert (sc.target.family, topo.dual_stack) == ("IPv6", True)
    sc, _ = load_scenario(SCENARIO_DIR / "ipv6" / "seed-dual-stack-ipv4.yaml")
    assert sc.target.family == "IPv4"
    assert sc.trace_path() == SEED_TRACE_PATH.resolve()
