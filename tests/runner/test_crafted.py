"""Crafted and replayed traffic (scenarios/crafted/): each scenario runs on the netns
backend and its trace proves what every hop did; the captures are read again here for
the same facts, and a trace claiming what did not happen fails. The replay step itself
(lab/runner/steps/crafted.py) is also tested without a lab: where it finds the pcap,
how it batches and what it refuses."""

from __future__ import annotations

import copy
import subprocess
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap, wrpcap

from lab.capture.capdir import CaptureDir
from lab.check.trace import TraceResult, check_trace, parse_trace
from lab.env.base import LabHost
from lab.errors import LabError
from lab.model.scenario import SCENARIO_DIR, Replay, all_scenarios, load_scenario
from lab.runner.scenario import ScenarioRun, run_scenario
from lab.runner.steps import StepContext
from lab.runner.steps.crafted import batches, check_replays, run_replay
from lab.wire.pcapread import PcapError
from tests.seed import CLIENT_IP, NODE_PORT, POD_IPS, POD_PORT, VIP

CRAFTED = SCENARIO_DIR / "crafted"
SEED_PCAP = CRAFTED / "replay-seed.pcap"


# -- what each scenario's captures show, read without the trace ----------------------
def _from(capdir: CaptureDir, role: str, src: str) -> list[tuple[str, int | None, str]]:
    """(source, source port, TCP flags) of every packet at the ``role`` point from
    ``src`` (an address or ``pods``) to the client."""
    (point,) = [p for p in capdir.points if p.role == role]
    srcs = set(POD_IPS) if src == "pods" else {src}
    return [(p.src, p.sport, p.flags) for p in capdir.packets(point)
            if p.src in srcs and p.dst == CLIENT_IP]


def _ack_without_syn(run: ScenarioRun, capdir: CaptureDir) -> None:
    # two bare ACKs, each reset by a pod from its own address; nothing from the service
    assert run.steps[0].figures == {"sent": 2}
    assert sorted(f for _, _, f in _from(capdir, "client", "pods")) == ["R", "R"]
    assert {port for _, port, _ in _from(capdir, "client", "pods")} == {POD_PORT}
    assert _from(capdir, "client", VIP) == []


def _out_of_window(run: ScenarioRun, capdir: CaptureDir) -> None:
    # the service answered the SYN and reset the ACK segment; the bare one got nothing
    assert [o.figures["sent"] for o in run.steps] == [1, 1, 1]
    assert _from(capdir, "client", VIP) == [(VIP, NODE_PORT, "SA"), (VIP, NODE_PORT, "R")]
    assert _from(capdir, "client", "pods") == []


def _replay_seed(run: ScenarioRun, capdir: CaptureDir) -> None:
    # six packets of the client's 22 frames: the SYN answered, the five others reset
    (out,) = run.steps
    assert out.figures["sent"] == 6
    assert out.figures["skipped"] == {"not IPv4": 6, "to another destination": 6,
                                      "not sent by the client": 4}
    assert _from(capdir, "client", VIP) == [(VIP, NODE_PORT, "SA")] + [(VIP, NODE_PORT, "R")] * 5
    assert _from(capdir, "client", "pods") == []


# -- traces that claim what did not happen -------------------------------------------
Trace = dict[str, Any]


def _claim(trace: Trace, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in trace["claims"] if c["name"] == name)
    return found


def _rst_from_service(trace: Trace) -> str:
    """As if the backend's node had DSR state for the bare ACK's flow."""
    exp = next(e for e in _claim(trace, "client")["expect"] if e["name"] == "rst-from-pod")
    exp.update(src="$service.ip", sport="$service.port")
    return "client/rst-from-pod"


def _challenge_ack(trace: Trace) -> str:
    """As if the half-open connection had lived to answer the bare segment."""
    exps = _claim(trace, "client")["expect"]
    at = next(i for i, e in enumerate(exps) if e["name"] == "bare-out")
    exps.insert(at + 1, {"name": "challenge-ack", "src": "$service.ip",
                         "sport": "$service.port", "dst": "$client", "dport": "$eph",
                         "flags": "A"})
    return "client/challenge-ack"


