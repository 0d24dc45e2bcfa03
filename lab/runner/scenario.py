"""Running a scenario: lab up, captures at every hop, real traffic, trace checked.

:func:`run_scenario` talks to the lab only through the backend contract
(:class:`lab.env.base.Lab`): it brings the topology up on the chosen
backend, starts a capture on every hop, sends the scenario's requests,
takes the lab down (or leaves it up with ``keep``) and then works on the
capture set alone: the trace check (``results.json``), the merged pcapng
and the report. ``captures/<scenario>/latest`` moves to the run only when
all of that is written.

A capture set is *complete* when its directory holds ``results.json``: the
runner writes it whole (a staged file renamed into place) once the checks
have run, after the pcaps and ``manifest.json``, and before the merged
pcapng and the report, which are made from it. A run stopped earlier (a
signal, SIGKILL, a crash) leaves a set without ``results.json``: incomplete,
never ``latest``, and listed (or removed) by ``dsrlab clean``. ``latest``
is moved last of all, so it only ever names a set with its results, merged
pcapng and report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab import settings
from lab.atomic import write_text
from lab.capture.capdir import CaptureDir
from lab.capture.layout import (
    COMPARISON,
    COMPARISON_PLOT,
    STEPS,
    Role,
    check_captures,
    mark_latest,
    writing,
)
from lab.capture.live import CapturePoint, CaptureSet, ring_for_frames
from lab.capture.manifest import (
    Manifest,
    ManifestBackend,
    ManifestClient,
    ManifestDatapath,
    ManifestService,
)
from lab.check.diagnose import diagnose
from lab.check.trace import Trace, TraceError, TraceResult, check_trace, load_trace
from lab.env import Backend, Lab, get_backend, resources
from lab.env.base import ReportsDatapathEvents
from lab.env.faults import check_available
from lab.env.traffic import HttpExchange
from lab.model.scenario import (
    CompareModes,
    DatagramStep,
    FaultStep,
    ReplayStep,
    RequestsStep,
    Scenario,
    ScenarioError,
    SendStep,
    TransferStep,
    load_scenario,
)
from lab.model.topology import Topology
from lab.report import ReportFiles, build_report, merge_pcapng
from lab.runner.addresses import host_address, node_address, pod_address
from lab.runner.compare import compare_modes, plot_modes
from lab.runner.steps import StepContext, StepOutcome, run_steps
from lab.runner.steps.crafted import check_replays
from lab.runner.steps.doom import Doom, counter_sources

Progress = Callable[[str], None]


def load_scenario_trace(sc: Scenario) -> Trace:
    """The scenario's expected trace; a bad one is a :class:`ScenarioError` naming both."""
    try:
        return load_trace(sc.trace_path())
    except TraceError as exc:
        raise ScenarioError(f"{sc.source}: trace: {exc}") from None


def capture_hosts(sc: Scenario, topo: Topology) -> list[tuple[str, Role]]:
    """Client bridge, the LB node, every other node hosting a backend the LB node
    sends to, and every such backend pod: (host, role) each."""
    backends = topo.backends_from(sc.target.service, sc.target.node)
    backend_nodes = [n.name for n in topo.nodes
                     if n.name != sc.target.node and any(p.node == n.name for p in backends)]
    return [(sc.client, "client"), (sc.target.node, "lb-node"),
            *((n, "backend-node") for n in backend_nodes),
            *((p.name, "pod") for p in backends)]


def capture_points(sc: Scenario, topo: Topology, lab: Lab) -> list[CapturePoint]:
    """The capture points of :func:`capture_hosts` on the running lab."""
    return [CapturePoint(host, lab.hosts[host].ifname, role)
            for host, role in capture_hosts(sc, topo)]


def run_manifest(sc: Scenario, topo: Topology, lab: Lab) -> Manifest:
    """What the capture set records about this run (the points are added by the capture):
    the addresses of the family the client used (``target.family``), under the same
    names in either, and the family."""
    svc = topo.service(sc.target.service)
    port = svc.port(sc.target.port)
    family = sc.target.family
    return Manifest(
        scenario=sc.name, run_id=lab.run_id, backend=lab.backend,
        topology=str(topo.source) if topo.source else topo.name,
        family=family,
        service=ManifestService(ip=node_address(topo, sc.target.node, family),
                                port=port.node_port, name=svc.name, protocol=port.protocol),
        client=ManifestClient(ip=host_address(lab, sc.client, family)),
        option_byte_order=topo.load_balancer.option_byte_order,
        forwarding=topo.load_balancer.forwarding(port.protocol),
        lb_mode=topo.load_balancer.mode, settings=sc.settings, mtu=topo.datapath_mtu,
        dsr_icmp_errors=topo.load_balancer.dsr_icmp_errors,
        fragment_tracking=topo.load_balancer.fragment_tracking,
        backends=[ManifestBackend(name=p.name, ip=pod_address(p, family),
                                  port=port.target_port, node=p.node)
                  for p in topo.backends(svc.name)],
        datapath=ManifestDatapath(**lab.datapath_record()),
    )


