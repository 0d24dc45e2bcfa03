"""``dsrlab datapath run`` and the program-level checks it makes cheap.

Three layers, Cilium's bpf/tests style throughout (build packets with scapy,
fill maps, run the real program with BPF_PROG_TEST_RUN, assert on bytes):

* the library pieces that need no kernel: the run config, the seeded-selection
  mirror (endpoint parsing and pcap files: tests/wire);
* unit tests of the programs for what test_lb_path.py and its siblings do not cover:
  seeded selection, the redirect target in the run context, UDP replies, a
  retransmitted SYN;
* the command itself on pcaps, as a user runs it (a subprocess): the seed's
  service and other addresses, LB then backend, the Cilium 1.14 options rule,
  --seed, --repeat, --mtu, drops and kernel-refused frames, and bad arguments.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP, IPOption_RR, in4_chksum
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw
from scapy.utils import rdpcap, wrpcap

from lab.datapath import BackendEntry
from lab.datapath.runner import (
    DatapathRunner,
    RunConfig,
    ipv4_source,
    run_pcap,
)
from lab.datapath.selection import Flow, flow_hash, mix32, seeded_slot
from lab.plumbing import nsutil
from lab.plumbing.names import docker_mac
from lab.wire import dsropt
from lab.wire.checksum import checksum, csum_ok
from lab.wire.endpoint import Endpoint
from lab.wire.pcapio import PcapWriter, read_frames
from tests.datapath.frames import udp_fragments
from tests.seed import (
    BACKEND_ADDRS,
    CLIENT_IP,
    CLIENT_MAC,
    CLIENT_PORT,
    LB_MAC,
    NODE_PORT,
    OPTION,
    POD2_IP,
    POD_ADDR,
    POD_IP,
    POD_PORT,
    REPO,
    SERVICE_ADDR,
    VIP,
)

bpf = [pytest.mark.bpf, pytest.mark.netns]


# --- helpers ---------------------------------------------------------------------------


def eth(pkt: Packet) -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=LB_MAC) / pkt)


def tcp(flags: str = "S", *, src: str = CLIENT_IP, dst: str = VIP, sport: int = CLIENT_PORT,
        dport: int = NODE_PORT, options: Sequence[object] = (), payload: bytes = b"") -> bytes:
    pkt = IP(src=src, dst=dst, ttl=64, id=9, options=list(options)) / TCP(
        sport=sport, dport=dport, flags=flags, seq=1000, ack=1 if "A" in flags else 0)
    return eth(pkt / Raw(payload) if payload else pkt)


def udp(payload: bytes = b"ping", *, src: str = CLIENT_IP, dst: str = VIP, sport: int = 5353,
        dport: int = NODE_PORT) -> bytes:
    return eth(IP(src=src, dst=dst, ttl=64) / UDP(sport=sport, dport=dport) / Raw(payload))


def checksums_valid(frame: bytes) -> bool:
    """IPv4 header checksum, and TCP/UDP over the pseudo-header (scapy's in4_chksum)."""
    ip = Ether(frame)[IP]
    hlen = ip.ihl * 4
    if not csum_ok(frame[14 : 14 + hlen]):
        return False
    l4 = frame[14 + hlen : 14 + ip.len]
    if ip.proto == 17 and l4[6:8] == b"\0\0":
        return True
    return bool(in4_chksum(ip.proto, ip, l4) == 0)


def splice_option(frame: bytes, opt: bytes) -> bytes:
    """``frame`` (IHL 5) with ``opt`` as its first IP option, header checksum fixed."""
    pkt = Ether(frame)
    ip = pkt[IP]
    body = bytes(ip)[ip.ihl * 4 :]
    hdr = bytearray(bytes(ip)[:20] + opt)
    hdr[0] = 0x40 | (len(hdr) // 4)
    hdr[2:4] = (len(hdr) + len(body)).to_bytes(2, "big")
    hdr[10:12] = b"\0\0"
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    return frame[:14] + bytes(hdr) + body


def dsrlab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=REPO,
                          env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def run_cli(tmp: Path, frames: Sequence[bytes], *, program: str = "lb",
            service: str = SERVICE_ADDR, backends: Sequence[str] = BACKEND_ADDRS,
            extra: Sequence[str] = (), name: str = "in") -> tuple[list[dict[str, object]],
                                                                  list[bytes], str]:
    """Write ``frames`` to a pcap, run the command with --json; (records, output frames,
    stderr)."""
    src, dst = tmp / f"{name}.pcap", tmp / f"{name}.out.pcap"
    with PcapWriter(src) as w:
        for i, frame in enumerate(frames):
            w.write(frame, 1_700_000_000_000_000_000 + i * 1000)
    args = ["datapath", "run", "--program", program, "--service", service]
    for b in backends:
        args += ["--backend", b]
    out = dsrlab(*args, "--input", str(src), "--output", str(dst), "--json", *extra)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    return records, [f.data for f in read_frames(dst)], out.stderr


# --- no kernel needed ----------------------------------------------------------------


def test_run_config_validates() -> None:
    svc, be = Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, POD_PORT),)
    with pytest.raises(ValueError, match="at least one backend"):
        RunConfig("lb", svc, ())
    with pytest.raises(ValueError, match="repeat"):
        RunConfig("lb", svc, be, repeat=0)
    with pytest.raises(ValueError, match="seed"):
        RunConfig("lb", svc, be, seed=1 << 32)
    with pytest.raises(ValueError, match="program"):
        RunConfig("xdp", svc, be)  # type: ignore[arg-type]
    for bad in (-1, 67, 65536):
        with pytest.raises(ValueError, match="mtu"):
            RunConfig("lb", svc, be, mtu=bad)
    assert RunConfig("lb", svc, be).mtu == 1500
    assert RunConfig("lb", svc, be, mtu=0).mtu == 0


