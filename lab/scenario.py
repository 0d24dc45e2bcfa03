"""Scenarios: a topology, the traffic to send, and the expected trace to check.

A scenario file (YAML, in ``scenarios/``) names its topology, which host
sends, which service on which node it addresses and how many requests to
make; its expected trace sits beside it (``<name>.trace.yaml``).
:func:`run_scenario` brings the lab up, captures at every hop while the
real traffic runs, writes the capture set, takes the lab down and then
checks the trace on the files alone, writing ``results.json``, the merged
pcapng (one interface per hop) and the report (HTML + Markdown).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lab.backends.netns import NetnsBackend, NetnsLab
from lab.capture import CaptureDir, CapturePoint, CaptureSet
from lab.report import ReportFiles, build_report, merge_pcapng
from lab.topology import Topology, TopologyError, load_topology
from lab.trace import Trace, TraceError, TraceResult, check_trace, load_trace
from lab.traffic import HttpExchange, curl_until
from lab.yamldoc import field_path, read_yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be used; names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    service: str
    node: str  # the node whose address the client uses (the LB hop)


class Requests(_Model):
    min: Annotated[int, Field(ge=1)] = 2
    max: Annotated[int, Field(ge=1, le=1000)] = 32
    until_every_backend: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class Requires(_Model):
    """What the scenario needs to mean anything (checked before it runs)."""

    kernel: Annotated[str, Field(pattern=r"^\d+\.\d+(\.\d+)?$")] | None = None


class Scenario(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str = ""
    topology: str
    trace: str | None = None  # default: <name>.trace.yaml beside the scenario
    client: str = "client"
    target: Target
    requests: Requests = Requests()
    requires: Requires = Requires()
    backends: list[Literal["netns", "kind"]] = ["netns"]
    source: Path | None = Field(default=None, exclude=True)

    def _base(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def topology_path(self) -> Path:
        return (self._base() / self.topology).resolve()

    def trace_path(self) -> Path:
        return (self._base() / (self.trace or f"{self.name}.trace.yaml")).resolve()


def find_scenario(name_or_path: str) -> Path:
    """A scenario by name (``seed`` -> ``scenarios/seed.yaml``) or by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    candidate = SCENARIO_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(s.stem for s in SCENARIO_DIR.glob("*.yaml")
                   if not s.name.endswith(".trace.yaml"))
    raise ScenarioError(f"no scenario {name_or_path!r} (known: {', '.join(known) or 'none'})")


def load_scenario(name_or_path: str | Path) -> tuple[Scenario, Topology]:
    path = find_scenario(str(name_or_path))
    data = read_yaml(path, ScenarioError)
    try:
        sc = Scenario.model_validate(data).model_copy(update={"source": path})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ScenarioError(f"{path}: {field_path(tuple(err['loc']))}: {err['msg']}") from None
    try:
        topo = load_topology(sc.topology_path())
    except TopologyError as exc:
        raise ScenarioError(f"{path}: topology: {exc}") from None
    problems = []
    if sc.client not in topo.host_names():
        problems.append(f"client: no host {sc.client!r} in {topo.name}")
    if sc.target.node not in {n.name for n in topo.nodes}:
        problems.append(f"target.node: no node {sc.target.node!r} in {topo.name}")
    if sc.target.service not in {s.name for s in topo.services}:
        problems.append(f"target.service: no service {sc.target.service!r} in {topo.name}")
    if problems:
        raise ScenarioError(f"{path}: {problems[0]}")
    return sc, topo


def load_scenario_trace(sc: Scenario) -> Trace:
    try:
        return load_trace(sc.trace_path())
    except TraceError as exc:
        raise ScenarioError(f"{sc.source}: trace: {exc}") from None


