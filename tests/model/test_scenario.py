"""Scenario files: found by name or path, checked against their topology, every
problem reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.model.scenario import ScenarioError, all_scenarios, find_scenario, load_scenario
from tests.seed import (
    LB_NAME,
    SEED_SCENARIO_PATH,
    SEED_TOPOLOGY_PATH,
    SEED_TRACE_PATH,
    SERVICE,
    TOPOLOGY,
)


def _scenario(tmp_path: Path, name: str = "edited.yaml", **changes: Any) -> Path:
    data = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    data["topology"] = str(SEED_TOPOLOGY_PATH)
    for key, value in changes.items():
        target = data
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_seed_scenario_loads_with_its_topology() -> None:
    sc, topo = load_scenario("seed")
    assert sc.source == SEED_SCENARIO_PATH
    assert (sc.target.node, sc.target.service) == (LB_NAME, SERVICE.name)
    assert topo == TOPOLOGY
    assert sc.topology_path() == SEED_TOPOLOGY_PATH
    assert sc.trace_path() == SEED_TRACE_PATH
    assert sc.backends == ["netns", "kind"]
    assert sc.requires.kernel is not None


def test_every_cross_reference_problem_is_reported(tmp_path: Path) -> None:
    path = _scenario(tmp_path, client="nobody", **{"target.node": "no-node",
                                                   "target.service": "no-svc"})
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).splitlines() == [
        f"{path}: client: no host 'nobody' in {TOPOLOGY.name}",
        f"{path}: target.node: no node 'no-node' in {TOPOLOGY.name}",
        f"{path}: target.service: no service 'no-svc' in {TOPOLOGY.name}",
    ]


def test_a_broken_topology_is_named_through_the_scenario(tmp_path: Path) -> None:
    topo = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
    topo["nodes"][0]["role"] = "master"
    topo["services"][0]["node_port"] = 80
    topo_path = tmp_path / "broken-topo.yaml"
    topo_path.write_text(yaml.safe_dump(topo))
    path = _scenario(tmp_path, topology=str(topo_path))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{path}: topology: {topo_path}: nodes[0].role: ")
    assert lines[1].startswith(f"{topo_path}: services[0].node_port: ")
    assert len(lines) == 2


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError, match=r"no scenario 'nope' \(known: .*seed"):
        find_scenario("nope")
    assert find_scenario("seed") == SEED_SCENARIO_PATH


def test_a_missing_scenario_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"gone\.yaml: cannot read"):
        load_scenario(tmp_path / "gone.yaml")


# --- settings: the topology changed as `helm --set` changes values ---------------------


def test_settings_apply_to_the_topology_before_it_is_validated(tmp_path: Path) -> None:
    path = _scenario(tmp_path, settings={
        "load_balancer.mode": "snat", "services[0].external_traffic_policy": "Local",
        "load_balancer.maglev_table_size": 251})
    _, topo = load_scenario(path)
    assert topo.load_balancer.mode == "snat"
    assert topo.services[0].external_traffic_policy == "Local"
    assert topo.load_balancer.maglev_table_size == 251
    assert yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())["load_balancer"]["mode"] == "dsr"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"services[3].node_port": 32001}, "settings.services[3].node_port: there is no item 3"),
    ({"nodes[0].ip.x": 1}, "settings.nodes[0].ip.x: 'x' is set inside a str"),
    ({"bad key!": 1}, "settings.bad key!: 'bad key!' is not a field name"),
    ({"workloads.pods[0]": 1}, "settings.workloads.pods[0]: 'pods' is looked up inside a list"),
])
def test_a_setting_that_names_no_place_is_a_clear_error(
        tmp_path: Path, settings: dict[str, Any], expected: str) -> None:
    path = _scenario(tmp_path, settings=settings)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert f"{path}: {expected}" in str(info.value)


def test_a_setting_the_topology_refuses_names_the_field_and_the_settings(
        tmp_path: Path) -> None:
    path = _scenario(tmp_path, settings={"load_balancer.mood": "snat"})
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: topology (with the scenario's settings): ")
    assert "load_balancer.mood: unknown key; did you mean 'mode'? (known keys: mode, " \
        in str(info.value)


def test_scenarios_in_subfolders_are_found_by_name() -> None:
    assert find_scenario("snat-tcp-remote").parts[-2:] == ("modes", "snat-tcp-remote.yaml")
    with pytest.raises(ScenarioError, match="known: seed, "):
        find_scenario("no-such-scenario")


@pytest.mark.parametrize(("steps", "expected"), [
    ([{"bogus": 1}], "steps[0]: a step is one of requests, send, replay, datagram, transfer, "
                     "fault (got bogus)"),
    ([{"datagram": {"size": 0}}], "steps[0].datagram.size: Input should be greater than or "
                                  "equal to 1 (got 0)"),
    ([{"requests": {}}, {"transfer": {"bytes": 10, "during": [{"host": "x"}]}}],
     "steps[1].transfer.during[0]: Value error, a fault is one of loss_percent/delay_ms, "
     "link_down, kill_pod (given: none)"),
    ([{"fault": {"host": "x", "link_down": True, "kill_pod": True}}],
     "steps[0].fault: Value error, a fault is one of loss_percent/delay_ms, link_down, "
     "kill_pod (given: link_down, kill_pod)"),
    # faults come at a point of a transfer's progress, never at a wall-clock time
    ([{"transfer": {"bytes": 10, "during": [{"host": "x", "link_down": True,
                                             "after_s": 0.3}]}}],
     "steps[0].transfer.during[0]: Value error, after_s: a fault comes at a point of the "
     "transfer's progress, not at a time"),
    ([{"transfer": {"bytes": 10, "during": [{"host": "x", "link_down": True}]}}],
     "steps[0].transfer: Value error, during[0].after_bytes: the body bytes the client has "
     "received when the fault comes, 1 to 9 (not given)"),
    ([{"transfer": {"bytes": 10, "during": [{"host": "x", "link_down": True,
                                             "after_bytes": 10}]}}],
     "steps[0].transfer: Value error, during[0].after_bytes: the body bytes the client has "
     "received when the fault comes, 1 to 9 (got 10)"),
    ([{"transfer": {"bytes": 10, "direction": "upload",
                    "during": [{"host": "x", "link_down": True, "after_bytes": 5}]}}],
     "steps[0].transfer: Value error, during: faults come at a point of a download's "
     "progress"),
    ([{"fault": {"host": "x", "link_down": True, "after_bytes": 5}}],
     "steps[0].fault: Value error, after_bytes: a fault step applies when the steps before "
     "it ended"),
])
def test_a_bad_step_names_its_index_and_field(tmp_path: Path, steps: list[Any],
                                              expected: str) -> None:
    path = _scenario(tmp_path, steps=steps)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert f"{path}: {expected}" in str(info.value)


def test_steps_stand_for_requests_and_send() -> None:
    sc, _ = load_scenario("seed")
    (step,) = sc.traffic_steps()
    assert step.model_dump() == {"requests": sc.requests.model_dump()}
    sc, _ = load_scenario("udp-frag-needed")
    assert [next(iter(s.model_dump())) for s in sc.traffic_steps()] == ["datagram"]


# -- what a scenario may ask for (its stated budget) -----------------------------------

GIB = 1 << 30


@pytest.mark.parametrize(("changes", "field", "words"), [
    # 1 GiB x 100 downloads: the example
    ({"steps": [{"transfer": {"bytes": GIB, "count": 100}}]}, "steps[0].transfer",
     ["100 x 1 GiB = 100 GiB", "256 MiB"]),
    # each step within the budget, together over it: the step where the sum crosses
    ({"steps": [{"transfer": {"bytes": 200 << 20}}, {"requests": {}},
                {"transfer": {"bytes": 100 << 20, "direction": "upload"}}]},
     "steps[2].transfer", ["after 200 MiB in the steps before", "256 MiB"]),
    # datagrams count too
    ({"steps": [{"transfer": {"bytes": 250 << 20}},
                {"datagram": {"size": 65507, "count": 100}}]},
     "steps[1].datagram", ["100 x 63.97 KiB", "256 MiB"]),
    # a modes comparison: 3 modes x 1 GiB
    ({"compare_modes": {"modes": ["snat", "dsr", "hybrid"], "transfer_bytes": GIB}},
     "compare_modes.transfer_bytes", ["3 modes x 1 GiB = 3 GiB", "1 GiB"]),
])
def test_a_scenario_over_its_budget_is_refused_naming_file_and_field(
        tmp_path: Path, changes: dict[str, Any], field: str, words: list[str]) -> None:
    path = _scenario(tmp_path, **changes)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert "\n" not in message
    for w in words:
        assert w in message, message


def test_a_scenario_at_its_budget_loads(tmp_path: Path) -> None:
    path = _scenario(tmp_path, steps=[
        {"transfer": {"bytes": 64 << 20, "count": 3}},
        {"transfer": {"bytes": 64 << 20, "direction": "upload"}}],
        compare_modes={"modes": ["snat", "dsr"], "transfer_bytes": 512 << 20})
    sc, _ = load_scenario(path)
    assert len(sc.steps) == 2


def test_every_scenario_of_the_repository_is_within_the_budget() -> None:
    for path in all_scenarios():
        load_scenario(path)
