"""Packets are named by Wireshark's frame numbers everywhere: trace failures,
results.json, the report, the ladder, the merged pcapng's comments and
``dsrlab review``, checked against tshark's own ``frame.number`` on captures
that start with ARP and IPv6 frames (which Wireshark counts too)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from lab.check.review import review
from lab.check.trace import check_trace, parse_trace
from lab.check.trace.results import parse_results
from lab.pytest_plugin import require_cmd
from lab.report import build_report, merge_pcapng
from tests.check.synth import Breakage, build
from tests.seed import LB_NAME, POD2_NODE, POD_IP, POD_NODE, SEED_TRACE_PATH, VIP, flow_id


def tshark(path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    """tshark's rows (``frame.number`` first) for the packets ``display_filter`` keeps."""
    require_cmd("tshark")
    argv = ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields",
            "-e", "frame.number"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def first_frame(path: Path, display_filter: str) -> int:
    rows = tshark(path, display_filter)
    assert rows, f"tshark found nothing for {display_filter} in {path}"
    return int(rows[0][0])


def broken_trace() -> Any:
    """The seed trace claiming the SYN+ACK leaves the backend node from the pod's
    address (it must not): a miss with a closest packet at the backend node."""
    data = yaml.safe_load(SEED_TRACE_PATH.read_text())
    data["claims"][2]["expect"][1]["src"] = "$backend.ip"
    data["claims"][2]["expect"][1]["sport"] = "$backend.port"
    return parse_trace(data, "edited.trace.yaml")


def test_the_captures_start_with_frames_that_are_not_ipv4(tmp_path: Path) -> None:
    capdir = build(tmp_path, Breakage(arp=True))
    rows = tshark(capdir.point(POD_NODE).file, "arp || ipv6", "frame.protocols")
    assert [r[0] for r in rows] == ["1", "2", "3"]


def test_a_trace_failure_names_the_closest_packet_by_its_wireshark_frame(
        tmp_path: Path) -> None:
    capdir = build(tmp_path, Breakage(arp=True))
    res = check_trace(broken_trace(), capdir)
    failure = next(f for f in res.failures() if f.name == "syn-ack-out"
                   and f.flow == flow_id(40000))
    pcap = capdir.point(POD_NODE).file
    want = first_frame(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 1")
    assert want == 5  # after the 3 frames that are not IPv4 and the forwarded SYN
    assert failure.closest == want
    assert f"closest packet: frame {want}: tcp {VIP}:" in failure.describe()
    # a passing check's packet: the DNATed SYN leaving the LB node
    syn_out = next(c for c in res.checks() if c.label == "lb-node/syn-out"
                   and c.flow == flow_id(40000))
    assert syn_out.passed
    assert syn_out.packet == first_frame(capdir.point(LB_NAME).file,
                                         f"ip.dst == {POD_IP} && tcp.flags.syn == 1")
    assert syn_out.message.startswith(f"frame {syn_out.packet}: tcp ")


def test_results_json_the_report_and_the_merged_pcapng_use_the_same_numbers(
        tmp_path: Path) -> None:
    capdir = build(tmp_path, Breakage(arp=True))
    res = check_trace(broken_trace(), capdir)
    res.write(capdir.directory)
    doc = json.loads((capdir.directory / "results.json").read_text())
    assert doc["packet_numbers"] == "frame"
    pcap = capdir.point(POD_NODE).file
    want = first_frame(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 1")
    files = build_report(capdir)
    md = files.markdown.read_text()
    assert f"closest packet: {pcap.name} frame {want}: `frame {want}: tcp" in md
    html = files.html.read_text()
    assert f"{pcap.name} frame {want}" in html  # the failure, and the ladder's arrow title
    # the merged pcapng: the comment about the closest packet sits on that very packet
    merged = merge_pcapng(capdir, res)
    rows = tshark(merged, 'frame.comment contains "closest to the FAILED backend-node"',
                  "frame.interface_name", "ip.src", "tcp.flags.str")
    assert {(r[1], r[2], r[3]) for r in rows} == {
        (f"{node}/eth0", VIP, "·······A··S·") for node in (POD_NODE, POD2_NODE)}


def test_review_numbers_frames_as_wireshark(tmp_path: Path) -> None:
    capdir = build(tmp_path, Breakage(arp=True))
    pcap = capdir.point(LB_NAME).file
    r = review(pcap)
    assert [f.first_frame for f in r.flows] == [
        int(row[0]) for row in tshark(pcap, "ip[20:2] == 9a:08")]


def test_an_older_results_json_numbered_from_zero_reads_as_frame_numbers() -> None:
    old = {"claims": [{"name": "backend-node", "checks": [
        {"name": "syn-ack-out", "point": f"{POD_NODE}/eth0", "passed": False,
         "closest": 1, "closest_summary": f"#1 tcp {VIP}:32000 > x [SA]"},
        {"name": "never-x", "point": f"{POD_NODE}/eth0", "kind": "never", "passed": False,
         "packet": 0, "message": "a packet that must never appear here: #0 tcp a > b"}]}]}
    checks = parse_results(old).checks()
    assert (checks[0].closest, checks[0].closest_summary) == (
        2, f"frame 2: tcp {VIP}:32000 > x [SA]")
    assert (checks[1].packet, checks[1].message) == (
        1, "a packet that must never appear here: frame 1: tcp a > b")
    new = {**old, "packet_numbers": "frame"}
    assert parse_results(new).checks()[0].closest == 1
