"""One way to name a mistake: ``file: field: message``, one line per mistake, every one.

lab.model.errors turns a pydantic ValidationError into those lines; the
topology, scenario and trace loaders each go through it, so a document
with three mistakes gives three lines, each naming the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lab.check.trace import TraceError, load_trace
from lab.model.errors import FieldProblem, field_path, validation_lines, validation_message
from lab.model.scenario import ScenarioError, load_scenario
from lab.model.topology import TopologyError, load_topology
from tests.seed import SEED_SCENARIO_PATH, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

LINE = re.compile(r"^(?P<file>[^:]+): (?P<field>[^:]+): (?P<message>.+)$")


def _lines(exc: BaseException) -> list[tuple[str, str, str]]:
    """Each line of an error as (file, field, message); a line of another shape fails."""
    out = []
    for line in str(exc).splitlines():
        m = LINE.match(line)
        assert m, f"not 'file: field: message': {line!r}"
        out.append((m["file"], m["field"], m["message"]))
    return out


def _write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _seed(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


# --- the formatter --------------------------------------------------------------------


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    items: list[_Inner]


def test_field_paths() -> None:
    assert field_path(("nodes", 1, "ip")) == "nodes[1].ip"
    assert field_path(("claims", 0, "expect", 2, "flags")) == "claims[0].expect[2].flags"
    assert field_path((0,)) == "[0]"
    assert field_path(()) == "(top level)"


def test_every_validation_error_is_a_line_with_the_value() -> None:
    with pytest.raises(ValidationError) as info:
        _Doc.model_validate({"items": [{"port": "x"}, {"port": 1, "colour": "red"}]})
    lines = validation_lines("doc.yaml", info.value)
    assert lines == [
        "doc.yaml: name: Field required",
        "doc.yaml: items[0].port: Input should be a valid integer, unable to parse string "
        "as an integer (got 'x')",
        "doc.yaml: items[1].colour: Extra inputs are not permitted (got 'red')",
    ]
    assert validation_message("doc.yaml", info.value) == "\n".join(lines)


def test_field_problems_name_their_own_fields() -> None:
    class _Checked(BaseModel):
        a: int

        def model_post_init(self, _context: Any) -> None:
            raise FieldProblem([("nodes[2].pod_cidr", "overlaps nodes[0].pod_cidr"),
                                ("client.ip", "is the broadcast address")])

    with pytest.raises(ValidationError) as info:
        _Checked.model_validate({"a": 1})
    assert validation_lines(Path("t.yaml"), info.value) == [
        "t.yaml: nodes[2].pod_cidr: overlaps nodes[0].pod_cidr",
        "t.yaml: client.ip: is the broadcast address"]


# --- each document: three mistakes, three lines -------------------------------------


def test_a_topology_with_three_mistakes_gives_three_lines(tmp_path: Path) -> None:
    data = _seed(SEED_TOPOLOGY_PATH)
    data["nodes"][0]["role"] = "master"
    data["nodes"][1]["ip"] = "banana"
    data["services"][0]["node_port"] = 80
    path = _write(tmp_path, "three.yaml", data)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert _lines(info.value) == [
        (str(path), "nodes[0].role", "Input should be 'control-plane' or 'worker' (got 'master')"),
        (str(path), "nodes[1].ip", "Input is not a valid IPv4 address (got 'banana')"),
        (str(path), "services[0].node_port",
         "Input should be greater than or equal to 30000 (got 80)"),
    ]


def test_a_topology_with_three_cross_field_mistakes_gives_three_lines(tmp_path: Path) -> None:
    data = _seed(SEED_TOPOLOGY_PATH)
    data["nodes"][1]["ip"] = "172.19.0.4"  # outside network.subnet
    data["workloads"][0]["pods"][0]["node"] = "nope"  # no such node
    data["services"][0]["selector"] = "web"  # no such workload
    path = _write(tmp_path, "cross.yaml", data)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert [field for _, field, _ in _lines(info.value)] == [
        "nodes[1].ip", "workloads[0].pods[0].node", "services[0].selector"]


def test_a_scenario_with_three_mistakes_gives_three_lines(tmp_path: Path) -> None:
    data = _seed(SEED_SCENARIO_PATH)
    data["topology"] = str(SEED_TOPOLOGY_PATH)
    data["name"] = "Seed Run"
    data["requests"]["min"] = 0
    data["colour"] = "red"
    path = _write(tmp_path, "three.yaml", data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert _lines(info.value) == [
        (str(path), "name", "String should match pattern '^[a-z0-9][a-z0-9_-]*$' "
                            "(got 'Seed Run')"),
        (str(path), "requests.min", "Input should be greater than or equal to 1 (got 0)"),
        (str(path), "colour", "unknown key (known keys: name, description, topology, "
                              "settings, trace, client, target, requests, requires, backends, "
                              "compare_modes, send, steps, deadline_s)"),
    ]


def test_a_trace_with_three_mistakes_gives_three_lines(tmp_path: Path) -> None:
    data = _seed(SEED_TRACE_PATH)
    data["flows"]["min"] = -1
    data["claims"][0]["name"] = "Client Session"
    data["claims"][1]["point"]["role"] = "router"
    path = _write(tmp_path, "three.trace.yaml", data)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert _lines(info.value) == [
        (str(path), "flows.min", "Input should be greater than or equal to 0 (got -1)"),
        (str(path), "claims[0].name", "String should match pattern '^[a-z0-9][a-z0-9_-]*$' "
                                      "(got 'Client Session')"),
        (str(path), "claims[1].point.role", "Input should be 'client', 'lb-node', "
                                            "'backend-node' or 'pod' (got 'router')"),
    ]


def test_every_bad_matcher_of_a_trace_is_reported(tmp_path: Path) -> None:
    data = _seed(SEED_TRACE_PATH)
    data["flows"]["start"]["match"]["colour"] = "red"  # no such field
    first = data["claims"][0]["expect"][0]
    first["ttl"] = {"frobnicate": 1}  # no such operator
    first.pop("sport")  # an expectation compares every field
    path = _write(tmp_path, "matchers.trace.yaml", data)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    fields = [field for _, field, _ in _lines(info.value)]
    assert fields == ["flows.start.match.colour", "claims[0].expect[0].ttl",
                      "claims[0].expect[0]"]


# -- unknown keys: the known ones and the closest (issue 18) --------------------------------


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (lambda d: d.__setitem__("requets", d.pop("requests")), "requets",
         "unknown key; did you mean 'requests'? (known keys: name, description, topology, "),
        (lambda d: d["target"].__setitem__("nod", d["target"].pop("node")), "target.nod",
         "unknown key; did you mean 'node'? (known keys: service, node, port, family)"),
        (lambda d: d["requests"].__setitem__("until_every_backends", True),
         "requests.until_every_backends",
         "unknown key; did you mean 'until_every_backend'? (known keys: min, max, "
         "until_every_backend, timeout_s)"),
        (lambda d: (d.pop("requests"), d.__setitem__("steps", [{"datagram": {"sise": 1500}}])),
         "steps[0].datagram.sise",
         "unknown key; did you mean 'size'? (known keys: size, count, timeout_s, answer_size, "
         "allow_fragments)"),
        (lambda d: d.__setitem__("colour", "red"), "colour",
         "unknown key (known keys: name, description, "),
    ],
)
def test_an_unknown_scenario_key_names_the_known_keys_and_the_closest(
        tmp_path: Path, edit: Any, field: str, message: str) -> None:
    data = _seed(SEED_SCENARIO_PATH)
    data["topology"] = str(SEED_TOPOLOGY_PATH)
    edit(data)
    path = _write(tmp_path, "typo.yaml", data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    lines = dict((f, m) for _, f, m in _lines(info.value))
    assert lines[field].startswith(message), lines  # (a renamed key is also missing)
    assert "Extra inputs" not in str(info.value)


def test_an_unknown_topology_or_trace_key_names_the_known_keys(tmp_path: Path) -> None:
    topo = _seed(SEED_TOPOLOGY_PATH)
    topo["load_balancer"] = {"mod": "dsr"}
    with pytest.raises(TopologyError) as info:
        load_topology(_write(tmp_path, "t.yaml", topo))
    assert "load_balancer.mod: unknown key; did you mean 'mode'? (known keys: mode, " \
        in str(info.value)
    trace = _seed(SEED_TRACE_PATH)
    trace["flow"] = trace.pop("flows")
    with pytest.raises(TraceError) as tinfo:
        load_trace(_write(tmp_path, "x.trace.yaml", trace))
    assert "flow: unknown key; did you mean 'flows'?" in str(tinfo.value)


# -- a document with nothing in it says so ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [("", "the file is empty: expected a YAML mapping of keys"),
     ("\n   \n", "the file is empty: "),
     ("# a scenario, one day\n\n", "the file is empty (only comments)"),
     ("---\n", "the file holds only null"),
     ("null\n", "the file holds only null")],
)
def test_an_empty_document_says_it_is_empty(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    for load, error in ((load_scenario, ScenarioError), (load_topology, TopologyError),
                        (load_trace, TraceError)):
        with pytest.raises(error) as info:
            load(path)
        assert str(info.value).startswith(f"{path}: {says}"), str(info.value)
        assert "NoneType" not in str(info.value)
