"""``dsrlab datapath run`` on IPv6, as a user runs it (a subprocess).

The headline: Cilium's own IPv6 DSR test vector comes out byte for byte.
Cilium's ``tc_nodeport_lb6_dsr_lb`` test (bpf/tests/tc_nodeport_lb6_dsr_lb.c
and pktgen.h of v1.16.0) sends a SYN from client [100::]:111 to service
[200::]:80 with backend [300::]:8080: Ethernet de:ad:be:ef:de:ef ->
ce:72:a7:03:88:56, IPv6 hop limit 64, TCP seq 123456 stored in host order,
window 65535, data offset 5, payload ``"Should not change!!"`` and its NUL
(20 bytes), payload length 40. Cilium's output carries a Destination Options
header ``06 02 1b 14`` + the service address + ``00 50`` + ``00 00``, payload
length 64, TCP checksum 0x0d7c (docs/dsr-facts.md). The expected frame here
is written out from those facts, not from the program; the MACs are the
ones the run's scratch namespace gives (02:42 + the address's last four
bytes: 02:42:00:00:00:00 for both [200::] and [300::]).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from lab.datapath.cilium.source import ENV_VAR
from lab.wire.pcapio import PcapWriter, read_frames
from tests.seed import REPO

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

CLIENT = bytes.fromhex("0100" + "00" * 14)   # 100::
SERVICE = bytes.fromhex("0200" + "00" * 14)  # 200::
BACKEND = bytes.fromhex("0300" + "00" * 14)  # 300::
DATA = b"Should not change!!\0"
CILIUM_SRC = Path(os.environ.get(ENV_VAR) or REPO.parent / "shared" / "cilium")


def tcp(dport: int, csum: int) -> bytes:
    return (111).to_bytes(2, "big") + dport.to_bytes(2, "big") \
        + (123456).to_bytes(4, "little") + bytes(4) + bytes([0x50, 0x02]) \
        + b"\xff\xff" + csum.to_bytes(2, "big") + bytes(2) + DATA


def ipv6(plen: int, nh: int, hlim: int, src: bytes, dst: bytes) -> bytes:
    return b"\x60\x00\x00\x00" + plen.to_bytes(2, "big") + bytes([nh, hlim]) + src + dst


CILIUM_IN = (bytes.fromhex("ce72a7038856" "deadbeefdeef" "86dd")
             + ipv6(40, 6, 64, CLIENT, SERVICE) + tcp(80, 0x2DBC))
CILIUM_OUT = (bytes.fromhex("024200000000" "024200000000" "86dd")
              + ipv6(64, 60, 63, CLIENT, BACKEND)
              + bytes.fromhex("06021b14") + SERVICE + bytes.fromhex("0050" "0000")
              + tcp(8080, 0x0D7C))


def ones_sum(data: bytes) -> int:
    """The 16-bit one's complement sum of ``data`` (padded to an even length)."""
    data += b"\0" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def tcp6_sum(frame: bytes) -> int:
    """The sum over an Ethernet/IPv6/TCP frame's pseudo-header and segment (0xffff when
    its checksum is right)."""
    seg = frame[54:]
    return ones_sum(frame[22:54] + len(seg).to_bytes(4, "big") + bytes([0, 0, 0, 6]) + seg)


def dsrlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO,
                          env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def run(tmp: Path, frames: list[bytes], *args: str) -> tuple[list[dict[str, object]],
                                                                list[bytes]]:
    src, dst = tmp / "in.pcap", tmp / "out.pcap"
    with PcapWriter(src) as w:
        for i, frame in enumerate(frames):
            w.write(frame, 1_700_000_000_000_000_000 + i * 1000)
    res = dsrlab("datapath", "run", *args, "--input", str(src), "--output", str(dst), "--json")
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    return records, [f.data for f in read_frames(dst)]


def test_the_input_is_cilium_s_packet() -> None:
    """The reconstructed input carries a valid TCP checksum (scapy agrees)."""
    pkt = Ether(CILIUM_IN)
    fresh = pkt.copy()
    del fresh[TCP].chksum
    assert Ether(bytes(fresh))[TCP].chksum == pkt[TCP].chksum == 0x2DBC
    assert len(CILIUM_IN) == 14 + 40 + 40