@dataclass
class ScenarioRun:
    scenario: Scenario
    topology: Topology
    run_id: str
    capture_dir: Path
    backend: str = "netns"
    steps: list[StepOutcome] = field(default_factory=list)
    result: TraceResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    kept: bool = False  # the lab was left up (run id = run_id)
    report: ReportFiles | None = None

    @property
    def exchanges(self) -> list[HttpExchange]:
        """Every request and transfer of every step, in order."""
        return [e for o in self.steps for e in o.exchanges]

    @property
    def timed_out(self) -> bool:
        return any(o.timed_out for o in self.steps)

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed


# frames one capture point sees at most of one exchange: a TCP request (handshake,
# request, answer, teardown, a retransmission or two; the client's bridge sees its
# forwarded and answered halves too), ARP/ND around it
FRAMES_PER_REQUEST = 24
FRAMES_PER_DATAGRAM = 8  # the datagram, its answer, an ICMP error, a retry, ARP/ND


def expected_frames(sc: Scenario) -> int | None:
    """An upper bound of the frames any one capture point sees in the scenario's
    traffic (its rings are sized from it: :func:`lab.capture.live.ring_for_frames`);
    None when it has none: a transfer, a replayed capture, a modes comparison."""
    if sc.compare_modes is not None:
        return None
    frames = 0
    for step in sc.traffic_steps():
        if isinstance(step, TransferStep | ReplayStep):
            return None
        if isinstance(step, RequestsStep):
            frames += step.requests.max * FRAMES_PER_REQUEST
        elif isinstance(step, SendStep):  # each crafted packet: forwarded, answered, reset
            frames += len(step.send) * FRAMES_PER_DATAGRAM * 2
        elif isinstance(step, DatagramStep):
            d = step.datagram
            pieces = (d.size + (d.answer_size or d.size)) // 1200 + 2  # fragments
            frames += d.count * 2 * pieces * FRAMES_PER_DATAGRAM
    return frames


def _send_traffic(run: ScenarioRun, lab: Lab, say: Progress) -> None:
    """Captures on every hop while the scenario's steps run (within its deadline)."""
    sc, topo = run.scenario, run.topology
    port = topo.service(sc.target.service).port(sc.target.port)
    points = capture_points(sc, topo, lab)
    say(f"starting {len(points)} captures")
    t1 = time.perf_counter()
    events = lab if isinstance(lab, ReportsDatapathEvents) else None
    with CaptureSet(lab, run.capture_dir, points, run_manifest(sc, topo, lab),
                    ring_kib=ring_for_frames(expected_frames(sc))):
        if events is not None:
            events.open_datapath_events()
        run.timings["captures_ready_s"] = time.perf_counter() - t1
        # the pods answer before the first request's clock starts (netns: the server's
        # start-up, seconds under a kernel in emulation)
        lab.wait_serving()
        t2 = time.perf_counter()
        family = sc.target.family
        ip = node_address(topo, sc.target.node, family)
        client = next(p for p in points if p.role == "client")
        doom = Doom(run.capture_dir / client.filename, host_address(lab, sc.client, family),
                    (ip, port.node_port), counter_sources(lab),
                    drops=2 if port.protocol == "TCP" else 1)
        datagram_doom = Doom(run.capture_dir / client.filename,
                             host_address(lab, sc.client, family), (ip, port.node_port),
                             counter_sources(lab, any_drop=True))
        ctx = StepContext(lab=lab, scenario=sc, topology=topo, ip=ip, port=port.node_port,
                          protocol=port.protocol, deadline=time.monotonic() + sc.deadline_s,
                          say=say, family=family, doom=doom, datagram_doom=datagram_doom)
        run.steps = run_steps(ctx)
        run.timings["traffic_s"] = time.perf_counter() - t2
        said = events.datapath_events() if events is not None else None
        if said is not None:  # what the datapath dropped, at which hop and why
            said.write(run.capture_dir)
        t3 = time.perf_counter()
    run.timings["captures_stop_s"] = time.perf_counter() - t3  # settled, then stopped
    write_text(run.capture_dir / STEPS, json.dumps(
        [o.as_dict() for o in run.steps], indent=2) + "\n")