def _served(trace: Trace) -> str:
    """As if the pod had answered the replayed GET."""
    _claim(trace, "pod")["expect"].append(
        {"name": "response-out", "after": "request-in", "src": "$backend.ip",
         "sport": "$backend.port", "dst": "$client", "dport": "$eph", "flags": {"has": "PA"},
         "payload": {"startswith": "HTTP/1."}})
    return "pod/response-out"


Facts = Callable[[ScenarioRun, CaptureDir], None]
Wrong = Callable[[Trace], str]
SCENARIOS: dict[str, tuple[Facts, Wrong]] = {
    "ack-without-syn": (_ack_without_syn, _rst_from_service),
    "out-of-window": (_out_of_window, _challenge_ack),
    "replay-seed": (_replay_seed, _served),
}


def _check_edited(run: ScenarioRun, edit: Wrong) -> tuple[TraceResult, str]:
    path = run.scenario.trace_path()
    data = copy.deepcopy(yaml.safe_load(path.read_text()))
    label = edit(data)
    return check_trace(parse_trace(data, path), CaptureDir.load(run.capture_dir)), label


def test_the_crafted_folder_holds_these_scenarios() -> None:
    assert {p.stem for p in all_scenarios() if p.parent == CRAFTED} == set(SCENARIOS)


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_trace_proves_what_each_hop_did(name: str, tmp_path: Path) -> None:
    run = run_scenario(CRAFTED / f"{name}.yaml", captures_root=tmp_path)
    assert run.result is not None
    assert run.passed, run.result.summary()
    assert run.capture_dir.is_relative_to(tmp_path)
    facts, wrong = SCENARIOS[name]
    facts(run, CaptureDir.load(run.capture_dir))
    # the same captures, a trace claiming what did not happen: it fails there
    result, label = _check_edited(run, wrong)
    assert not result.passed
    failed = {c.label for v in result.claims for c in v.failures}
    assert failed == {label}, result.summary()


# -- a capture from elsewhere, replayed onto the lab ----------------------------------
FOREIGN = {CLIENT_IP: "192.0.2.10", VIP: "198.51.100.1"}


def _foreign_copy(dest: Path) -> None:
    """replay-seed.pcap as if captured elsewhere: client 192.0.2.10, service
    198.51.100.1:30080 (both directions, the LB node's DNATed copies too)."""
    frames = rdpcap(str(SEED_PCAP))
    for f in frames:
        if IP in f:
            ip = f[IP]
            ip.src, ip.dst = FOREIGN.get(ip.src, ip.src), FOREIGN.get(ip.dst, ip.dst)
            del ip.chksum
            if TCP in f:
                tcp = f[TCP]
                tcp.sport = 30080 if tcp.sport == NODE_PORT else tcp.sport
                tcp.dport = 30080 if tcp.dport == NODE_PORT else tcp.dport
                del tcp.chksum
    wrpcap(str(dest), frames)


def _replay_scenario(folder: Path, name: str, pcap: str) -> Path:
    """A scenario in ``folder`` replaying ``pcap`` on the seed, checked by replay-seed's
    trace."""
    scenario = folder / f"{name}.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": name, "topology": str(SCENARIO_DIR.parent / "topologies/seed.yaml"),
        "target": {"service": "serversvc", "node": "cilium-dsr-control-plane"},
        "steps": [{"replay": {"pcap": pcap}}],
        "trace": str(CRAFTED / "replay-seed.trace.yaml")}))
    return scenario


@pytest.mark.netns
@pytest.mark.bpf
def test_a_foreign_capture_is_replayed_onto_the_labs_addresses(tmp_path: Path) -> None:
    _foreign_copy(tmp_path / "foreign.pcap")
    before = (tmp_path / "foreign.pcap").read_bytes()
    scenario = _replay_scenario(tmp_path, "replay-foreign", "foreign.pcap")
    run = run_scenario(scenario, captures_root=tmp_path / "captures")
    assert run.result is not None
    assert run.passed, run.result.summary()  # the replay-seed trace holds, on the lab's names
    (out,) = run.steps
    assert (out.figures["client"], out.figures["service"], out.figures["sent"]) == (
        "192.0.2.10", "198.51.100.1:30080", 6)
    assert "192.0.2.10 -> 172.18.0.1, 198.51.100.1:30080 -> 172.18.0.2:32000" in out.summary
    assert (tmp_path / "foreign.pcap").read_bytes() == before


