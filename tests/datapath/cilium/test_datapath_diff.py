"""``dsrlab datapath diff``: real test runs of a few frames through the lab's datapath
and Cilium's, as a user runs it (the CLI in a subprocess, as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.datapath.cilium.source import CiliumSource
from lab.pytest_plugin import require_root
from lab.wire.pcapio import PcapWriter, read_frames
from tests.datapath.frames import tcp_frame
from tests.seed import CLIENT_IP, NODE_PORT, POD2_IP, POD_IP, POD_PORT, VIP

ETH = Ether(src="02:42:ac:12:00:01", dst="02:42:ac:12:00:02")
SERVICE = ["--service", f"{VIP}:{NODE_PORT}", "--backend", f"{POD_IP}:{POD_PORT}"]


def jumbo_syn() -> bytes:
    """A SYN the DSR option would push beyond the MTU: both drop it."""
    return bytes(ETH / IP(src=CLIENT_IP, dst=VIP, id=9)
                 / TCP(sport=40000, dport=NODE_PORT, flags="S") / (b"x" * 1500))


def later_fragment() -> bytes:
    """A TCP fragment (offset 800) whose first never came: both drop it (Cilium:
    DROP_FRAG_NOT_FOUND; the lab's datapath passed it to the stack until main's
    fragment fix, which the differential fuzz had found too)."""
    return bytes(ETH / IP(src=CLIENT_IP, dst=VIP, id=77, frag=100, flags="MF", proto=6)
                 / (b"y" * 40))


def big_ack() -> bytes:
    """An ACK longer than the MTU (no option to add): the lab's datapath passes it to
    the stack (its FIB lookup fails on the MTU: fib_pass), Cilium drops it
    (DROP_NO_FIB)."""
    return bytes(ETH / IP(src=CLIENT_IP, dst=VIP, id=10)
                 / TCP(sport=40000, dport=NODE_PORT, flags="A") / (b"z" * 1500))


def bad_ihl_syn() -> bytes:
    """The seed's SYN with IHL 3: the lab's datapath drops it (bad_ihl), Cilium passes
    it to the stack."""
    frame = bytearray(tcp_frame("S"))
    frame[14] = 0x43
    return bytes(frame)


def pcap(tmp_path: Path, *frames: bytes) -> Path:
    path = tmp_path / "in.pcap"
    with PcapWriter(path) as w:
        for i, f in enumerate(frames):
            w.write(f, i * 1000)
    return path


def diff(*args: str, src: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if src is not None:
        env["DSRLAB_CILIUM_SRC"] = src
    return subprocess.run([sys.executable, "-m", "lab.cli", "datapath", "diff", *args],
                          capture_output=True, text=True, timeout=300, check=False, env=env)


def records(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def test_the_seed_syn_is_the_same_on_1_16_and_differs_by_the_ttl_on_1_13(
        cilium_source: CiliumSource, tmp_path: Path) -> None:
    require_root()
    src = pcap(tmp_path, tcp_frame("S"))
    proc = diff(str(src), *SERVICE, "--cilium-src", str(cilium_source.path),
                "--output-dir", str(tmp_path / "out"))
    outs = {p.name: [f.data for f in read_frames(p)] for p in (tmp_path / "out").iterdir()}
    assert set(outs) == {"lab.pcap", f"cilium-{cilium_source.version}.pcap"}
    lab, cilium = outs["lab.pcap"], outs[f"cilium-{cilium_source.version}.pcap"]
    assert len(lab) == len(cilium) == 1
    ttl_in = tcp_frame("S")[22]
    if cilium_source.version.at_least(1, 16):
        assert proc.returncode == 0, proc.stderr
        assert lab == cilium
        assert "1 equal (0 passed unchanged by both), 0 different" in proc.stderr
        assert proc.stdout == ""
    else:
        assert proc.returncode == 1, proc.stderr
        # the one difference, named with both values; its checksum follows from it
        assert proc.stdout.splitlines()[0] == (
            f"frame 1 [{cilium_source.version}]: different: [IP].ttl lab {ttl_in - 1} "
            f"cilium {ttl_in}; [IP].chksum lab 0x{lab[0][24:26].hex()} "
            f"cilium 0x{cilium[0][24:26].hex()} (follows)")
        assert "0 equal (0 passed unchanged by both), 1 different" in proc.stderr
        assert "differing fields: [IP].ttl 1" in proc.stderr
        # accepted, by name or as the documented difference: exit 0, still counted
        for accept in (["--ignore-field", "ttl"], ["--ignore-field", "[IP].ttl"],
                       ["--accept-known"]):
            ok = diff(str(src), *SERVICE, "--cilium-src", str(cilium_source.path), *accept)
            assert ok.returncode == 0, (accept, ok.stderr)
            why = "known" if accept == ["--accept-known"] else "ignored"
            assert f"; 1 accepted; accepted differences: [IP].ttl ({why}) 1" in ok.stderr
        # another field's name accepts nothing
        other = diff(str(src), *SERVICE, "--cilium-src", str(cilium_source.path),
                     "--ignore-field", "tos")
        assert other.returncode == 1


def test_frames_dropped_by_both_and_by_one_only(cilium_source: CiliumSource,
                                                tmp_path: Path) -> None:
    require_root()
    src = pcap(tmp_path, jumbo_syn(), later_fragment(), big_ack(), bad_ihl_syn())
    proc = diff(str(src), *SERVICE, "--cilium-src", str(cilium_source.path), "--json")
    assert proc.returncode == 1, proc.stderr
    lines = records(proc.stdout)
    frames, [summary] = lines[:4], lines[4:]
    assert [(r["frame"], r["kind"]) for r in frames] == [
        (1, "dropped_by_both"), (2, "dropped_by_both"), (3, "dropped_by_cilium"),
        (4, "dropped_by_lab")]
    lab = [r["lab"] for r in frames]
    cilium = [r["cilium"] for r in frames]
    assert [x["verdict"] for x in lab] == ["drop", "drop", "ok", "drop"]  # type: ignore[index]
    assert [x["reason"] for x in lab] == [  # type: ignore[index]
        "frag_needed", "frag_not_found", None, "bad_ihl"]
    assert [x["verdict"] for x in cilium] == ["drop", "drop", "drop", "ok"]  # type: ignore[index]
    assert [x["reason"] for x in cilium[1:3]] == [  # type: ignore[index]
        "DROP_FRAG_NOT_FOUND", "DROP_NO_FIB"]
    assert summary["summary"] is True
    assert summary["kinds"] == {"unchanged": 0, "equal": 0, "accepted": 0, "different": 0,
                                "dropped_by_lab": 1, "dropped_by_cilium": 1,
                                "dropped_by_both": 2}
    assert summary["drops_by_one_only"] == {"lab:bad_ihl": 1, "cilium:DROP_NO_FIB": 1}
    # the frames both drop agree: exit 0
    alone = pcap(tmp_path, jumbo_syn(), later_fragment())
    assert diff(str(alone), *SERVICE, "--cilium-src", str(cilium_source.path)).returncode == 0


def test_cilium_puts_the_dsr_option_on_a_later_fragment(cilium_source: CiliumSource,
                                                        tmp_path: Path) -> None:
    """A finding of the differential fuzz, on both versions: a later fragment (no TCP
    header) of a datagram whose first fragment went through, with a SYN bit in its
    payload where the flags would be. Cilium translates it from its fragment map and
    its dsr_set_opt4 reads that byte as the flags: the option goes on the fragment. The
    lab's datapath translates it without (no L4 header, no flags)."""
    require_root()
    first = bytes(ETH / IP(src=CLIENT_IP, dst=VIP, id=4242, flags="MF", proto=6)
                  / bytes(TCP(sport=40000, dport=NODE_PORT, flags="S", chksum=0x1234)
                          / (b"a" * 12)))
    later = bytes(ETH / IP(src=CLIENT_IP, dst=VIP, id=4242, frag=4, proto=6)
                  / (bytes(13) + b"\x02" + bytes(18)))
    proc = diff(str(pcap(tmp_path, first, later)), *SERVICE, "--cilium-src",
                str(cilium_source.path), "--accept-known", "--json")
    assert proc.returncode == 1, proc.stderr
    lines = records(proc.stdout)
    assert [r["kind"] for r in lines[:2]] == [
        "equal" if cilium_source.version.at_least(1, 16) else "accepted", "different"]
    fields = {f["field"]: f for f in lines[1]["fields"]}  # type: ignore[union-attr]
    assert fields["[DSR].service"]["lab"] is None
    assert fields["[DSR].service"]["cilium"] == f"{VIP}:{NODE_PORT}"
    assert (fields["[IP].ihl"]["lab"], fields["[IP].ihl"]["cilium"]) == ("5", "7")
    assert lines[1]["lab"]["verdict"] == lines[1]["cilium"]["verdict"] == "redirect"  # type: ignore[index]


