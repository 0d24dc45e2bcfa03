"""merged.pcapng: every hop in one file, read back by the real tshark."""

from __future__ import annotations

import json
import struct
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, IPOption
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from scapy.utils import PcapWriter

from lab.capture.capdir import CaptureDir
from lab.check.trace import check_trace, load_trace
from lab.pytest_plugin import require_cmd
from lab.report import merge_pcapng
from lab.runner.scenario import run_scenario
from lab.wire import dsropt

LB = "cilium-dsr-control-plane"
NODE = "cilium-dsr-worker2"
FLOW = "172.18.0.1:40312"
OPTION = dsropt.encode("172.18.0.2", 32000)
POINTS = [("client", "br-kind", "client"), (LB, "eth0", "lb-node"), (NODE, "eth0", "backend-node")]
T0 = Decimal("1795612626.222952")


def _frame(t: str, src_mac: str, dst_mac: str, ip: IP, tcp: TCP) -> Packet:
    f = Ether(src=src_mac, dst=dst_mac) / ip / tcp
    f.time = T0 + Decimal(t)
    return f


def write_capture(directory: Path) -> Path:
    """A SYN seen at the client, the LB node (in, out DNATed with the option), the bridge
    and the backend node, then the SYN+ACK from the service straight to the client."""
    c, lb, n = "02:42:ac:12:00:01", "02:42:ac:12:00:02", "02:42:ac:12:00:03"
    syn = TCP(sport=40312, dport=32000, flags="S", seq=4075487069)
    dnat = IP(src="172.18.0.1", dst="10.0.0.216", id=22164, ttl=63, options=[IPOption(OPTION)])
    synack = TCP(sport=32000, dport=40312, flags="SA", seq=685926598, ack=4075487070)
    back = IP(src="172.18.0.2", dst="172.18.0.1", id=0, ttl=63)
    arp = Ether(src=c, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="172.18.0.1", pdst="172.18.0.2")
    arp.time = T0 - Decimal("0.000010")
    frames: dict[str, list[Packet]] = {
        "client/br-kind": [
            arp,
            _frame("0", c, lb, IP(src="172.18.0.1", dst="172.18.0.2", id=22164), syn),
            _frame("0.000051", lb, n, dnat.copy(), TCP(sport=40312, dport=80, flags="S",
                                                       seq=4075487069)),
            _frame("0.000138", n, c, back.copy(), synack.copy()),
        ],
        f"{LB}/eth0": [
            _frame("0.000003", c, lb, IP(src="172.18.0.1", dst="172.18.0.2", id=22164), syn),
            _frame("0.000046", lb, n, dnat.copy(), TCP(sport=40312, dport=80, flags="S",
                                                       seq=4075487069)),
        ],
        f"{NODE}/eth0": [
            _frame("0.000053", lb, n, dnat.copy(), TCP(sport=40312, dport=80, flags="S",
                                                       seq=4075487069)),
            _frame("0.000135", n, c, back.copy(), synack.copy()),
        ],
    }
    points = []
    for host, ifname, role in POINTS:
        name, file = f"{host}/{ifname}", f"{host}--{ifname}.pcap"
        with PcapWriter(str(directory / file), linktype=1, sync=True) as w:
            w.write_header(None)
            for f in frames[name]:
                w.write(f)
        points.append({"host": host, "ifname": ifname, "role": role, "name": name,
                       "file": file, "packets": len(frames[name])})
    manifest = {"scenario": "seed", "run_id": "pcapng", "backend": "netns",
                "service": {"ip": "172.18.0.2", "port": 32000, "name": "serversvc",
                            "protocol": "TCP"},
                "client": {"ip": "172.18.0.1"}, "option_byte_order": "host",
                "backends": [{"name": "cni-m7tjc", "ip": "10.0.0.216", "port": 80,
                              "node": NODE}],
                "points": points}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def results() -> dict[str, Any]:
    return {"scenario": "seed", "run_id": "pcapng", "passed": False, "flows": [], "claims": [
        {"name": "lb-node", "title": "LB node", "passed": True, "checks": [
            {"flow": FLOW, "point": f"{LB}/eth0", "name": "syn-in", "kind": "expect",
             "passed": True, "packet": 0},
            {"flow": FLOW, "point": f"{LB}/eth0", "name": "syn-out", "kind": "expect",
             "passed": True, "packet": 1}]},
        {"name": "backend-node", "title": "backend", "passed": False, "checks": [
            {"flow": FLOW, "point": f"{NODE}/eth0", "name": "syn-ack-out", "kind": "expect",
             "passed": False, "packet": None, "closest": 1, "message": "no packet matched"},
            {"flow": FLOW, "point": f"{NODE}/eth0", "name": "pod-source", "kind": "never",
             "passed": False, "packet": 0, "message": "must never appear"}]},
        {"name": "all-backends", "title": "coverage", "passed": True, "checks": [
            {"flow": None, "point": None, "name": "cni-m7tjc", "kind": "coverage",
             "passed": True}]},
    ]}


FIELDS = ["frame.interface_id", "frame.interface_name", "frame.time_epoch", "ip.id",
          "ip.dst", "ip.hdr_len", "tcp.flags.str", "frame.comment"]


def tshark(path: Path, fields: list[str] = FIELDS) -> list[dict[str, str]]:
    require_cmd("tshark")
    argv = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=\t",
            "-E", "aggregator=|", "-E", "occurrence=a"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [dict(zip(fields, line.split("\t"), strict=True)) for line in out.splitlines()]