def capture_points(sc: Scenario, topo: Topology, lab: NetnsLab) -> list[CapturePoint]:
    """Client bridge, the LB node, every node hosting a backend, every backend pod."""
    backends = topo.backends(sc.target.service)
    backend_nodes = [n.name for n in topo.nodes
                     if n.name != sc.target.node and any(p.node == n.name for p in backends)]
    points = [CapturePoint(sc.client, lab.hosts[sc.client].ifname, "client"),
              CapturePoint(sc.target.node, lab.hosts[sc.target.node].ifname, "lb-node")]
    points += [CapturePoint(n, lab.hosts[n].ifname, "backend-node") for n in backend_nodes]
    points += [CapturePoint(p.name, lab.hosts[p.name].ifname, "pod") for p in backends]
    return points


@dataclass
class ScenarioRun:
    scenario: Scenario
    topology: Topology
    run_id: str
    capture_dir: Path
    exchanges: list[HttpExchange] = field(default_factory=list)
    result: TraceResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    kept: bool = False  # the lab was left up (run id = run_id)
    report: ReportFiles | None = None

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed


Progress = Callable[[str], None]


def run_scenario(name_or_path: str | Path, *, captures_root: Path = Path("captures"),
                 progress: Progress | None = None, backend: NetnsBackend | None = None,
                 keep: bool = False) -> ScenarioRun:
    """Run a scenario end to end on the netns backend and check its trace.

    With ``keep`` the lab is left running afterwards (``dsrlab down RUN_ID``).
    """
    say = progress or (lambda _msg: None)
    sc, topo = load_scenario(name_or_path)
    trace = load_scenario_trace(sc)
    svc = topo.service(sc.target.service)
    node = topo.node(sc.target.node)
    url = f"http://{node.ip}:{svc.node_port}/"
    t0 = time.perf_counter()
    say(f"bringing up {topo.name} on netns")
    lab = (backend or NetnsBackend()).up(topo)
    run = ScenarioRun(sc, topo, lab.run_id, Path(captures_root) / sc.name / lab.run_id)
    run.timings["up_s"] = time.perf_counter() - t0
    try:
        info: dict[str, Any] = {
            "scenario": sc.name,
            "run_id": lab.run_id,
            "backend": lab.backend,
            "service": {"ip": str(node.ip), "port": svc.node_port, "name": svc.name,
                        "protocol": svc.protocol},
            "client": {"ip": str(lab.hosts[sc.client].ip)},
            "topology": str(topo.source) if topo.source else topo.name,
            "option_byte_order": topo.load_balancer.option_byte_order,
            "backends": [{"name": p.name, "ip": str(p.ip), "port": svc.target_port,
                          "node": p.node} for p in topo.backends(svc.name)],
        }
        points = capture_points(sc, topo, lab)
        say(f"starting {len(points)} captures")
        t1 = time.perf_counter()
        with CaptureSet(lab, run.capture_dir, points, info):
            run.timings["captures_ready_s"] = time.perf_counter() - t1
            say(f"curl {url} from {sc.client}")
            t2 = time.perf_counter()
            run.exchanges = curl_until(
                lab, sc.client, url,
                want_pods={p.name for p in topo.backends(svc.name)}
                if sc.requests.until_every_backend else set(),
                min_requests=sc.requests.min, max_requests=sc.requests.max,
                timeout_s=sc.requests.timeout_s)
            run.timings["traffic_s"] = time.perf_counter() - t2
    except BaseException:
        if keep:
            lab.detach()  # left up for debugging, failed or not (dsrlab down RUN_ID)
        else:
            lab.__exit__(*sys.exc_info())  # a teardown error is noted, not raised over this
        raise
    if keep:
        lab.detach()
        run.kept = True
    else:
        say("tearing the lab down")
        lab.down()
    say("checking the expected trace on the captures")
    capdir = CaptureDir.load(run.capture_dir)  # each pcap is read once, for all three
    run.result = check_trace(trace, capdir)
    run.result.write(run.capture_dir)
    say("writing the merged pcapng and the report")
    merge_pcapng(capdir, run.result)
    run.report = build_report(capdir)
    run.timings["total_s"] = time.perf_counter() - t0
    return run
