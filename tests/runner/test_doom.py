"""A request stops at the first sign that it cannot succeed (lab.runner.steps.doom).

The signs are read from a pcap that grows as tcpdump writes it
(:class:`lab.wire.pcaptail.PcapTail`) and from counters; a live failure
scenario stops its request at the stray SYN+ACK with the same verdicts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from lab.runner.steps.doom import FINAL_DROPS, Doom
from lab.wire.pcaptail import PcapTail

CLIENT, SERVICE, POD = "172.18.0.1", ("172.18.0.2", 32000), "10.0.2.123"


def _header() -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 9216, 1)


def _record(frame: bytes) -> bytes:
    return struct.pack("<IIII", 1, 2, len(frame), len(frame)) + frame


def _frame(pkt: object) -> bytes:
    return bytes(Ether() / pkt)


def test_the_tail_reads_each_complete_record_once(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    one, two = _frame(IP() / TCP()), _frame(IP() / UDP())
    path.write_bytes(_header()[:10])
    tail = PcapTail(path)
    assert tail.frames() == []  # not even the header yet
    path.write_bytes(_header() + _record(one) + _record(two)[:20])  # the writer mid-record
    assert tail.frames() == [(1, one)]
    with path.open("ab") as f:
        f.write(_record(two)[20:])
    assert tail.frames() == [(1, two)]
    assert tail.frames() == []


def test_a_file_that_is_not_classic_pcap_gives_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))  # pcapng
    tail = PcapTail(path)
    assert tail.frames() == []
    assert not tail.readable


def _doom(tmp_path: Path, frames: list[bytes], counters: dict[str, int] | None = None,
          drops: int = 1) -> tuple[Doom, Path, dict[str, int]]:
    path = tmp_path / "client.pcap"
    path.write_bytes(_header())
    state = dict(counters or {})
    doom = Doom(path, CLIENT, SERVICE, [("node-a's datapath", lambda: state, FINAL_DROPS)],
                drops=drops)
    doom.arm()
    with path.open("ab") as f:
        f.write(b"".join(_record(fr) for fr in frames))
    return doom, path, state


SYN = IP(src=CLIENT, dst=SERVICE[0]) / TCP(sport=40000, dport=SERVICE[1], flags="S")


@pytest.mark.parametrize(("pkt", "sign"), [
    (IP(src=POD, dst=CLIENT) / TCP(sport=80, dport=40000, flags="SA"),
     f"SYN+ACK from {POD}:80, not from the service 172.18.0.2:32000"),
    (IP(src=SERVICE[0], dst=CLIENT) / TCP(sport=SERVICE[1], dport=40000, flags="R"),
     "reset by the service 172.18.0.2:32000"),
    (IP(src="172.18.0.3", dst=CLIENT) / ICMP(type=3, code=1) / bytes(SYN)[:28],
     "ICMP error 3/1 from 172.18.0.3"),
    (IP(src=POD, dst=CLIENT) / UDP(sport=53, dport=40000) / b"x",
     f"answer from {POD}:53, not from the service 172.18.0.2:32000"),
])
def test_a_packet_to_the_client_that_ends_the_request(tmp_path: Path, pkt: object,
                                                       sign: str) -> None:
    doom, _, _ = _doom(tmp_path, [_frame(SYN), _frame(pkt)])
    assert doom.reason() == sign
    assert doom.local_port == 40000  # the request's own port, from its SYN


@pytest.mark.parametrize("pkt", [
    IP(src=SERVICE[0], dst=CLIENT) / TCP(sport=SERVICE[1], dport=40000, flags="SA"),
    IP(src="172.18.0.3", dst=CLIENT) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(SYN)[:28],
    IP(src=CLIENT, dst=POD) / TCP(sport=40000, dport=80, flags="S"),  # not to the client
    IP(src=SERVICE[0], dst=CLIENT) / UDP(sport=SERVICE[1], dport=40000) / b"answer",
])
def test_what_is_no_sign(tmp_path: Path, pkt: object) -> None:
    doom, _, _ = _doom(tmp_path, [_frame(pkt)])
    assert doom.reason() is None


def test_packets_from_before_the_request_are_not_its_signs(tmp_path: Path) -> None:
    path = tmp_path / "client.pcap"
    stray = IP(src=POD, dst=CLIENT) / TCP(sport=80, dport=39999, flags="SA")
    path.write_bytes(_header() + _record(_frame(stray)))
    doom = Doom(path, CLIENT, SERVICE, [])
    doom.arm()
    assert doom.reason() is None


def test_a_final_drop_counts_once_for_a_datagram_and_twice_for_tcp(tmp_path: Path) -> None:
    doom, _, state = _doom(tmp_path, [], {"drop_no_local_backend": 5, "drop_frag_needed": 0},
                           drops=2)
    state["drop_frag_needed"] = 9  # path-MTU discovery gets past it: never a sign
    state["drop_no_local_backend"] = 6
    assert doom.reason() is None  # the SYN; its retransmission may still be claimed
    state["drop_no_local_backend"] = 7
    assert doom.reason() == "node-a's datapath counted no_local_backend (2)"
    udp, _, state = _doom(tmp_path, [], {"drop_no_backend": 0})
    state["drop_no_backend"] = 1
    assert udp.reason() == "node-a's datapath counted no_backend (1)"


@pytest.mark.netns
def test_a_failure_scenario_stops_its_request_at_the_stray_syn_ack(tmp_path: Path) -> None:
    from lab.runner.scenario import run_scenario  # noqa: PLC0415

    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "failures" \
        / "fabric-strips-option.yaml"
    run = run_scenario(scenario, captures_root=tmp_path)
    assert run.passed, run.result.summary() if run.result else "no result"
    steps = json.loads((run.capture_dir / "steps.json").read_text())
    (exchange,) = steps[0]["exchanges"]
    assert exchange["error"].startswith("stopped: SYN+ACK from 10.0."), exchange
    assert exchange["error"].endswith("not from the service 172.18.0.2:32000")
    assert exchange["local_port"] is not None
    diagnoses = json.loads((run.capture_dir / "results.json").read_text())["diagnoses"]
    assert any("the DSR option did not reach it" in d for d in diagnoses)


@pytest.mark.netns
def test_each_datagram_of_a_black_hole_stops_at_its_drop(tmp_path: Path) -> None:
    """udp-too-big-silent: both datagrams are dropped silently at the LB node; each
    one's wait ends at its own drop, and the second is still sent (its trace says so)."""
    from lab.runner.scenario import run_scenario  # noqa: PLC0415

    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "mtu" \
        / "udp-too-big-silent.yaml"
    run = run_scenario(scenario, captures_root=tmp_path)
    assert run.passed, run.result.summary() if run.result else "no result"
    steps = json.loads((run.capture_dir / "steps.json").read_text())
    errors = [e["error"] for e in steps[0]["exchanges"]]
    assert errors == ["stopped: cilium-dsr-control-plane's datapath counted frag_needed (1)"] * 2
    datagrams = steps[0]["figures"]["datagrams"]
    assert [d["size"] for d in datagrams] == [1472, 1472]