def _compare(run: ScenarioRun, spec: CompareModes, say: Progress,
             backend: Backend | None = None) -> None:
    """The topology under each mode of ``spec`` (on ``backend``: the scenario's own
    netns backend, so its datapath); figures and plot into the capture set (the
    report shows them)."""
    t = time.perf_counter()
    sc = run.scenario
    figures = compare_modes(run.topology, spec.modes, run.capture_dir,
                            transfer_bytes=spec.transfer_bytes, requests=spec.requests,
                            service=sc.target.service, node=sc.target.node, progress=say,
                            backend=backend)
    write_text(run.capture_dir / COMPARISON, json.dumps(
        {"transfer_bytes": spec.transfer_bytes, "requests": spec.requests,
         "lb_node": sc.target.node, "modes": [f.as_dict() for f in figures]},
        indent=2) + "\n")
    plot_modes(figures, run.capture_dir / COMPARISON_PLOT)
    run.timings["compare_s"] = time.perf_counter() - t


def _check_and_report(run: ScenarioRun, trace: Trace, say: Progress) -> None:
    """On the capture set alone: verdicts, merged pcapng, report; then ``latest``."""
    say("checking the expected trace on the captures")
    t = time.perf_counter()
    capdir = CaptureDir.load(run.capture_dir)  # each pcap is read once, for all three
    run.result = dataclasses.replace(check_trace(trace, capdir), diagnoses=tuple(
        d.text() for d in diagnose(capdir)))
    run.result.write(run.capture_dir)  # whole or not at all: it marks a complete set
    run.timings["check_s"] = time.perf_counter() - t
    say("writing the merged pcapng and the report")
    t = time.perf_counter()
    merge_pcapng(capdir, run.result)
    run.report = build_report(capdir)
    mark_latest(run.capture_dir)
    run.timings["report_s"] = time.perf_counter() - t


def run_scenario(name_or_path: str | Path, *, captures_root: Path = Path("captures"),
                 progress: Progress | None = None, backend: Backend | None = None,
                 keep: bool = False, run_id: str | None = None) -> ScenarioRun:
    """Run a scenario end to end on ``backend`` (default: netns) and check its trace.

    With ``keep`` the lab is left running afterwards (``dsrlab down RUN_ID``),
    failed or not. ``run_id``: the lab's run id (default: a new random one). The
    capture set is held as written by this process
    (:func:`lab.capture.layout.writing`) until ``latest`` has moved: ``dsrlab
    clean --incomplete`` never takes it while the run lives.
    """
    with contextlib.ExitStack() as holds:
        return _run_scenario(name_or_path, holds, captures_root=captures_root,
                             progress=progress, backend=backend, keep=keep, run_id=run_id)


def _run_scenario(name_or_path: str | Path, holds: contextlib.ExitStack, *,
                  captures_root: Path, progress: Progress | None, backend: Backend | None,
                  keep: bool, run_id: str | None) -> ScenarioRun:
    say = progress or (lambda _msg: None)
    settings.check_environment()  # every setting from the environment, before any lab
    sc, topo = load_scenario(name_or_path)
    trace = load_scenario_trace(sc)
    check_replays(sc)  # a replay's pcap file is read before any lab comes up
    check_captures(Path(captures_root), sc.name)  # where it goes, before anything exists
    backend = backend or get_backend("netns")
    refused = sc.backend_refusal(backend.name)  # as the pytest plugin skips it
    if refused:
        raise ScenarioError(refused)
    # a fault this kernel cannot make skips the scenario before its lab or captures exist
    check_available([s.fault for s in sc.traffic_steps() if isinstance(s, FaultStep)],
                    backend.name)
    # the lab and its captures fit the machine, or one line says what is missing
    resources.check(resources.lab_needs(topo, datapath=backend.name == "netns",
                                        servers=backend.name == "netns",
                                        captures=[r for _, r in capture_hosts(sc, topo)]))
    t0 = time.perf_counter()
    say(f"bringing up {topo.name} on {backend.name}")
    lab = backend.up(topo, run_id=run_id)
    topo = lab.topology  # the running lab's: a real cluster's addresses and pods
    try:  # from here on the lab is taken down (or detached) whatever happens
        run = ScenarioRun(sc, topo, lab.run_id, Path(captures_root) / sc.name / lab.run_id,
                          backend=lab.backend)
        run.timings["up_s"] = time.perf_counter() - t0
        holds.enter_context(writing(run.capture_dir))
        _send_traffic(run, lab, say)
    except BaseException:
        if keep:
            lab.detach(by="keep")  # left up for debugging (dsrlab down RUN_ID)
        else:
            lab.__exit__(*sys.exc_info())  # a teardown error is noted, not raised over this
        raise
    if keep:
        lab.detach(by="keep")
        run.kept = True
    else:
        say("tearing the lab down")
        t = time.perf_counter()
        lab.down()
        run.timings["down_s"] = time.perf_counter() - t
    if sc.compare_modes is not None:  # a kind cluster's modes are its Helm values: netns
        _compare(run, sc.compare_modes, say, backend if backend.name == "netns" else None)
    _check_and_report(run, trace, say)
    run.timings["total_s"] = time.perf_counter() - t0
    return run
