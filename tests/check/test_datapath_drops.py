"""The datapath's drops in a capture set (``datapath-events.json``): kept by a live
run, bounded, named by the diagnosis, listed by the report, and a bad file never
breaks a review."""

from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap, wrpcap

from lab.capture.capdir import CaptureDir
from lab.capture.dpevents import MAX_DROPS, MAX_TRACES, DatapathEvent, DatapathEvents
from lab.capture.layout import DATAPATH_EVENTS
from lab.check.diagnose import diagnose
from lab.report import build_report
from tests.seed import CLIENT_IP, LB_NAME, NODE_PORT, POD_IP, VIP


def _point_file(capdir: Path, host: str) -> Path:
    manifest = json.loads((capdir / "manifest.json").read_text())
    (point,) = [p for p in manifest["points"] if p["host"] == host]
    return capdir / point["file"]


def _client_ports(capdir: Path) -> list[int]:
    frames = rdpcap(str(_point_file(capdir, "client")))
    return sorted({f[TCP].sport for f in frames if TCP in f and f[IP].src == CLIENT_IP
                   and f[TCP].flags == "S"})


def _keep_syns_at_the_lb(capdir: Path) -> None:
    """As if the LB node dropped every DNATed SYN: nothing left it, nothing came back."""
    lb = _point_file(capdir, LB_NAME)
    wrpcap(str(lb), [f for f in rdpcap(str(lb))
                     if not (TCP in f and f[IP].src == CLIENT_IP and f[IP].dst != VIP)])
    client = _point_file(capdir, "client")
    wrpcap(str(client), [f for f in rdpcap(str(client))
                         if not (TCP in f and f[IP].src == VIP)])


def _cilium_drops(ports: list[int]) -> DatapathEvents:
    return DatapathEvents.bounded("Cilium v1.16.0", "cilium_events", [
        DatapathEvent(node=LB_NAME, ifname="eth0", kind="drop", what="DROP_NO_FIB",
                      where="nodeport.h:2298", src=CLIENT_IP, sport=p, dst=POD_IP, dport=80,
                      proto="TCP", time=1.0) for p in ports])


def test_a_live_run_keeps_its_datapaths_drop_counts(seed_capture: Path) -> None:
    """The seed on the lab's datapath: the counters were read, and nothing dropped."""
    events = DatapathEvents.read(seed_capture)
    assert events is not None
    assert (events.source, events.datapath, events.drops) == ("dsr_counters",
                                                             "the lab's dsr.c", [])
    html = (seed_capture / "report.html").read_text()
    assert "The lab&#39;s dsr.c dropped nothing during the run" in html


def test_the_datapaths_reason_explains_a_dropped_syn(seed_capture_copy: Path) -> None:
    ports = _client_ports(seed_capture_copy)
    _keep_syns_at_the_lb(seed_capture_copy)
    _cilium_drops(ports).write(seed_capture_copy)
    found = diagnose(CaptureDir.load(seed_capture_copy))
    assert [d.cause for d in found] == ["datapath-drop"]
    assert found[0].line == (
        f"dropped at {LB_NAME} eth0: DROP_NO_FIB (Cilium v1.16.0, nodeport.h:2298): "
        f"{len(ports)} packets of the client's connections to {VIP}:{NODE_PORT}, the first "
        f"{CLIENT_IP}:{ports[0]} -> {POD_IP}:80 TCP")
    assert found[0].flows == [f"{CLIENT_IP}:{p}" for p in ports]


def test_without_the_events_the_same_capture_says_only_where(seed_capture_copy: Path) -> None:
    _keep_syns_at_the_lb(seed_capture_copy)
    (seed_capture_copy / DATAPATH_EVENTS).unlink()
    assert [d.cause for d in diagnose(CaptureDir.load(seed_capture_copy))] == ["dropped-at-lb"]


def test_counted_drops_are_named_only_when_something_broke(seed_capture_copy: Path) -> None:
    counted = DatapathEvents.bounded("the lab's dsr.c", "dsr_counters", [
        DatapathEvent(node=LB_NAME, ifname="eth0", kind="drop", what="drop_no_backend",
                      count=3)])
    counted.write(seed_capture_copy)
    assert diagnose(CaptureDir.load(seed_capture_copy)) == []  # the run worked
    _keep_syns_at_the_lb(seed_capture_copy)
    found = diagnose(CaptureDir.load(seed_capture_copy))
    assert [d.cause for d in found] == ["dropped-at-lb", "datapath-drop"]
    assert found[1].line == (f"dropped at {LB_NAME} eth0: drop_no_backend (the lab's dsr.c "
                             "counted 3 packets)")


def test_the_report_lists_drops_at_their_hop_and_on_the_ladder(seed_capture_copy: Path) -> None:
    ports = _client_ports(seed_capture_copy)
    _keep_syns_at_the_lb(seed_capture_copy)
    _cilium_drops(ports).write(seed_capture_copy)
    files = build_report(CaptureDir.load(seed_capture_copy))
    html = files.html.read_text()
    assert f'<tr data-hop="{LB_NAME} eth0" data-reason="DROP_NO_FIB">' in html
    assert html.count('class="banner error drop"') == len(ports)  # one on each ladder
    assert f"Cilium v1.16.0 dropped {len(ports)} packets during the run" in html
    md = files.markdown.read_text()
    assert f"| {LB_NAME} eth0 | DROP_NO_FIB | nodeport.h:2298 | {len(ports)} |" in md


def test_a_bad_events_file_is_named_and_breaks_nothing(seed_capture_copy: Path) -> None:
    for bad in ("{", '{"datapath": 3}', "[]", "\xff"):
        (seed_capture_copy / DATAPATH_EVENTS).write_text(bad, encoding="latin-1")
        assert diagnose(CaptureDir.load(seed_capture_copy)) == []
        html = build_report(CaptureDir.load(seed_capture_copy)).html.read_text()
        assert f"Cannot read {seed_capture_copy / DATAPATH_EVENTS}" in html


def test_the_file_stays_small_however_long_the_run() -> None:
    drops = [DatapathEvent(node="n", ifname="eth0", kind="drop", what="DROP_NO_FIB",
                           src=CLIENT_IP, sport=1000 + i % 50000, dst=POD_IP, dport=80,
                           proto="TCP") for i in range(MAX_DROPS + 500)]
    traces = [DatapathEvent(node="n", ifname="eth0", kind="trace", what="TRACE_TO_LXC")
              for _ in range(20 * MAX_TRACES)]
    said = DatapathEvents.bounded("Cilium v1.16.0", "cilium_events", drops + traces)
    assert len(said.drops) == MAX_DROPS
    assert said.drops_left_out == 500
    assert said.drop_count == MAX_DROPS + 500  # every drop counted
    assert said.traces == {"n TRACE_TO_LXC": 20 * MAX_TRACES}
    assert len([e for e in said.events if e.kind == "trace"]) == MAX_TRACES
    assert len(said.model_dump_json()) < 1_000_000