def test_ipv4_source() -> None:
    assert ipv4_source(tcp("SA", src=POD_IP, dst=CLIENT_IP)) == POD_IP
    assert ipv4_source(bytes(Ether() / ARP())) is None
    assert ipv4_source(tcp("S")[:20]) is None


def test_selection_mirror_is_a_proper_hash() -> None:
    assert mix32(0) == 0
    assert mix32(1) != mix32(2)
    flow = Flow(CLIENT_IP, VIP, CLIENT_PORT, NODE_PORT, 6)
    assert flow_hash(1, flow) != flow_hash(2, flow)
    assert flow_hash(1, flow) != flow_hash(1, flow._replace(proto=17))
    slots = [seeded_slot(7, 2, flow._replace(sport=p)) for p in range(41000, 41400)]
    assert 150 < slots.count(0) < 250  # spread over both backends
    with pytest.raises(ValueError, match="at least one backend"):
        seeded_slot(7, 0, flow)


# --- program-level unit tests (BPF_PROG_TEST_RUN, no CLI) -----------------------------


@pytest.fixture
def runner(obj_path: Path) -> Iterator[DatapathRunner]:
    """The runner's scratch namespace and object, configured for the seed (not seeded)."""
    config = RunConfig("lb", Endpoint(VIP, NODE_PORT),
                       (Endpoint(POD_IP, POD_PORT), Endpoint(POD2_IP, POD_PORT)))
    with DatapathRunner(config, obj_path) as r, r.inside():
        yield r


def lb_run(r: DatapathRunner, frame: bytes, program: str = "dsr_from_netdev"
           ) -> tuple[str, bytes, int | None]:
    res = r.datapath.test_run(program, frame, ifindex=r.ifindex)
    return res.verdict, res.data, res.redirect_ifindex


@pytest.mark.bpf
@pytest.mark.netns
def test_redirect_target_is_in_the_run_context(runner: DatapathRunner) -> None:
    verdict, out, target = lb_run(runner, tcp("S"))
    assert verdict == "redirect"
    assert target == runner.ifindex
    assert runner.ifnames[runner.ifindex] == "eth0"
    pkt = Ether(out)
    assert pkt.src == LB_MAC
    assert pkt.dst == docker_mac(pkt[IP].dst)  # the permanent neighbour of the chosen backend
    assert runner.datapath.counters()["fib_redirect"] == 1