def test_cilium_lb6_dsr_vector_byte_for_byte(tmp_path: Path) -> None:
    records, out = run(tmp_path, [CILIUM_IN], "--program", "lb", "--service", "[200::]:80",
                       "--backend", "[300::]:8080")
    assert [(r["verdict"], r["redirect"], r["reason"], r["length"]) for r in records] == [
        ("redirect", "eth0", None, len(CILIUM_OUT))]
    assert set(records[0]) == {"index", "frame", "program", "verdict", "length", "redirect",
                               "redirect_ifindex", "reason"}  # the same keys as IPv4's
    assert out == [CILIUM_OUT], out[0].hex() if out else "nothing came out"


@pytest.mark.parametrize("version", ["v1.13.0", "v1.16.0"])
def test_cilium_s_own_program_gives_its_vector_through_the_cli(tmp_path: Path,
                                                               version: str) -> None:
    """The same input through Cilium's compiled LB program (``--datapath cilium``): the
    same bytes after the Ethernet header, but for the hop limit, which Cilium's IPv6
    DSR path keeps (64); the MACs are the scratch node's real FIB and neighbour."""
    tarball = CILIUM_SRC / f"cilium-{version}-bpf.tar.gz"
    if not tarball.is_file():
        pytest.skip(f"no Cilium {version} source at {tarball} (set {ENV_VAR})")
    records, out = run(tmp_path, [CILIUM_IN], "--program", "lb", "--service", "[200::]:80",
                       "--backend", "[300::]:8080", "--datapath", "cilium",
                       "--cilium-src", str(tarball))
    assert [(r["verdict"], r["reason"], r["length"]) for r in records] == [
        ("redirect", None, len(CILIUM_OUT))]
    expected = bytearray(CILIUM_OUT[14:])
    expected[7] = 64  # the hop limit, kept
    assert out[0][14:] == bytes(expected), out[0].hex()
    assert out[0][12:14] == b"\x86\xdd"


def test_backend_role_learns_and_rewrites_the_reply(tmp_path: Path) -> None:
    """The LB's output at the backend's node, then the backend's SYN-ACK: it leaves
    from [200::]:80."""
    reply = bytearray(bytes.fromhex("024200000000" "024200000000" "86dd")
                      + ipv6(20, 6, 64, BACKEND, CLIENT)
                      + (8080).to_bytes(2, "big") + (111).to_bytes(2, "big") + bytes(8)
                      + bytes([0x50, 0x12]) + b"\xff\xff" + bytes(4))
    reply[70:72] = (0xFFFF - tcp6_sum(bytes(reply))).to_bytes(2, "big")
    assert tcp6_sum(bytes(reply)) == 0xFFFF
    records, out = run(tmp_path, [CILIUM_OUT, bytes(reply)], "--program", "backend",
                       "--service", "[200::]:80", "--backend", "[300::]:8080")
    assert [(r["program"], r["verdict"]) for r in records] == [
        ("dsr_from_netdev", "ok"), ("dsr_to_netdev", "ok")]
    assert out[0] == CILIUM_OUT  # delivered unchanged
    got = out[1]
    assert got[22:38] == SERVICE
    assert got[54:56] == (80).to_bytes(2, "big")
    assert tcp6_sum(got) == 0xFFFF  # the checksum is still right


@pytest.mark.parametrize(("args", "message"), [
    (["--service", "200::80", "--backend", "[300::]:8080"],
     "an IPv6 address goes in brackets, [ADDR]:PORT"),
    (["--service", "[200::]:80", "--backend", "10.0.0.5:8080"],
     "backend 10.0.0.5:8080 is IPv4, the service [200::]:80 IPv6"),
    (["--service", "[200::]:80", "--backend", "[300::]"], "'[300::]' is not IP:PORT"),
    (["--service", "[200::]:80", "--backend", "[300::]:8080", "--mtu", "1000"],
     "1000 is below IPv6's minimum MTU 1280"),
], ids=["no-brackets", "mixed-family", "no-port", "mtu"])
def test_bad_ipv6_arguments_are_one_line_errors(tmp_path: Path, args: list[str],
                                                message: str) -> None:
    src = tmp_path / "in.pcap"
    with PcapWriter(src) as w:
        w.write(CILIUM_IN, 1_700_000_000_000_000_000)
    res = dsrlab("datapath", "run", "--program", "lb", *args, "--input", str(src),
                 "--output", str(tmp_path / "o.pcap"))
    assert res.returncode == 2
    assert message in " ".join(res.stderr.split()), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "o.pcap").exists()
