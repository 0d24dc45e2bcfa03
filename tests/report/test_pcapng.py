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

from lab.capture.capdir import CaptureDir
from lab.capture.layout import Role
from lab.capture.live import CapturePoint
from lab.capture.manifest import Manifest, ManifestBackend, ManifestClient, ManifestService
from lab.pytest_plugin import require_cmd
from lab.report import merge_pcapng
from tests.capset import run_file, write_capture_set
from tests.seed import (
    CLIENT_IP,
    CLIENT_MAC,
    LB_MAC,
    LB_NAME,
    NODE_PORT,
    OPTION,
    POD2_IP,
    POD2_NAME,
    POD2_NODE,
    POD_PORT,
    SERVICE,
    SERVICE_ADDR,
    VIP,
    WORKER2_MAC,
    flow_id,
)

LB = LB_NAME
NODE = POD2_NODE
FLOW = flow_id(40312)
POINTS: list[tuple[str, str, Role]] = [("client", "br-kind", "client"), (LB, "eth0", "lb-node"),
                                       (NODE, "eth0", "backend-node")]
T0 = Decimal("1795612626.222952")


def _frame(t: str, src_mac: str, dst_mac: str, ip: IP, tcp: TCP) -> Packet:
    f = Ether(src=src_mac, dst=dst_mac) / ip / tcp
    f.time = T0 + Decimal(t)
    return f


def write_capture(directory: Path) -> Path:
    """A SYN seen at the client, the LB node (in, out DNATed with the option), the bridge
    and the backend node, then the SYN+ACK from the service straight to the client."""
    c, lb, n = CLIENT_MAC, LB_MAC, WORKER2_MAC
    syn = TCP(sport=40312, dport=NODE_PORT, flags="S", seq=4075487069)
    dnat = IP(src=CLIENT_IP, dst=POD2_IP, id=22164, ttl=63, options=[IPOption(OPTION)])
    synack = TCP(sport=NODE_PORT, dport=40312, flags="SA", seq=685926598, ack=4075487070)
    back = IP(src=VIP, dst=CLIENT_IP, id=0, ttl=63)
    fwd = TCP(sport=40312, dport=POD_PORT, flags="S", seq=4075487069)
    arp = Ether(src=c, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT_IP, pdst=VIP)
    arp.time = T0 - Decimal("0.000010")
    frames: dict[str, list[Packet]] = {
        "client/br-kind": [
            arp,
            _frame("0", c, lb, IP(src=CLIENT_IP, dst=VIP, id=22164), syn),
            _frame("0.000051", lb, n, dnat.copy(), fwd.copy()),
            _frame("0.000138", n, c, back.copy(), synack.copy()),
        ],
        f"{LB}/eth0": [
            _frame("0.000003", c, lb, IP(src=CLIENT_IP, dst=VIP, id=22164), syn),
            _frame("0.000046", lb, n, dnat.copy(), fwd.copy()),
        ],
        f"{NODE}/eth0": [
            _frame("0.000053", lb, n, dnat.copy(), fwd.copy()),
            _frame("0.000135", n, c, back.copy(), synack.copy()),
        ],
    }
    hops = {CapturePoint(host, ifname, role): frames[f"{host}/{ifname}"]
            for host, ifname, role in POINTS}
    manifest = Manifest(scenario="seed", run_id="pcapng", backend="netns",
                        service=ManifestService(ip=VIP, port=NODE_PORT, name=SERVICE.name,
                                                protocol="TCP"),
                        client=ManifestClient(ip=CLIENT_IP), option_byte_order="host",
                        backends=[ManifestBackend(name=POD2_NAME, ip=POD2_IP, port=POD_PORT,
                                                  node=NODE)])
    return write_capture_set(directory, hops, manifest, file_name=run_file, counts=True)


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
            {"flow": None, "point": None, "name": POD2_NAME, "kind": "coverage",
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
    dsr = f"DSR option {OPTION.hex(' ')} -> service {SERVICE_ADDR}"
    assert commented == {
        (f"{LB}/eth0", VIP): [f"lb-node/syn-in flow {FLOW}"],
        (f"{LB}/eth0", POD2_IP): [f"lb-node/syn-out flow {FLOW}", dsr],
        (f"{NODE}/eth0", POD2_IP): [
            f"FAIL backend-node/pod-source flow {FLOW}: must never appear", dsr],
        (f"{NODE}/eth0", CLIENT_IP): [
            f"closest to the FAILED backend-node/syn-ack-out flow {FLOW}: no packet matched"],
        ("client/br-kind", POD2_IP): [dsr],
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
def test_real_seed_run_merges_every_hop(seed_capture: Path) -> None:
    """The merged.pcapng the seed run wrote, commented with the run's own results.json."""
    require_cmd("tshark")
    capdir = CaptureDir.load(seed_capture)
    merged = seed_capture / "merged.pcapng"
    assert merged.is_file(), "the seed run did not write merged.pcapng"
    res = json.loads((seed_capture / "results.json").read_text())
    rows = tshark(merged)
    names = [p.name for p in capdir.points]
    assert idb_count(merged) == len(names)
    assert sorted({r["frame.interface_name"] for r in rows}) == sorted(names)
    assert len(rows) == sum(len(tshark(p.file, ["frame.number"])) for p in capdir.points)
    times = [Decimal(r["frame.time_epoch"]) for r in rows]
    assert times == sorted(times)
    roles = {p.name: p.role for p in capdir.points}
    for flow in res["flows"]:
        port = flow["id"].rsplit(":", 1)[1]
        syn = next(r for r in rows if r["tcp.flags.str"].endswith("S·")
                   and r["ip.dst"] == VIP and f"flow {flow['id']}" in r["frame.comment"])
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
