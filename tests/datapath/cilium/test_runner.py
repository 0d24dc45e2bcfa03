"""``datapath run`` on Cilium's own programs: the same frames as the lab's datapath,
compared byte for byte where the two should agree (one backend, so no choice)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.datapath.cilium.runner import CiliumRunner
from lab.datapath.cilium.source import CiliumSource
from lab.datapath.runner import DatapathRunner, RunConfig
from lab.pytest_plugin import require_root
from lab.wire.endpoint import Endpoint
from lab.wire.pcapio import PcapWriter, read_frames
from tests.datapath.frames import assert_checksums_valid, backend_syn, tcp_frame
from tests.seed import CLIENT_IP, CLIENT_PORT, NODE_PORT, OPTION, POD_IP, POD_PORT, VIP

SERVICE = Endpoint(VIP, NODE_PORT)
TTL = 14 + 8
IP_CSUM = slice(14 + 10, 14 + 12)


def masked(frame: bytes) -> bytes:
    """The frame with its TTL and IPv4 header checksum zeroed."""
    out = bytearray(frame)
    out[TTL] = 0
    out[IP_CSUM] = b"\0\0"
    return bytes(out)

BACKEND = Endpoint(POD_IP, POD_PORT)


def synack_from_pod() -> bytes:
    return bytes(Ether(src="02:03:0a:00:02:7b", dst="02:02:0a:00:02:7b")
                 / IP(src=POD_IP, dst=CLIENT_IP, ttl=64, id=1)
                 / TCP(sport=POD_PORT, dport=CLIENT_PORT, flags="SA", seq=5000, ack=1001))


def test_the_lb_syn_is_byte_for_byte_the_labs(cilium_source: CiliumSource) -> None:
    require_root()
    config = RunConfig("lb", SERVICE, (BACKEND,))
    with CiliumRunner(config, cilium_source) as cilium, DatapathRunner(config) as lab:
        got = cilium.run(tcp_frame("S"))
        want = lab.run(tcp_frame("S"))
    assert got.program == "cil_from_netdev"
    assert (got.verdict, want.verdict) == ("redirect", "redirect")
    assert got.data is not None
    assert got.data[14 + 20:14 + 28] == OPTION
    assert want.data is not None
    # one difference: the lab's datapath decrements the TTL on the forward, as Cilium
    # 1.16 does; Cilium 1.13's NodePort DSR path leaves the client's TTL
    ttl_in = tcp_frame("S")[TTL]
    assert want.data[TTL] == ttl_in - 1
    assert got.data[TTL] == (ttl_in - 1 if cilium_source.version.at_least(1, 16) else ttl_in)
    assert masked(got.data) == masked(want.data)


def test_the_backend_learns_the_service_and_rewrites_the_reply(
        cilium_source: CiliumSource) -> None:
    require_root()
    config = RunConfig("backend", SERVICE, (BACKEND,))
    with CiliumRunner(config, cilium_source) as cilium:
        syn = cilium.run(backend_syn(OPTION))
        reply = cilium.run(synack_from_pod())
    assert syn.program == "cil_from_netdev>cil_from_host"
    assert syn.verdict == "redirect"  # delivered to the pod's lxc
    assert reply.program.startswith("cil_from_container")
    assert reply.data is not None
    out = Ether(reply.data)
    assert (out[IP].src, out[TCP].sport) == (VIP, NODE_PORT)
    assert (out[IP].dst, out[TCP].dport) == (CLIENT_IP, CLIENT_PORT)
    assert_checksums_valid(reply.data)
    if cilium_source.version.at_least(1, 14):
        assert reply.program == "cil_from_container>cil_to_netdev"  # rewritten on eth0


def test_datapath_run_cli_writes_ciliums_output(cilium_source: CiliumSource,
                                                 tmp_path: Path) -> None:
    """``dsrlab datapath run --datapath cilium`` on the seed's SYN: the pcap it writes
    holds the same SYN as the lab's datapath writes (the TTL apart on 1.13)."""
    require_root()
    src = tmp_path / "in.pcap"
    with PcapWriter(src) as w:
        w.write(tcp_frame("S"), 0)
    outs = {}
    for datapath in ("lab", "cilium"):
        out = tmp_path / f"{datapath}.pcap"
        extra = ["--cilium-src", str(cilium_source.path)] if datapath == "cilium" else []
        proc = subprocess.run(
            [sys.executable, "-m", "lab.cli", "datapath", "run", "--program", "lb",
             "--service", f"{VIP}:{NODE_PORT}", "--backend", f"{POD_IP}:{POD_PORT}",
             "--input", str(src), "--output", str(out), "--datapath", datapath, *extra],
            capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        outs[datapath] = [f.data for f in read_frames(out)]
    assert len(outs["cilium"]) == 1
    assert masked(outs["cilium"][0]) == masked(outs["lab"][0])
    if cilium_source.version.at_least(1, 16):
        assert outs["cilium"] == outs["lab"]


def test_datapath_run_cli_refuses_an_unusable_source(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "lab.cli", "datapath", "run", "--program", "lb",
            "--service", f"{VIP}:{NODE_PORT}", "--backend", f"{POD_IP}:{POD_PORT}",
            "--input", str(tmp_path / "in.pcap"), "--output", str(tmp_path / "o.pcap")]
    with PcapWriter(tmp_path / "in.pcap") as w:
        w.write(tcp_frame("S"), 0)
    proc = subprocess.run([*args, "--datapath", "cilium", "--cilium-src",
                           str(tmp_path / "nothing")], capture_output=True, text=True,
                          check=False, env={**os.environ, "DSRLAB_CILIUM_SRC": ""})
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"error: Cilium source {tmp_path / 'nothing'}: no such file or folder"]
    assert not (tmp_path / "o.pcap").exists()
    proc = subprocess.run([*args, "--cilium-src", str(tmp_path)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2
    assert "--cilium-src is for --datapath cilium" in proc.stderr