def idb_count(path: Path) -> int:
    """Interface Description Blocks in a pcapng file (little-endian, as scapy writes)."""
    data, pos, n = path.read_bytes(), 0, 0
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        n += btype == 1
        pos += blen
    return n


def test_one_named_interface_per_hop_and_every_frame_in_time_order(tmp_path: Path) -> None:
    directory = write_capture(tmp_path)
    out = merge_pcapng(directory, None)
    assert out == directory / "merged.pcapng"
    rows = tshark(out)
    names = [f"{h}/{i}" for h, i, _ in POINTS]
    assert idb_count(out) == len(names)  # no unnamed interface 0
    assert {r["frame.interface_id"]: r["frame.interface_name"] for r in rows} == {
        str(i): n for i, n in enumerate(names)}
    times = [Decimal(r["frame.time_epoch"]) for r in rows]
    assert times == sorted(times)
    # exactly the frames of the hop files, with their timestamps to the microsecond
    merged = sorted((r["frame.interface_name"], Decimal(r["frame.time_epoch"])) for r in rows)
    sources = sorted((n, Decimal(r["frame.time_epoch"])) for n, (h, i, _) in zip(
        names, POINTS, strict=True) for r in tshark(directory / f"{h}--{i}.pcap"))
    assert merged == sources
    assert len(rows) == 8
    # the SYN, hop by hop
    syn = [r["frame.interface_name"] for r in rows if r["ip.id"] and int(r["ip.id"], 16) == 22164]
    assert syn == ["client/br-kind", f"{LB}/eth0", f"{LB}/eth0", "client/br-kind",
                   f"{NODE}/eth0"]


def test_matched_packets_carry_the_expectation_name(tmp_path: Path) -> None:
    directory = write_capture(tmp_path)
    rows = tshark(merge_pcapng(directory, results()))
    commented = {(r["frame.interface_name"], r["ip.dst"]): r["frame.comment"].split("|")
                 for r in rows if r["frame.comment"]}
    dsr = "DSR option 9a 08 00 7d 02 00 12 ac -> service 172.18.0.2:32000"
    assert commented == {
        (f"{LB}/eth0", "172.18.0.2"): [f"lb-node/syn-in flow {FLOW}"],
        (f"{LB}/eth0", "10.0.0.216"): [f"lb-node/syn-out flow {FLOW}", dsr],
        (f"{NODE}/eth0", "10.0.0.216"): [
            f"FAIL backend-node/pod-source flow {FLOW}: must never appear", dsr],
        (f"{NODE}/eth0", "172.18.0.1"): [
            f"closest to the FAILED backend-node/syn-ack-out flow {FLOW}: no packet matched"],
        ("client/br-kind", "10.0.0.216"): [dsr],
    }
    # the option comment sits on exactly the frames whose IP header carries 8 option bytes
    assert {i for i, r in enumerate(rows) if dsr in r["frame.comment"]} == {
        i for i, r in enumerate(rows) if r["ip.hdr_len"] == "28"}


def test_results_json_in_the_capture_dir_is_used_when_none_is_given(tmp_path: Path) -> None:
    directory = write_capture(tmp_path)
    plain = [r["frame.comment"] for r in tshark(merge_pcapng(directory, None))]
    assert not any("lb-node" in c for c in plain)
    (directory / "results.json").write_text(json.dumps(results()))
    again = [r["frame.comment"] for r in tshark(merge_pcapng(directory, None))]
    assert sum(f"lb-node/syn-out flow {FLOW}" in c for c in again) == 1
    assert not list(directory.glob(".*.tmp"))


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.scenario
def test_real_seed_run_merges_every_hop(tmp_path: Path) -> None:
    require_cmd("tshark")
    run = run_scenario("seed", captures_root=tmp_path)
    directory = run.capture_dir
    capdir = CaptureDir.load(directory)
    res = check_trace(load_trace(Path(__file__).resolve().parents[2] / "scenarios"
                                 / "seed.trace.yaml"), capdir).as_dict()
    rows = tshark(merge_pcapng(directory, res))
    names = [p.name for p in capdir.points]
    assert idb_count(directory / "merged.pcapng") == len(names)
    assert sorted({r["frame.interface_name"] for r in rows}) == sorted(names)
    assert len(rows) == sum(len(tshark(p.file, ["frame.number"])) for p in capdir.points)
    times = [Decimal(r["frame.time_epoch"]) for r in rows]
    assert times == sorted(times)
    roles = {p.name: p.role for p in capdir.points}
    for flow in res["flows"]:
        port = flow["id"].rsplit(":", 1)[1]
        syn = next(r for r in rows if r["tcp.flags.str"].endswith("S·")
                   and r["ip.dst"] == "172.18.0.2" and f"flow {flow['id']}" in r["frame.comment"])
        hops = [roles[r["frame.interface_name"]] for r in rows
                if r["ip.id"] == syn["ip.id"] and r["tcp.flags.str"] == syn["tcp.flags.str"]]
        # client, LB in, LB out (+ the bridge's copy), backend node, pod: in that order
        assert hops[:3] == ["client", "lb-node", "lb-node"], (port, hops)
        assert hops[-2:] == ["backend-node", "pod"], (port, hops)
    # every packet the checker matched is commented with its name and flow
    expected = {f"{c['name']}/{k['name']} flow {k['flow']}" for c in res["claims"]
                for k in c["checks"] if k["passed"] and k.get("packet") is not None
                and k.get("flow")}
    found = {part for r in rows for part in r["frame.comment"].split("|")}
    assert expected
    assert expected <= found