@pytest.mark.netns
@pytest.mark.bpf
def test_a_missing_pcap_stops_the_run_naming_it(tmp_path: Path) -> None:
    scenario = _replay_scenario(tmp_path, "replay-missing", "nowhere/missing.pcap")
    with pytest.raises(PcapError, match=r"nowhere/missing\.pcap: does not exist$"):
        run_scenario(scenario, captures_root=tmp_path / "captures")


# -- the replay step without a lab ---------------------------------------------------
class _FakeLab:
    """Records what would run on a host; fails the way a raw socket does when told."""

    backend, run_id = "fake", "000000"

    def __init__(self, fail: str = "") -> None:
        self.hosts = {"client": LabHost("client", "client", IPv4Address(CLIENT_IP), "br-kind",
                                        "fake-client")}
        self.calls: list[list[str]] = []
        self.fail = fail

    def run(self, host: str, argv: list[str], *, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if self.fail:
            raise subprocess.CalledProcessError(1, argv, "", f"Traceback...\n{self.fail}\n")
        return subprocess.CompletedProcess(argv, 0, "", "")


def _ctx(lab: _FakeLab, tmp_path: Path, protocol: str = "TCP") -> StepContext:
    sc, topo = load_scenario(CRAFTED / "replay-seed.yaml")
    sc = sc.model_copy(update={"source": tmp_path / "scenario.yaml"})
    return StepContext(lab=lab, scenario=sc, topology=topo,  # type: ignore[arg-type]
                       ip=VIP, port=topo.service(sc.target.service).port(None).node_port,
                       protocol=protocol,
                       deadline=time.monotonic() + 30, say=lambda _m: None)


def test_the_step_sends_the_clients_packets_from_the_client(tmp_path: Path) -> None:
    (tmp_path / "c.pcap").write_bytes(SEED_PCAP.read_bytes())
    lab = _FakeLab()
    out = run_replay(Replay(pcap="c.pcap"), _ctx(lab, tmp_path))  # relative to the scenario
    (argv,) = lab.calls
    sent = [IP(bytes.fromhex(h)) for h in argv[3:]]
    assert [(p.src, p.dst, p[TCP].dport, str(p[TCP].flags)) for p in sent] == [
        (CLIENT_IP, VIP, NODE_PORT, f) for f in ("S", "A", "PA", "A", "FA", "A")]
    assert out.ok
    assert out.figures["sent"] == 6


def test_a_failed_send_and_another_protocol_are_lab_errors_naming_the_file(
        tmp_path: Path) -> None:
    (tmp_path / "c.pcap").write_bytes(SEED_PCAP.read_bytes())
    with pytest.raises(LabError, match=r"c\.pcap: replay from client failed after 0 packets: "
                                       r"OSError: \[Errno 101\] Network is unreachable$"):
        run_replay(Replay(pcap="c.pcap"),
                   _ctx(_FakeLab("OSError: [Errno 101] Network is unreachable"), tmp_path))
    lab = _FakeLab()
    with pytest.raises(LabError, match=r"c\.pcap: the capture's service 172\.18\.0\.2:32000 is "
                                       r"TCP, the scenario's target port .* is UDP"):
        run_replay(Replay(pcap="c.pcap"), _ctx(lab, tmp_path, protocol="UDP"))
    assert lab.calls == []  # refused before anything was sent


def test_replay_files_can_be_checked_before_a_lab_comes_up(tmp_path: Path) -> None:
    sc, _ = load_scenario(CRAFTED / "replay-seed.yaml")
    check_replays(sc)  # the checked-in capture: fine
    (tmp_path / "replay-seed.pcap").write_bytes(b"not a capture")
    with pytest.raises(PcapError, match=r"replay-seed\.pcap: at byte offset 0: not a pcap"):
        check_replays(sc.model_copy(update={"source": tmp_path / "replay-seed.yaml"}))


def test_batches_keep_the_order_within_the_argument_limit() -> None:
    packets = [bytes([i]) * 100 for i in range(10)]  # 200 hex characters each
    runs = list(batches(packets, limit=500))
    assert [len(r) for r in runs] == [2, 2, 2, 2, 2]
    assert [p for r in runs for p in r] == packets
    assert list(batches([b"x" * 400], limit=500)) == [[b"x" * 400]]  # alone when too big