@pytest.mark.bpf
@pytest.mark.netns
def test_seeded_selection_matches_the_python_mirror(runner: DatapathRunner) -> None:
    dp = runner.datapath
    assert dp.selection_seed() is None
    dp.set_selection_seed(12345)
    dp.set_option_order("network")  # the two config fields do not clobber each other
    assert dp.selection_seed() == 12345
    dp.set_option_order("host")
    assert dp.selection_seed() == 12345
    backends = (POD_IP, POD2_IP)
    for sport in range(41000, 41064):
        lb_run(runner, tcp("S", sport=sport))
        lb_run(runner, udp(sport=sport))
    for e in dp.ct_entries():
        proto = 6 if e.proto == "tcp" else 17
        flow = Flow(CLIENT_IP, VIP, e.client_port, NODE_PORT, proto)
        want = backends[seeded_slot(12345, 2, flow)]
        assert e.backend_ip == want, e
    assert {e.backend_ip for e in dp.ct_entries()} == set(backends)
    dp.set_selection_seed(None)
    assert dp.selection_seed() is None
    with pytest.raises(ValueError, match="seed"):
        dp.set_selection_seed(-1)


@pytest.mark.bpf
@pytest.mark.netns
def test_retransmitted_syn_still_gets_the_option(runner: DatapathRunner) -> None:
    """A SYN whose flow is in CT (a retransmission) is DSR'd again, to the same backend."""
    first = Ether(lb_run(runner, tcp("S"))[1])
    verdict, out, _ = lb_run(runner, tcp("S"))
    assert verdict == "redirect"
    assert out[34:42] == OPTION
    assert Ether(out)[IP].dst == first[IP].dst
    assert checksums_valid(out)
    counters = runner.datapath.counters()
    assert (counters["ct_new"], counters["ct_hit"], counters["opt_inserted"]) == (1, 1, 2)


@pytest.mark.bpf
@pytest.mark.netns
@pytest.mark.parametrize("zero_csum", [False, True], ids=["udp-csum", "udp-no-csum"])
def test_udp_reply_is_rewritten_with_valid_checksums(obj_path: Path, zero_csum: bool) -> None:
    config = RunConfig("backend", Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, 53),))
    with DatapathRunner(config, obj_path) as r, r.inside():
        opt_frame = splice_option(udp(b"q", dst=POD_IP, dport=53), OPTION)
        assert r.run(opt_frame).verdict == "ok"
        assert r.datapath.counters()["backend_learned"] == 1
        reply = bytearray(udp(b"answer", src=POD_IP, dst=CLIENT_IP, sport=53, dport=5353))
        if zero_csum:
            reply[40:42] = b"\0\0"
        res = r.run(bytes(reply))
        assert (res.program, res.verdict) == ("dsr_to_netdev", "ok")
        assert res.data is not None
        pkt = Ether(res.data)
        assert (pkt[IP].src, pkt[UDP].sport) == (VIP, NODE_PORT)
        assert (pkt[IP].dst, pkt[UDP].dport) == (CLIENT_IP, 5353)
        assert pkt[Raw].load == b"answer"
        assert checksums_valid(res.data)
        if zero_csum:
            assert res.data[40:42] == b"\0\0"


# --- the command on pcaps ----------------------------------------------------------------


