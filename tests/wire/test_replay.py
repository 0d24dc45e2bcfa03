"""A capture made ready to replay (lab/wire/replay.py): which packets are taken, how
they are moved onto the lab's addresses, checksums computed again, and the files
that cannot be replayed (each refused naming the file, the file left as it was)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Padding, Raw
from scapy.utils import PcapNgWriter, wrpcap

from lab.errors import LabError
from lab.wire.endpoint import Endpoint
from lab.wire.packets import from_scapy
from lab.wire.pcapio import PcapWriter
from lab.wire.pcapread import PcapError
from lab.wire.replay import (
    CUT_SHORT,
    FRAGMENT,
    NOT_FROM_CLIENT,
    NOT_IPV4,
    NOT_TCP_UDP,
    NOT_TO_SERVICE,
    OVER_LIMIT,
    ReplayError,
    Rewrite,
    plan_replay,
)

# a capture from somewhere else: client 192.0.2.10, service 198.51.100.1:30080
CLIENT, SVC, SVC_PORT, EPH = "192.0.2.10", "198.51.100.1", 30080, 40000
LAB = Rewrite("172.18.0.1", Endpoint("172.18.0.2", 32000))
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _to_service(flags: str, seq: int, ack: int = 0, load: bytes = b"") -> IP:
    pkt = IP(src=CLIENT, dst=SVC, ttl=61, id=77) / TCP(sport=EPH, dport=SVC_PORT, flags=flags,
                                                       seq=seq, ack=ack)
    return pkt / Raw(load) if load else pkt


def _from_service(flags: str, seq: int, ack: int) -> IP:
    return IP(src=SVC, dst=CLIENT) / TCP(sport=SVC_PORT, dport=EPH, flags=flags, seq=seq,
                                         ack=ack)


def _conversation() -> list[IP]:
    """A client's connection as a capture at the client shows it, with wrong checksums
    in the client's packets (as a capture with transmit offload holds them)."""
    return [_to_service("S", 100), _from_service("SA", 900, 101),
            _to_service("A", 101, 901), _to_service("PA", 101, 901, GET),
            _from_service("A", 901, 101 + len(GET))]


def _ether(pkt: IP) -> Ether:
    return Ether(src="02:42:c0:00:02:0a", dst="02:42:c6:33:64:01") / pkt


def _bad_checksums(pkt: IP) -> IP:
    pkt = pkt.copy()
    pkt.chksum = 0x1234
    pkt[TCP].chksum = 0x4321
    return pkt


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_foreign_capture_is_rewritten_onto_the_labs_addresses(tmp_path: Path) -> None:
    frames = [_ether(_bad_checksums(p) if p.src == CLIENT else p) for p in _conversation()]
    frames.insert(1, Ether() / ARP(psrc=CLIENT, pdst=SVC))
    # the client's own DNS query: another destination, never sent
    frames.append(_ether(IP(src=CLIENT, dst="192.0.2.53") / UDP(sport=5353, dport=53)))
    # Ethernet padding after a short packet is not part of it
    frames.append(_ether(_to_service("A", 101 + len(GET), 901)) / Padding(b"\0" * 6))
    path = tmp_path / "foreign.pcap"
    wrpcap(str(path), frames)
    before = _sha(path)

    plan = plan_replay(path, rewrite=LAB)

    assert (plan.client, plan.service, plan.proto) == (CLIENT, Endpoint(SVC, SVC_PORT), "tcp")
    assert plan.skipped == {NOT_IPV4: 1, NOT_FROM_CLIENT: 2, NOT_TO_SERVICE: 1}
    assert plan.describe() == "192.0.2.10 -> 172.18.0.1, 198.51.100.1:30080 -> 172.18.0.2:32000"
    sent = [from_scapy(IP(raw), n) for n, raw in enumerate(plan.packets, start=1)]
    assert [(p.src, p.sport, p.dst, p.dport, p.flags, p.seq) for p in sent if p] == [
        ("172.18.0.1", EPH, "172.18.0.2", 32000, "S", 100),
        ("172.18.0.1", EPH, "172.18.0.2", 32000, "A", 101),
        ("172.18.0.1", EPH, "172.18.0.2", 32000, "PA", 101),
        ("172.18.0.1", EPH, "172.18.0.2", 32000, "A", 101 + len(GET))]
    for p in sent:
        assert p is not None
        assert (p.ip_csum_ok, p.l4_csum_ok, p.ttl, p.ip_id) == (True, True, 61, 77)
        assert p.ip_len == len(plan.packets[p.frame - 1])  # no Ethernet padding sent
    assert sent[2] is not None
    assert sent[2].payload == GET
    assert _sha(path) == before  # read, never written


