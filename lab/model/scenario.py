"""Scenarios as data: a topology, the traffic to send, the expected trace to check.

A scenario file (YAML, in ``scenarios/``) names its topology, which host
sends, which service on which node it addresses and how many requests to
make; its expected trace sits beside it (``<name>.trace.yaml``). This
module only reads and validates them; :mod:`lab.runner.scenario` runs one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.errors import LabError
from lab.model.errors import validation_message
from lab.model.topology import Topology, TopologyError, load_topology
from lab.model.yamldoc import read_yaml

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"


class ScenarioError(LabError, ValueError):
    """A scenario file that cannot be used; names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    service: str
    node: str  # the node whose address the client uses (the LB hop)
    port: str | int | None = None  # the service port, by name or node port (default: its first)


class Requests(_Model):
    min: Annotated[int, Field(ge=1)] = 2
    max: Annotated[int, Field(ge=1, le=1000)] = 32
    until_every_backend: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class Requires(_Model):
    """What the scenario needs to mean anything (checked before it runs)."""

    kernel: Annotated[str, Field(pattern=r"^\d+\.\d+(\.\d+)?$")] | None = None


class CompareModes(_Model):
    """A modes comparison: after the scenario's own run, the same topology under each
    mode, measured at the node the client addressed (:mod:`lab.runner.compare`)."""

    modes: Annotated[list[Literal["snat", "dsr", "hybrid"]], Field(min_length=2)]
    transfer_bytes: Annotated[int, Field(ge=1, le=1 << 30)] = 100 * 1024 * 1024
    requests: Annotated[int, Field(ge=10, le=10000)] = 1000


class CraftedPacket(_Model):
    """A packet built with scapy and sent from the client as it is (a raw socket):
    a SYN with IP options, an ACK without a SYN, anything a curl would not send."""

    flags: Annotated[str, Field(pattern=r"^[FSRPAUEC]*$")] = "S"
    sport: Annotated[int, Field(ge=1, le=65535)]
    seq: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 1000
    ack: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 0
    # IP options in order: timestamp (8 bytes), record_route (3 slots, 16 bytes with
    # padding), record_route_full (9 slots, 40 bytes with padding), nop
    ip_options: list[Literal["timestamp", "record_route", "record_route_full", "nop"]] = []
    payload: Annotated[str, Field(max_length=1400)] = ""


class Scenario(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str = ""
    topology: str
    # applied to the topology before it is validated, as `helm --set` to values:
    # {"load_balancer.mode": "snat", "services[0].external_traffic_policy": "Local"}
    settings: dict[str, Any] = {}
    trace: str | None = None  # default: <name>.trace.yaml beside the scenario
    client: str = "client"
    target: Target
    requests: Requests = Requests()
    requires: Requires = Requires()
    backends: list[Literal["netns", "kind"]] = ["netns"]
    compare_modes: CompareModes | None = None
    # sent from the client instead of the requests (crafted with scapy, one after the other)
    send: list[CraftedPacket] = []
    source: Path | None = Field(default=None, exclude=True)

    def _base(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def topology_path(self) -> Path:
        return (self._base() / self.topology).resolve()

    def trace_path(self) -> Path:
        return (self._base() / (self.trace or f"{self.name}.trace.yaml")).resolve()


def all_scenarios(folder: Path = SCENARIO_DIR) -> list[Path]:
    """Every scenario file under ``folder`` (``scenarios/*.yaml`` and one level of
    subfolders, e.g. ``scenarios/modes/``), traces left out, by name."""
    found = [*folder.glob("*.yaml"), *folder.glob("*/*.yaml")]
    return sorted((p for p in found if not p.name.endswith(".trace.yaml")),
                  key=lambda p: (p.parent != folder, str(p.relative_to(folder))))


def find_scenario(name_or_path: str) -> Path:
    """A scenario by name (``seed`` -> ``scenarios/seed.yaml``, ``snat-tcp-remote`` ->
    ``scenarios/modes/snat-tcp-remote.yaml``) or by path."""
    p = Path(name_or_path)
    try:
        given = p.suffix in (".yaml", ".yml") or p.exists()
    except OSError:  # in a folder it cannot enter: the reader says so, naming the file
        given = True
    if given:
        return p
    for candidate in all_scenarios():
        if candidate.stem == name_or_path:
            return candidate
    known = [s.stem for s in all_scenarios()]
    raise ScenarioError(f"no scenario {name_or_path!r} (known: {', '.join(known) or 'none'})")


def load_scenario(name_or_path: str | Path) -> tuple[Scenario, Topology]:
    path = find_scenario(str(name_or_path))
    data = read_yaml(path, ScenarioError)
    try:
        sc = Scenario.model_validate(data).model_copy(update={"source": path})
    except ValidationError as exc:
        raise ScenarioError(validation_message(path, exc)) from None
    try:
        topo = load_topology(sc.topology_path(), sc.settings)
    except TopologyError as exc:
        with_settings = " (with the scenario's settings)" if sc.settings else ""
        raise ScenarioError(f"{path}: topology{with_settings}: {exc}") from None
    except KeyError as exc:
        raise ScenarioError(f"{path}: settings.{exc.args[0]}") from None
    problems = []
    if sc.client not in topo.host_names():
        problems.append(f"client: no host {sc.client!r} in {topo.name}")
    if sc.target.node not in {n.name for n in topo.nodes}:
        problems.append(f"target.node: no node {sc.target.node!r} in {topo.name}")
    if sc.target.service not in {s.name for s in topo.services}:
        problems.append(f"target.service: no service {sc.target.service!r} in {topo.name}")
    else:
        try:
            topo.service(sc.target.service).port(sc.target.port)
        except KeyError as exc:
            problems.append(f"target.port: {exc.args[0]}")
    if problems:
        raise ScenarioError("\n".join(f"{path}: {p}" for p in problems))
    return sc, topo