def seed_session(sport: int = CLIENT_PORT) -> list[bytes]:
    """What the LB node receives for one curl: SYN, ACK, request, FIN, ACK."""
    return [tcp("S", sport=sport), tcp("A", sport=sport),
            tcp("PA", sport=sport, payload=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            tcp("FA", sport=sport), tcp("A", sport=sport)]


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_lb_on_the_seed_service(tmp_path: Path) -> None:
    broken_ihl = bytearray(tcp("S", sport=40001))
    broken_ihl[14] = 0x43
    frames = [*seed_session(), udp(b"one"), udp(b"two"), bytes(broken_ihl),
              bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT_IP, pdst=VIP)),
              tcp("S")[:20]]
    records, out, stderr = run_cli(tmp_path, frames, extra=["--seed", "1"])

    assert [r["index"] for r in records] == list(range(len(frames)))
    for r in records:
        assert {"index", "verdict", "length", "redirect", "reason"} <= r.keys()
    verdicts = [r["verdict"] for r in records]
    assert verdicts == ["redirect"] * 7 + ["drop", "ok", "rejected"]
    assert all(r["redirect"] == "eth0" for r in records[:7])
    assert records[7]["reason"] == "bad_ihl"
    assert records[9]["reason"] == "kernel_refused"
    assert [r["reason"] for r in records[:7]] == [None] * 7
    assert len(out) == 8  # one per packet not dropped (nor refused), in order
    assert [r["length"] for r in records[:7]] + [records[8]["length"]] == [len(f) for f in out]
    assert "10 packets (drop 1, ok 1, redirect 7, rejected 1); 8 written" in stderr

    syn, ack, req, fin, ack2, u1, u2, arp = out
    backend = Ether(syn)[IP].dst
    assert backend in (POD_IP, POD2_IP)
    # the SYN: option right after the base header, IHL 7, tot_len + 8, checksums valid
    assert syn[34:42] == OPTION
    assert Ether(syn)[IP].ihl == 7
    assert Ether(syn)[IP].len == Ether(frames[0])[IP].len + 8
    assert (Ether(syn)[IP].src, Ether(syn)[TCP].sport) == (CLIENT_IP, CLIENT_PORT)
    assert Ether(syn)[TCP].dport == POD_PORT
    for frame in (ack, req, fin, ack2):  # later packets: same backend, DNAT only
        pkt = Ether(frame)
        assert (pkt[IP].ihl, pkt[IP].dst, pkt[TCP].dport) == (5, backend, POD_PORT)
    assert Ether(req)[Raw].load.startswith(b"GET /")
    for frame in (u1, u2):  # every UDP datagram carries the option
        assert frame[34:42] == OPTION
        assert Ether(frame)[IP].ihl == 7
    assert all(checksums_valid(f) for f in out[:7])
    assert arp == frames[8]


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_lb_then_backend_on_other_addresses(tmp_path: Path) -> None:
    """Another service and pod network end to end: the LB's output teaches the backend."""
    vip, nport, pod, pport, client = "192.168.50.10", 30080, "10.244.1.5", 8443, "198.51.100.7"
    syn = tcp("S", src=client, dst=vip, dport=nport, sport=51000)
    ack = tcp("A", src=client, dst=vip, dport=nport, sport=51000)
    records, lb_out, _ = run_cli(tmp_path, [syn, ack], service=f"{vip}:{nport}",
                                 backends=[f"{pod}:{pport}"], name="lb")
    assert [r["verdict"] for r in records] == ["redirect", "redirect"]
    assert lb_out[0][34:42] == dsropt.encode(vip, nport)
    assert Ether(lb_out[0])[IP].dst == pod

    synack = tcp("SA", src=pod, dst=client, sport=pport, dport=51000)
    data = tcp("PA", src=pod, dst=client, sport=pport, dport=51000, payload=b"hello")
    other = tcp("SA", src=pod, dst="198.51.100.8", sport=pport, dport=51000)
    records, be_out, _ = run_cli(tmp_path, [lb_out[0], synack, lb_out[1], data, other],
                                 program="backend", service=f"{vip}:{nport}",
                                 backends=[f"{pod}:{pport}"], name="be")
    assert [r["program"] for r in records] == ["dsr_from_netdev", "dsr_to_netdev",
                                              "dsr_from_netdev", "dsr_to_netdev",
                                              "dsr_to_netdev"]
    assert [r["verdict"] for r in records] == ["ok"] * 5
    assert be_out[0] == lb_out[0]  # the option is never stripped
    for frame in (be_out[1], be_out[3]):  # replies leave as the service
        pkt = Ether(frame)
        assert (pkt[IP].src, pkt[TCP].sport) == (vip, nport)
        assert (pkt[IP].dst, pkt[TCP].dport) == (client, 51000)
        assert checksums_valid(frame)
    assert Ether(be_out[3])[Raw].load == b"hello"
    assert be_out[4] == other  # a flow it never learned is left alone


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_existing_options_follow_cilium_1_14(tmp_path: Path) -> None:
    fits = [IPOption_RR(routers=["0.0.0.0", "0.0.0.0"]), IPOption_NOP()]  # 12 bytes
    exact = [IPOption_RR(routers=["0.0.0.0"] * 7), IPOption_NOP()]  # 32: 20 + 32 + 8 = 60
    too_long = [IPOption_RR(routers=["0.0.0.0"] * 8), IPOption_NOP()]  # 36: refused
    frames = [tcp("S", sport=41001, options=fits), tcp("S", sport=41002, options=exact),
              tcp("S", sport=41003, options=too_long)]
    records, out, _ = run_cli(tmp_path, frames, backends=[POD_ADDR])
    assert [r["verdict"] for r in records] == ["redirect", "redirect", "drop"]
    assert records[2]["reason"] == "opt_too_long"
    assert len(out) == 2
    for frame, src in zip(out, frames[:2], strict=True):
        existing = src[34 : 14 + Ether(src)[IP].ihl * 4]
        hlen = Ether(frame)[IP].ihl * 4
        assert frame[34:42] == OPTION  # the DSR option goes first
        assert frame[42 : 14 + hlen] == existing  # the packet's own options behind it
        assert hlen == 20 + 8 + len(existing)
        assert checksums_valid(frame)
    assert Ether(out[1])[IP].ihl == 15


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_seed_makes_selection_reproducible(tmp_path: Path) -> None:
    frames = [tcp("S", sport=p) for p in range(42000, 42064)]

    def backends(extra: Sequence[str], name: str) -> list[str]:
        _, out, _ = run_cli(tmp_path, frames, extra=extra, name=name)
        return [Ether(f)[IP].dst for f in out]

    seeded = backends(["--seed", "42"], "a")
    assert backends(["--seed", "42"], "b") == seeded
    assert seeded == [(POD_IP, POD2_IP)[seeded_slot(42, 2, Flow(CLIENT_IP, VIP, p, NODE_PORT))]
                      for p in range(42000, 42064)]
    assert backends(["--seed", "43"], "c") != seeded
    unseeded = backends([], "d")
    assert set(unseeded) == {POD_IP, POD2_IP}  # random: 64 flows on one backend has p = 2**-63


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_repeat_reports_ns_per_packet(tmp_path: Path) -> None:
    backend_syn = splice_option(tcp("S", dst=POD_IP, dport=POD_PORT), OPTION)
    frames = [*seed_session()[:2], backend_syn]
    plain, plain_out, _ = run_cli(tmp_path, frames, extra=["--seed", "3"], name="plain")
    timed, timed_out, stderr = run_cli(tmp_path, frames, extra=["--seed", "3", "--repeat",
                                                                "2000"], name="timed")
    assert timed_out == plain_out  # timing runs on a twin object: results are unchanged
    for p, t in zip(plain, timed, strict=True):
        assert {k: t[k] for k in p} == p
        assert t["repeat"] == 2000
        assert isinstance(t["ns_per_pkt"], int)
        assert t["ns_per_pkt"] > 0
    # the LB rewrites its frame (repeats see the rewritten one); the backend leaves it alone
    assert [t["repeat_same_frame"] for t in timed] == [False, False, True]
    assert "ns/pkt over 2000 repeats" in stderr