def test_both_versions_from_one_folder_by_default(tmp_path: Path) -> None:
    """No --cilium-src: $DSRLAB_CILIUM_SRC, a folder of tarballs: each is compared."""
    require_root()
    where = os.environ.get("DSRLAB_CILIUM_SRC", "")
    if not where or not Path(where).is_dir():
        pytest.skip("DSRLAB_CILIUM_SRC is not a folder of Cilium tarballs")
    proc = diff(str(pcap(tmp_path, tcp_frame("A"))), *SERVICE, "--json")
    summaries = [r for r in records(proc.stdout) if r.get("summary")]
    assert len(summaries) == len(list(Path(where).glob("cilium-*.tar.gz")))


SVC = f"{VIP}:{NODE_PORT}"
BE = f"{POD_IP}:{POD_PORT}"


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}/nothing.pcap", "--service", SVC, "--backend", BE],
     "{tmp}/nothing.pcap: does not exist"),
    (["{pcap}", "--backend", BE], "give --service VIP:PORT and --backend IP:PORT"),
    (["{pcap}", "--service", SVC, "--backend", BE, "--backend", f"{POD2_IP}:{POD_PORT}"],
     "Cilium picks among several backends at random: give one --backend so both "
     "datapaths send to the same one"),
    (["{pcap}", "--service", "nonsense", "--backend", BE], None),
    (["{pcap}", "--service", SVC, "--backend", BE, "--cilium-src", "{tmp}/none"],
     "Cilium source {tmp}/none: no such file or folder"),
    (["{tmp}/empty.pcap", "--service", SVC, "--backend", BE],
     "{tmp}/empty.pcap: no frames to feed"),
    (["{tmp}/x.pcap", "--service", SVC, "--backend", BE], "{tmp}/x.pcap: "),
    (["{pcap}", "--service", SVC, "--backend", BE, "--output-dir", "{pcap}"],
     "--output-dir {pcap}: not a folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                          message: str | None) -> None:
    where = os.environ.get("DSRLAB_CILIUM_SRC", "")
    if not where:
        pytest.skip("no Cilium source: set DSRLAB_CILIUM_SRC")
    names = {"pcap": str(pcap(tmp_path, tcp_frame("S"))), "tmp": str(tmp_path)}
    with PcapWriter(tmp_path / "empty.pcap"):
        pass
    (tmp_path / "x.pcap").write_text("hello, not a capture\n")
    proc = diff(*[a.format(**names) for a in args], src=where)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    if message is None:  # Typer's own usage error, several lines
        assert "Invalid value for '--service'" in proc.stderr
    else:
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"error: {message.format(**names)}")
    assert proc.stdout == ""
    assert not (tmp_path / "lab.pcap").exists()
