"""``dsrlab review``: DSR flows and broken-DSR findings in any capture.

Hand-built pcaps (scapy, or bytes written here) for every edge case, the
benchmark's generator checked against tshark, and the session's real seed
capture set (``seed_capture``: root, netns, BPF).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap, wrpcapng

from lab.check.review import (
    ReviewResult,
    plausibility,
    plausible_order,
    review,
    review_paths,
    targets,
)
from lab.wire import dsropt
from lab.wire.pcapread import CaptureFile, PcapError, count_packets
from tests.seed import (
    CLIENT_IP,
    LB_NAME,
    MISREAD_ADDR,
    MISREAD_IP,
    MISREAD_PORT,
    NODE_PORT,
    OPTION,
    OPTION_NETWORK,
    POD2_IP,
    POD_ADDR,
    POD_IP,
    POD_NAME,
    POD_PORT,
    SERVICE_ADDR,
    VIP,
    flow_id,
)

REPO = Path(__file__).resolve().parents[2]


# -- packet builders ----------------------------------------------------------------------


def dsr_syn(sport: int, *, pod: str = POD_IP, order: dsropt.OptionOrder = "host",
            svc: str = VIP, svc_port: int = NODE_PORT, flags: str = "S",
            options: bytes | None = None) -> Packet:
    opt = dsropt.encode(svc, svc_port, order) if options is None else options
    return (Ether() / IP(src=CLIENT_IP, dst=pod, ttl=62, options=[IPOption(opt)])
            / TCP(sport=sport, dport=POD_PORT, flags=flags))


def from_pod(sport: int, *, pod: str = POD_IP, ttl: int = 63, flags: str = "SA") -> Packet:
    return Ether() / IP(src=pod, dst=CLIENT_IP, ttl=ttl) / TCP(sport=POD_PORT, dport=sport,
                                                               flags=flags)


def from_svc(sport: int, *, svc: str = VIP, svc_port: int = NODE_PORT, flags: str = "SA",
             ) -> Packet:
    return Ether() / IP(src=svc, dst=CLIENT_IP, ttl=63) / TCP(sport=svc_port, dport=sport,
                                                              flags=flags)


def to_pod(sport: int, *, pod: str = POD_IP, flags: str = "A") -> Packet:
    return Ether() / IP(src=CLIENT_IP, dst=pod, ttl=62) / TCP(sport=sport, dport=POD_PORT,
                                                              flags=flags)


def to_svc(sport: int, *, flags: str = "A") -> Packet:
    return Ether() / IP(src=CLIENT_IP, dst=VIP) / TCP(sport=sport, dport=NODE_PORT, flags=flags)


def noise(n: int = 5) -> list[Packet]:
    return [Ether() / IP(src="192.168.9.9", dst="192.168.9.10") / UDP(sport=53, dport=5353 + i)
            / Raw(b"x" * 20) for i in range(n)]


def write(tmp_path: Path, name: str, pkts: list[Packet], **kw: object) -> Path:
    path = tmp_path / name
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 1000
    wrpcap(str(path), pkts, **kw)
    return path


def healthy_flow(sport: int, pod: str = POD_IP) -> list[Packet]:
    return [dsr_syn(sport, pod=pod), from_svc(sport), to_pod(sport, pod=pod),
            from_svc(sport, flags="PA"), to_pod(sport, pod=pod, flags="FA"),
            from_svc(sport, flags="FA")]


# -- flows and findings -----------------------------------------------------------------


def test_healthy_flow_is_listed_with_its_service_and_backend(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.pcap", noise(3) + healthy_flow(40000) + noise(2))
    r = review(path)
    assert r.packets == 11
    assert r.option_packets == 1
    [f] = r.flows
    assert (f.proto, str(f.client), str(f.backend)) == ("tcp", flow_id(40000), POD_ADDR)
    assert (str(f.service), f.order, f.order_basis) == (SERVICE_ADDR, "host", "replies")
    assert str(f.other_reading) == MISREAD_ADDR
    assert f.option_hex == OPTION.hex()
    assert f.first_frame == 4
    assert f.first_time == pytest.approx(1_700_000_000.003, abs=1e-6)
    assert (f.rewritten_replies, f.unrewritten_replies, f.to_backend_packets) == (3, 0, 3)
    assert f.status == "rewritten"
    assert r.findings == []


def test_broken_dsr_reply_from_the_pod_address_is_flagged(tmp_path: Path) -> None:
    broken = [dsr_syn(40001), from_pod(40001), to_pod(40001), from_pod(40001, flags="PA")]
    path = write(tmp_path, "broken.pcap", healthy_flow(40000, POD2_IP) + broken)
    r = review(path)
    by_port = {f.client.port: f for f in r.flows}
    assert by_port[40000].status == "rewritten"
    bad = by_port[40001]
    assert bad.status == "not-rewritten"
    assert (bad.unrewritten_replies, bad.rewritten_replies) == (2, 0)
    assert bad.first_unrewritten_frame == 8
    assert bad.first_unrewritten_ttl == 63
    [finding] = r.findings
    assert (finding.kind, finding.severity, finding.frame) == ("not-rewritten", "error", 8)
    assert finding.flow == r.flows.index(bad)
    assert POD_ADDR in finding.message
    assert SERVICE_ADDR in finding.message
    assert r.count("error") == 1


def test_pod_side_reply_depends_on_ttl_and_role(tmp_path: Path) -> None:
    # at the pod the reply leaves with the pod's address and TTL 64: expected there
    path = write(tmp_path, "pod.pcap", [dsr_syn(40000), from_pod(40000, ttl=64)])
    guessed = review(path)
    assert guessed.flows[0].status == "pod-side"
    assert [(x.kind, x.severity) for x in guessed.findings] == [("pod-side-reply", "warning")]
    at_pod = review(path, role="pod")
    assert at_pod.flows[0].status == "pod-side"
    assert at_pod.findings == []
    # the same packets said to be from a node's uplink: broken
    on_node = review(path, role="backend-node")
    assert on_node.flows[0].status == "not-rewritten"
    assert [(x.kind, x.severity) for x in on_node.findings] == [("not-rewritten", "error")]


def test_replies_seen_before_and_after_the_rewrite_are_fine(tmp_path: Path) -> None:
    # tcpdump -i any on the backend node: the pod's veth and the uplink
    path = write(tmp_path, "any.pcap", [dsr_syn(40000), from_pod(40000, ttl=64),
                                        from_svc(40000)])
    [f] = review(path).flows
    assert f.status == "rewritten"
    assert (f.rewritten_replies, f.unrewritten_replies) == (1, 1)
    assert "before the rewrite" in f.note


def test_network_order_option_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path, "net.pcap", [dsr_syn(40000, order="network")])
    r = review(path)
    [f] = r.flows
    assert f.option_hex == OPTION_NETWORK.hex()
    assert (str(f.service), f.order, f.order_basis) == (SERVICE_ADDR, "network", "plausible")
    assert str(f.other_reading) == MISREAD_ADDR
    forced = review(path, order="host").flows[0]
    assert (str(forced.service), forced.order_basis) == (MISREAD_ADDR, "forced")


def test_replies_decide_the_order_over_plausibility(tmp_path: Path) -> None:
    # network reading 192.168.1.5:80 looks better, but replies come from the host reading
    opt = bytes.fromhex("9a080050c0a80105")
    assert plausible_order(opt) == "network"
    host_ip, host_port = dsropt.decode(opt, "host")
    assert (host_ip, host_port) == ("5.1.168.192", 20480)
    path = write(tmp_path, "evidence.pcap", [
        dsr_syn(40000, options=opt), from_svc(40000, svc=host_ip, svc_port=host_port),
        dsr_syn(40001, options=opt),  # no evidence of its own: follows the file
    ])
    flows = review(path).flows
    assert [(str(f.service), f.order, f.order_basis) for f in flows] == [
        ("5.1.168.192:20480", "host", "replies"), ("5.1.168.192:20480", "host", "file")]


def test_lb_node_capture_expects_no_reply(tmp_path: Path) -> None:
    path = write(tmp_path, "lb.pcap", [to_svc(40000, flags="S"), dsr_syn(40000),
                                       to_svc(40000), to_pod(40000)])
    r = review(path)
    [f] = r.flows
    assert f.status == "lb-node"
    assert (f.frontend_packets, f.to_backend_packets) == (1, 2)
    assert f.order_basis == "frontend"
    assert r.findings == []


def test_flow_without_any_reply_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "noreply.pcap", [dsr_syn(40000), to_pod(40000)])
    r = review(path)
    assert r.flows[0].status == "no-reply"
    assert [(x.kind, x.severity, x.frame) for x in r.findings] == [("no-reply", "warning", 1)]


def test_udp_datagrams_each_carry_the_option(tmp_path: Path) -> None:
    opt = dsropt.encode(VIP, 32053)

    def dgram(src: str, dst: str, sport: int, dport: int, o: bytes | None) -> Packet:
        ip = IP(src=src, dst=dst, options=[IPOption(o)]) if o else IP(src=src, dst=dst)
        return Ether() / ip / UDP(sport=sport, dport=dport) / Raw(b"q" * 12)

    path = write(tmp_path, "udp.pcap", [
        dgram(CLIENT_IP, POD_IP, 5000, 53, opt), dgram(VIP, CLIENT_IP, 32053, 5000, None),
        dgram(CLIENT_IP, POD_IP, 5000, 53, opt), dgram(VIP, CLIENT_IP, 32053, 5000, None)])
    r = review(path)
    [f] = r.flows
    assert (f.proto, str(f.service), f.option_packets, f.rewritten_replies) == (
        "udp", f"{VIP}:32053", 2, 2)
    assert r.option_packets == 2
    assert r.findings == []


def test_option_on_a_non_syn_tcp_packet_is_flagged(tmp_path: Path) -> None:
    path = write(tmp_path, "ack.pcap", [dsr_syn(40000), from_svc(40000),
                                        dsr_syn(40000, flags="A"), dsr_syn(40099, flags="A")])
    r = review(path)
    assert len(r.flows) == 1
    assert r.flows[0].option_packets == 2
    kinds = [(x.kind, x.frame, x.flow) for x in r.findings]
    assert kinds == [("option-not-syn", 3, 0), ("option-not-syn", 4, None)]


def test_option_that_is_not_first_or_has_a_bad_length(tmp_path: Path) -> None:
    not_first = b"\x01\x01\x01\x01" + OPTION
    bad_len = b"\x9a\x06\x00\x7d\x02\x00\x01\x01"
    path = write(tmp_path, "opts.pcap", [dsr_syn(40000, options=not_first),
                                         dsr_syn(40001, options=bad_len)])
    r = review(path)
    assert r.flows == []
    assert r.option_packets == 0
    assert [(x.kind, x.frame) for x in r.findings] == [("option-not-first", 1),
                                                      ("option-bad-length", 2)]
    assert "byte 24" in r.findings[0].message


def test_syn_without_option_on_a_dsr_flow_is_flagged(tmp_path: Path) -> None:
    path = write(tmp_path, "resyn.pcap", [dsr_syn(40000), to_pod(40000, flags="S"),
                                          from_svc(40000)])
    r = review(path)
    assert [(x.kind, x.frame) for x in r.findings] == [("syn-without-option", 2)]


# -- file formats -------------------------------------------------------------------------


def _flows(r: ReviewResult) -> list[tuple[str, str, str, str, int]]:
    return [(str(f.client), str(f.backend), str(f.service), f.status, f.first_frame)
            for f in r.flows]


def _mixed() -> list[Packet]:
    return noise(2) + healthy_flow(40000) + [dsr_syn(40001), from_pod(40001)]


def _to_big_endian_pcap(src: bytes) -> bytes:
    """A little-endian microsecond pcap rewritten in big-endian byte order."""
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack_from("<IHHiIII", src, 0)))
    off = 24
    while off < len(src):
        sec, usec, incl, orig = struct.unpack_from("<IIII", src, off)
        out += struct.pack(">IIII", sec, usec, incl, orig) + src[off + 16:off + 16 + incl]
        off += 16 + incl
    return bytes(out)


def _pcapng(frames: list[bytes], endian: str, linktype: int = 1) -> bytes:
    """A pcapng file (SHB, IDB with nanosecond if_tsresol, EPBs) in either byte order."""

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)

    shb = block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = struct.pack(endian + "HH", 9, 1) + b"\x09\0\0\0" + struct.pack(endian + "HH", 0, 0)
    idb = block(1, struct.pack(endian + "HHI", linktype, 0, 0) + opts)
    out = shb + idb
    for i, f in enumerate(frames):
        ts = 1_700_000_000_000_000_000 + i * 1_000_000
        out += block(6, struct.pack(endian + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(f),
                                    len(f)) + f)
    return out


def test_pcapng_input_gives_the_same_review(tmp_path: Path) -> None:
    pkts = _mixed()
    plain = review(write(tmp_path, "a.pcap", pkts))
    ng = tmp_path / "a.pcapng"
    wrpcapng(str(ng), pkts)
    r = review(ng)
    assert r.format == "pcapng"
    assert _flows(r) == _flows(plain)
    assert [f.first_time for f in r.flows] == pytest.approx([f.first_time for f in plain.flows])
    assert [(x.kind, x.frame) for x in r.findings] == [("not-rewritten", 10)]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_either_byte_order_with_nanosecond_timestamps(tmp_path: Path,
                                                             endian: str) -> None:
    path = tmp_path / "e.pcapng"
    path.write_bytes(_pcapng([bytes(p) for p in _mixed()], endian))
    r = review(path)
    plain = review(write(tmp_path, "a.pcap", _mixed()))
    assert _flows(r) == _flows(plain)
    assert r.flows[0].first_time == pytest.approx(1_700_000_000.002, abs=1e-6)


def test_big_endian_pcap(tmp_path: Path) -> None:
    little = write(tmp_path, "le.pcap", _mixed())
    big = tmp_path / "be.pcap"
    big.write_bytes(_to_big_endian_pcap(little.read_bytes()))
    assert big.read_bytes()[:4] == bytes.fromhex("a1b2c3d4")
    assert _flows(review(big)) == _flows(review(little))
    assert review(big).flows[0].first_time == review(little).flows[0].first_time


@pytest.mark.parametrize("layer", ["sll", "sll2", "vlan", "qinq", "raw"])
def test_link_types_and_vlan_tags(tmp_path: Path, layer: str) -> None:
    def l2(p: Packet) -> Packet:
        ip = p[IP]
        if layer == "sll":
            return CookedLinux(proto=0x0800) / ip
        if layer == "sll2":
            return CookedLinuxV2(proto=0x0800) / ip
        if layer == "vlan":
            return Ether() / Dot1Q(vlan=7) / ip
        if layer == "qinq":
            return Ether(type=0x88A8) / Dot1Q(vlan=3) / Dot1Q(vlan=7) / ip
        return ip

    pkts = [l2(p) for p in _mixed()]
    kw: dict[str, object] = {"linktype": 101} if layer == "raw" else {}
    r = review(write(tmp_path, f"{layer}.pcap", pkts, **kw))
    assert _flows(r) == [(flow_id(40000), POD_ADDR, SERVICE_ADDR, "rewritten", 3),
                         (flow_id(40001), POD_ADDR, SERVICE_ADDR,
                          "not-rewritten", 9)]
    assert r.skipped_linktypes == {}


def test_unknown_link_type_is_counted_not_decoded(tmp_path: Path) -> None:
    path = write(tmp_path, "wifi.pcap", [Raw(b"\0" * 40)] * 3, linktype=105)
    r = review(path)
    assert r.flows == []
    assert r.skipped_linktypes == {"linktype 105": 3}


# -- bad input ----------------------------------------------------------------------------


def test_not_a_pcap_names_the_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a capture\n")
    with pytest.raises(PcapError) as exc:
        review(path)
    assert str(path) in str(exc.value)
    assert "at byte offset 0" in str(exc.value)
    assert "not a pcap or pcapng file" in str(exc.value)


@pytest.mark.parametrize(("content", "needle"), [
    (b"", "empty file"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap file header"),
    (b"\x1f\x8b\x08\x00" + b"\0" * 30, "gzip-compressed"),
])
def test_empty_short_and_compressed_files(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(content)
    with pytest.raises(PcapError, match=needle):
        review(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PcapError, match=r"nope\.pcap: does not exist$"):
        review(tmp_path / "nope.pcap")


def test_truncated_file_error_names_the_last_record(tmp_path: Path) -> None:
    good = write(tmp_path, "good.pcap", _mixed()).read_bytes()
    offsets = []
    off = 24
    while off < len(good):
        offsets.append(off)
        off += 16 + struct.unpack_from("<I", good, off + 8)[0]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good[:-10])
    with pytest.raises(PcapError) as exc:
        review(cut)
    assert exc.value.truncated
    assert exc.value.offset == offsets[-1]
    assert f"{cut}: at byte offset {offsets[-1]}:" in str(exc.value)
    assert "longer than" in str(exc.value)
    # with partial=True the packets before the break are reviewed
    r = review(cut, partial=True)
    assert r.truncated_at == offsets[-1]
    assert r.packets == len(offsets) - 1
    assert len(r.flows) == 2
    # a record header cut in half
    half = tmp_path / "half.pcap"
    half.write_bytes(good[:offsets[-1] + 7])
    with pytest.raises(PcapError, match=r"truncated record header \(7 of 16"):
        review(half)


def test_record_longer_than_the_file(tmp_path: Path) -> None:
    data = bytearray(write(tmp_path, "good.pcap", _mixed()).read_bytes())
    struct.pack_into("<I", data, 24 + 8, 0x7FFFFFF0)  # first record claims ~2 GiB
    bad = tmp_path / "huge.pcap"
    bad.write_bytes(bytes(data))
    with pytest.raises(PcapError) as exc:
        review(bad)
    assert exc.value.offset == 24
    assert "record of 2147483632 bytes is longer than" in str(exc.value)


def test_pcapng_structural_errors(tmp_path: Path) -> None:
    good = _pcapng([bytes(p) for p in _mixed()], "<")
    bad_len = bytearray(good)
    struct.pack_into("<I", bad_len, 28 + 4, 13)  # the IDB's length: not a multiple of 4
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(bad_len))
    with pytest.raises(PcapError, match="bad pcapng block length 13") as exc:
        review(path)
    assert exc.value.offset == 28
    path.write_bytes(good[:-6])
    with pytest.raises(PcapError, match="longer than") as exc2:
        review(path)
    assert exc2.value.truncated


# -- plausibility -----------------------------------------------------------------------


SERVICES = [(VIP, NODE_PORT), ("10.96.0.10", 53), ("203.0.113.5", 443),
            ("192.168.1.5", 80), ("52.10.20.30", 8080)]


@pytest.mark.parametrize(("ip", "port"), SERVICES)
def test_plausible_order_recovers_host_order_services(ip: str, port: int) -> None:
    opt = dsropt.encode(ip, port, "host")
    assert plausible_order(opt) == "host"
    assert dsropt.decode(opt, plausible_order(opt)) == (ip, port)


@pytest.mark.parametrize(("ip", "port"), SERVICES)
def test_plausible_order_of_network_order_services(ip: str, port: int) -> None:
    opt = dsropt.encode(ip, port, "network")
    if (ip, port) == ("52.10.20.30", 8080):
        # public address, unremarkable port, both readings score 0: a tie goes to host
        assert plausibility(*dsropt.decode(opt, "host")) == plausibility(ip, port) == 0
        assert plausible_order(opt) == "host"
    else:
        assert plausible_order(opt) == "network"
        assert dsropt.decode(opt, "network") == (ip, port)


def test_plausibility_rules() -> None:
    assert plausibility(VIP, NODE_PORT) == 3
    assert plausibility(MISREAD_IP, MISREAD_PORT) == 1
    assert plausibility("0.1.2.3", 0) == -6
    assert plausibility("224.0.0.1", 443) == -2


# -- against tshark, on the benchmark's generator ----------------------------------------


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_review", REPO / "bench" / "review.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_mix_matches_tshark_and_ground_truth(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("needs tshark")
    bench = _bench_module()
    path = tmp_path / "mix.pcap"
    want = bench.generate(path, packets=80_000, seed=7)
    calls: list[tuple[int, int]] = []
    r = review(path, progress=lambda done, total: calls.append((done, total)))
    assert r.packets == want["packets"] == count_packets(path)
    assert r.option_packets == want["option_packets"]
    assert len(r.flows) == want["dsr_flows"]
    statuses = [f.status for f in r.flows]
    assert statuses.count("not-rewritten") == want["broken_flows"]
    assert statuses.count("no-reply") == want["noreply_flows"]
    assert r.count("error") == want["broken_flows"]
    tshark = subprocess.run(["tshark", "-r", str(path), "-Y", "ip[20:2] == 9a:08",
                             "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, check=True, timeout=300)
    assert len(tshark.stdout.split()) == r.option_packets
    # progress: at least once mid-file (80k > 65536 packets), and done at the end
    size = path.stat().st_size
    assert len(calls) >= 2
    assert calls[-1] == (size, size)
    assert all(0 < d <= size for d, _ in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# -- the CLI ------------------------------------------------------------------------------


def dsrlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO,
                          env={"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def test_cli_table_json_and_exit_codes(tmp_path: Path) -> None:
    ok = write(tmp_path, "ok.pcap", healthy_flow(40000))
    broken = write(tmp_path, "broken.pcap", [dsr_syn(40001), from_pod(40001)])
    out = dsrlab("review", str(ok))
    assert out.returncode == 0, out.stderr
    assert flow_id(40000) in out.stdout
    assert f"{SERVICE_ADDR} (host)" in out.stdout
    assert "rewritten" in out.stdout
    assert "no findings" in out.stdout
    out = dsrlab("review", str(broken))
    assert out.returncode == 1
    assert "not-rewritten" in out.stdout
    assert "Traceback" not in out.stderr
    js = dsrlab("review", str(ok), str(broken), "--json")
    assert js.returncode == 1
    doc = json.loads(js.stdout)
    assert [f["statuses"] for f in doc["files"]] == [{"rewritten": 1}, {"not-rewritten": 1}]
    flow = doc["files"][1]["flows"][0]
    assert flow["service"] == {"ip": VIP, "port": NODE_PORT}
    assert flow["backend"] == {"ip": POD_IP, "port": POD_PORT}
    assert doc["files"][1]["findings"][0]["kind"] == "not-rewritten"
    assert doc["errors"] == []


def test_cli_bad_input_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"GET / HTTP/1.1\r\n\r\n")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(write(tmp_path, "ok.pcap", healthy_flow(40000)).read_bytes()[:-5])
    out = dsrlab("review", str(junk), str(cut))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    text = " ".join(out.stderr.split())
    assert f"{junk}: at byte offset 0: not a pcap or pcapng file" in text
    assert f"{cut}: at byte offset" in text
    assert "--partial" in text
    out = dsrlab("review", str(cut), "--partial", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"][0]["truncated_at"] is not None
    out = dsrlab("review", str(tmp_path))  # a directory without a manifest
    assert out.returncode == 2
    assert "manifest.json" in out.stderr
    out = dsrlab("review", str(junk), "--json")
    assert out.returncode == 2
    assert json.loads(out.stdout)["errors"][0]["offset"] == 0


# -- the real seed captures ---------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.bpf
def test_review_of_the_seed_capture_set(seed_capture: Path) -> None:
    manifest = json.loads((seed_capture / "manifest.json").read_text())
    backends = {f"{b['ip']}:{b['port']}" for b in manifest["backends"]}
    results = review_paths([seed_capture])
    assert all(isinstance(r, ReviewResult) for r in results)
    by_role: dict[str, list[ReviewResult]] = {}
    for r in results:
        assert isinstance(r, ReviewResult)
        assert r.role is not None
        by_role.setdefault(r.role, []).append(r)
    [client] = by_role["client"]
    assert len(client.flows) >= 2
    expected_status = {"client": "rewritten", "lb-node": "lb-node",
                       "backend-node": "rewritten", "pod": "pod-side"}
    for role, rs in by_role.items():
        for r in rs:
            assert r.count("error") == 0, r.findings
            assert r.count("warning") == 0, r.findings
            for f in r.flows:
                assert str(f.service) == SERVICE_ADDR
                assert f.order == "host"
                assert str(f.client.ip) == CLIENT_IP
                assert str(f.backend) in backends
                assert f.status == expected_status[role], (r.point, f)
    # every flow the client saw went through the LB node and reached one backend node
    client_flows = {str(f.client) for f in client.flows}
    [lb] = by_role["lb-node"]
    assert {str(f.client) for f in lb.flows} == client_flows
    assert set().union(*({str(f.client) for f in r.flows} for r in by_role["backend-node"])) \
        == client_flows
    # the option packets: one SYN per flow, at every hop
    assert sum(r.option_packets for r in by_role["backend-node"]) == len(client_flows)


@pytest.mark.netns
@pytest.mark.bpf
def test_cli_review_of_the_seed_capture_set(seed_capture: Path) -> None:
    out = dsrlab("review", str(seed_capture))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"({LB_NAME}/eth0, lb-node)" in out.stdout
    assert f"{SERVICE_ADDR} (host)" in out.stdout
    assert "not-rewritten" not in out.stdout
    # a single pcap beside its manifest gets its role from it
    [t] = targets([seed_capture / f"{POD_NAME}--eth0.pcap"])
    assert (t.role, t.point) == ("pod", f"{POD_NAME}/eth0")
    with CaptureFile(seed_capture / f"{POD_NAME}--eth0.pcap") as cap:
        assert cap.format == "pcap"