def sized_udp(ip_len: int, sport: int = 5353) -> bytes:
    """A UDP datagram to the service whose IPv4 packet (tot_len) is ``ip_len`` bytes."""
    frame = udp(bytes(ip_len - 28), sport=sport)
    assert Ether(frame)[IP].len == ip_len
    return frame


@pytest.mark.bpf
@pytest.mark.netns
def test_runner_sets_the_mtu_on_eth0_and_the_datapath(runner: DatapathRunner) -> None:
    assert runner.datapath.mtu() == 1500
    with nsutil.open_iproute(runner.netns) as ipr:
        assert ipr.get_links(runner.ifindex)[0].get_attr("IFLA_MTU") == 1500


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_mtu(tmp_path: Path) -> None:
    """1500 by default: the option may not grow a packet past it; --mtu moves or disables it."""
    frames = [sized_udp(1492), sized_udp(1500, sport=5354), tcp("A", payload=bytes(1460))]
    records, out, _ = run_cli(tmp_path, frames, extra=["--seed", "1"], name="default")
    assert [(r["verdict"], r["reason"]) for r in records] == [
        ("redirect", None), ("drop", "frag_needed"), ("redirect", None)]
    assert [len(f) for f in out] == [14 + 1500, 14 + 1500]  # grown to the MTU; DNAT only
    assert out[0][34:42] == OPTION
    assert checksums_valid(out[0])

    records, out, _ = run_cli(tmp_path, frames[1:2], extra=["--mtu", "9000"], name="jumbo")
    assert (records[0]["verdict"], records[0]["redirect"]) == ("redirect", "eth0")
    assert len(out[0]) == 14 + 1508

    # no check in the datapath: the packet grows past eth0's 1500, and the FIB
    # lookup then leaves it to the stack
    records, out, _ = run_cli(tmp_path, frames[1:2], extra=["--mtu", "0"], name="off")
    assert (records[0]["verdict"], records[0]["reason"]) == ("ok", None)
    assert len(out[0]) == 14 + 1508

    src = tmp_path / "default.pcap"
    bad = dsrlab("datapath", "run", "--program", "lb", "--service", SERVICE_ADDR,
                 "--backend", POD_ADDR, "--input", str(src),
                 "--output", str(tmp_path / "o.pcap"), "--mtu", "20")
    assert bad.returncode == 2
    assert "Invalid value for '--mtu'" in " ".join(bad.stderr.replace("│", " ").split())


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_fragments_follow_their_datagram_unless_told_not_to(tmp_path: Path) -> None:
    """A 3000-byte datagram in fragments of 1000: every piece DNATed with the option by
    default (Cilium's fragment tracking); --no-fragment-tracking: none, every piece
    dropped (as Cilium without tracking)."""
    frames = [eth(f) for f in udp_fragments(bytes(3000), sport=5353, ip_id=321)]
    records, out, _ = run_cli(tmp_path, frames, extra=["--seed", "1"], name="tracked")
    assert [r["verdict"] for r in records] == ["redirect"] * 4
    assert {Ether(f)[IP].dst for f in out} == {Ether(out[0])[IP].dst} != {VIP}
    assert all(f[34:42] == OPTION for f in out)
    records, out, _ = run_cli(tmp_path, frames, extra=["--seed", "1", "--no-fragment-tracking"],
                              name="untracked")
    assert [(r["verdict"], r["reason"]) for r in records] == [("drop", "frag_nosupport")] * 4
    assert out == []


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_human_output(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(src), [Ether(tcp("S"))])
    out = dsrlab("datapath", "run", "--program", "lb", "--service", SERVICE_ADDR,
                 "--backend", POD_ADDR, "--input", str(src), "--output", str(dst))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "frame 1 dsr_from_netdev: redirect, 62 bytes -> eth0",
        f"  in:  tcp {CLIENT_IP}:{CLIENT_PORT} > {SERVICE_ADDR} [S] ihl=5 len=40 ttl=64",
        f"  out: tcp {CLIENT_IP}:{CLIENT_PORT} > {POD_ADDR} [S] ihl=7 len=48 ttl=63 opt=dsr"]
    assert len(rdpcap(str(dst))) == 1


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_human_output_says_which_packet_is_which(tmp_path: Path) -> None:
    """Each packet by its frame number in the input (tshark's own), what went in and what
    came out, one line each: an ARP frame counts as Wireshark counts it."""
    src, dst = tmp_path / "in.pcap", tmp_path / "out.pcap"
    bad_ihl = bytearray(tcp("A"))
    bad_ihl[14] = 0x44
    wrpcap(str(src), [Ether(tcp("S")), Ether(src=CLIENT_MAC) / ARP(psrc=CLIENT_IP, pdst=VIP),
                      Ether(bytes(bad_ihl)), Ether(udp())])
    out = dsrlab("datapath", "run", "--program", "lb", "--service", SERVICE_ADDR,
                 "--backend", POD_ADDR, "--input", str(src), "--output", str(dst))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    heads = [line for line in lines if not line.startswith("  ")]
    assert [h.split()[1] for h in heads] == ["1", "2", "3", "4"]
    tshark = subprocess.run(["tshark", "-r", str(src), "-T", "fields", "-e", "frame.number",
                             "-e", "frame.protocols"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    assert [row.split("\t")[0] for row in tshark if row] == ["1", "2", "3", "4"]
    assert "arp" in tshark[1]
    assert "udp" in tshark[3]
    assert lines[3:6] == ["frame 2 dsr_from_netdev: ok, 42 bytes",
                          "  in:  ethertype 0x0806 (ARP), 42 bytes",
                          "  out: ethertype 0x0806 (ARP), 42 bytes"]
    assert lines[6:9] == ["frame 3 dsr_from_netdev: drop, 54 bytes (bad_ihl)",
                          "  in:  IPv4, not parsed: IHL 4 < 5",
                          "  out: nothing (drop)"]
    assert lines[9].startswith("frame 4 dsr_from_netdev: redirect")
    assert lines[10] == f"  in:  udp {CLIENT_IP}:5353 > {SERVICE_ADDR} ihl=5 len=32 ttl=64"
    assert lines[11] == f"  out: udp {CLIENT_IP}:5353 > {POD_ADDR} ihl=7 len=40 ttl=63 opt=dsr"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--service", VIP, "--backend", POD_ADDR], 2,
         f"Invalid value for '--service': '{VIP}' is not IP:PORT"),
        (["--service", SERVICE_ADDR, "--backend", f"{POD_IP}:99999"], 2,
         f"Invalid value for '--backend': '{POD_IP}:99999': port '99999' is not in 1..65535"),
        (["--service", SERVICE_ADDR, "--backend", "pod:80"], 2,
         "'pod' is not an IPv4 address"),
        (["--service", SERVICE_ADDR], 2, "Missing option '--backend'"),
    ],
    ids=["service-without-port", "backend-port", "backend-name", "no-backend"],
)
def test_cli_bad_arguments(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    src = tmp_path / "in.pcap"
    wrpcap(str(src), [Ether(tcp("S"))])
    out = dsrlab("datapath", "run", "--program", "lb", *args, "--input", str(src),
                 "--output", str(tmp_path / "o.pcap"))
    assert out.returncode == code
    assert message in " ".join(out.stderr.replace("│", " ").split())


def test_cli_missing_input_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pcap"
    out = dsrlab("datapath", "run", "--program", "lb", "--service", SERVICE_ADDR,
                 "--backend", POD_ADDR, "--input", str(missing),
                 "--output", str(tmp_path / "o.pcap"))
    assert out.returncode == 2
    assert out.stderr == f"error: --input {missing}: does not exist\n"


@pytest.mark.bpf
@pytest.mark.netns
def test_cli_unreadable_input_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_text("not a capture at all\n")
    out = dsrlab("datapath", "run", "--program", "lb", "--service", SERVICE_ADDR,
                 "--backend", POD_ADDR, "--input", str(bad),
                 "--output", str(tmp_path / "o.pcap"))
    assert out.returncode == 1
    assert f"{bad}: at byte offset 0: not a pcap or pcapng file" in out.stderr


@pytest.mark.bpf
@pytest.mark.netns
def test_run_pcap_library(tmp_path: Path, obj_path: Path) -> None:
    """The library call the command wraps: summary, counters, namespace gone afterwards."""
    src = tmp_path / "in.pcap"
    with PcapWriter(src) as w:
        for f in seed_session():
            w.write(f)
    seen: list[int] = []
    config = RunConfig("lb", Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, POD_PORT),), seed=5)
    summary = run_pcap(config, src, tmp_path / "out.pcap", on_packet=lambda r: seen.append(
        r.index), obj_path=obj_path)
    assert seen == [0, 1, 2, 3, 4]
    assert (summary.packets, summary.emitted) == (5, 5)
    assert summary.verdicts == {"redirect": 5}
    assert summary.counters["opt_inserted"] == 1
    assert summary.counters["ct_hit"] == 4
    assert summary.to_json()["median_ns_per_pkt"] is None


@pytest.mark.bpf
@pytest.mark.netns
def test_runner_namespace_lives_for_the_run_only(obj_path: Path) -> None:
    config = RunConfig("backend", Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, POD_PORT),
                                                           Endpoint(POD_IP, 8080)))
    with DatapathRunner(config, obj_path) as r:
        assert nsutil.exists(r.netns)
        assert r.netns.endswith("-dprun")
        with nsutil.open_iproute(r.netns) as ipr:
            routes = {rt.get_attr("RTA_DST") for rt in ipr.get_routes(family=2, table=254)}
        assert POD_IP in routes  # one route for the two backends on one address
        assert [s.backends for s in r.datapath.services()] == [
            (BackendEntry(POD_IP, POD_PORT), BackendEntry(POD_IP, 8080))] * 2
    assert not nsutil.exists(r.netns)
