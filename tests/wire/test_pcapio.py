"""The datapath runner's pcap files: written with nanoseconds, read back by us and scapy."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, rdpcap, wrpcap

from lab.wire.pcapio import PcapError, PcapWriter, read_frames
from tests.seed import CLIENT_IP, CLIENT_MAC, LB_MAC, NODE_PORT, VIP, client_syn

SYN = bytes(client_syn())
UDP_FRAME = bytes(Ether(src=CLIENT_MAC, dst=LB_MAC) / IP(src=CLIENT_IP, dst=VIP)
                  / UDP(sport=5353, dport=NODE_PORT) / Raw(b"ping"))


def test_pcap_round_trip_keeps_bytes_and_time(tmp_path: Path) -> None:
    data = bytes(client_syn() / Raw(b"x" * 1400))
    frames = [SYN, UDP_FRAME, b"\x00" * 14, data]
    with PcapWriter(tmp_path / "a.pcap") as w:
        for i, f in enumerate(frames):
            w.write(f, 1_700_000_000_123_456_789 + i)
    assert w.count == 4
    got = list(read_frames(tmp_path / "a.pcap"))
    assert [g.data for g in got] == frames
    assert [g.ts_ns for g in got] == [1_700_000_000_123_456_789 + i for i in range(4)]
    assert [bytes(p) for p in rdpcap(str(tmp_path / "a.pcap"))] == frames  # scapy agrees


def test_pcap_reads_scapy_microsecond_big_endian_and_pcapng(tmp_path: Path) -> None:
    pkts = [Ether(SYN), Ether(UDP_FRAME)]
    pkts[0].time, pkts[1].time = 1.5, 2.25
    wrpcap(str(tmp_path / "us.pcap"), pkts)
    wrpcap(str(tmp_path / "be.pcap"), pkts, endianness=">")
    with PcapNgWriter(str(tmp_path / "ng.pcapng")) as ng:
        for p in pkts:
            ng.write(p)
    for name in ("us.pcap", "be.pcap", "ng.pcapng"):
        got = list(read_frames(tmp_path / name))
        assert [g.data for g in got] == [bytes(p) for p in pkts], name
        assert [g.ts_ns for g in got] == [1_500_000_000, 2_250_000_000], name


def test_pcap_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PcapError, match=r"missing\.pcap: does not exist$"):
        list(read_frames(tmp_path / "missing.pcap"))
    (tmp_path / "text.pcap").write_text("hello, not a capture\n")
    with pytest.raises(PcapError, match=r"text\.pcap: at byte offset 0: not a pcap"):
        list(read_frames(tmp_path / "text.pcap"))
    raw = tmp_path / "raw-ip.pcap"
    raw.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    with pytest.raises(PcapError, match=r"raw-ip\.pcap: link type 101"):
        list(read_frames(raw))