def test_without_rewrite_the_packets_go_as_captured_with_checksums_made_right(
        tmp_path: Path) -> None:
    path = tmp_path / "as-is.pcap"
    wrpcap(str(path), [_ether(_bad_checksums(p)) for p in _conversation()])
    plan = plan_replay(path)
    assert plan.rewrite is None
    assert plan.describe() == "192.0.2.10 to 198.51.100.1:30080 as captured"
    first = from_scapy(IP(plan.packets[0]), 0)
    assert first is not None
    assert (first.src, first.dst, first.dport, first.ip_csum_ok, first.l4_csum_ok) == (
        CLIENT, SVC, SVC_PORT, True, True)


@pytest.mark.parametrize("linktype", [101, 228])  # raw IP, raw IPv4
def test_raw_ip_captures_are_read(tmp_path: Path, linktype: int) -> None:
    path = tmp_path / "raw.pcap"
    wrpcap(str(path), _conversation(), linktype=linktype)
    plan = plan_replay(path, rewrite=LAB)
    assert len(plan.packets) == 3
    assert plan.skipped == {NOT_FROM_CLIENT: 2}


def test_pcapng_captures_are_read(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcapng"
    with PcapNgWriter(str(path)) as w:
        for p in _conversation():
            w.write(_ether(p))
    assert len(plan_replay(path, rewrite=LAB).packets) == 3


def test_udp_is_replayed_with_its_length_and_checksum_made_again(tmp_path: Path) -> None:
    path = tmp_path / "udp.pcap"
    dgram = IP(src=CLIENT, dst=SVC) / UDP(sport=EPH, dport=SVC_PORT, chksum=0xBAD) / b"ping"
    wrpcap(str(path), [_ether(dgram), _ether(dgram)])
    plan = plan_replay(path, rewrite=LAB)
    assert plan.proto == "udp"
    p = from_scapy(IP(plan.packets[0]), 0)
    assert p is not None
    assert (p.dst, p.dport, p.payload, p.l4_csum_ok, p.ip_csum_ok) == (
        "172.18.0.2", 32000, b"ping", True, True)


def test_the_limit_fragments_short_captures_and_other_protocols(tmp_path: Path) -> None:
    syn = _to_service("S", 100)
    frag = IP(src=CLIENT, dst=SVC, flags="MF") / TCP(sport=EPH, dport=SVC_PORT) / (b"x" * 32)
    path = tmp_path / "mixed.pcap"
    with PcapWriter(path) as w:  # frames written as given: one cut by a snap length
        for frame in (_ether(syn), _ether(IP(src=CLIENT, dst=SVC, proto=1) / b"\x08\0\0\0"),
                      _ether(frag), bytes(_ether(_to_service("PA", 101, 1, GET)))[:-5],
                      _ether(syn), _ether(syn), _ether(syn)):
            w.write(bytes(frame))
    plan = plan_replay(path, rewrite=LAB, limit=2)
    assert len(plan.packets) == 2
    # every frame after the limit is counted, whatever it holds
    assert plan.skipped == {NOT_TCP_UDP: 1, FRAGMENT: 1, CUT_SHORT: 1, OVER_LIMIT: 2}
    assert plan.skipped_text() == ("1 not TCP or UDP, 1 fragments, 1 cut short by the capture, "
                                   "2 over the limit")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("make", "reason"), [
    (lambda d: d / "missing.pcap", "does not exist"),
    (lambda d: d, "not a regular file: a directory"),
    (lambda d: _write(d / "notes.pcap", b"hello, not a capture\n"), "not a pcap or pcapng file"),
    (lambda d: _write(d / "empty.pcap", b""), "empty file"),
])
def test_a_file_that_is_not_a_capture_is_refused_naming_it(
        tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(PcapError) as exc:
        plan_replay(path)
    msg = str(exc.value)
    assert isinstance(exc.value, LabError)
    assert msg.startswith(f"{path}: ")
    assert reason in msg
    assert "\n" not in msg  # one line


def test_a_capture_with_nothing_to_replay_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "arp-only.pcap"
    wrpcap(str(path), [Ether() / ARP(psrc=CLIENT, pdst=SVC)] * 3)
    with pytest.raises(ReplayError) as exc:
        plan_replay(path)
    assert str(exc.value) == (f"{path}: nothing to replay: no IPv4 TCP or UDP packet from a "
                              f"client (3 not IPv4)")
