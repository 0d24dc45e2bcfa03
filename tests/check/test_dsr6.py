"""IPv6 DSR and Geneve dispatch, read by every reader: the trace checker, review,
the merged pcapng's comments, the ladder, the capture-set diff, the dissector."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from lab.check import wireshark as ws
from lab.check.capdiff import diff_folders
from lab.check.diagnose import diagnose
from lab.check.review import ReviewResult, review, review_paths
from lab.check.trace.check import check_trace
from lab.check.trace.model import TraceError, parse_trace
from lab.check.trace.results import TraceResult
from lab.pytest_plugin import require_cmd
from lab.report import build_report, merge_pcapng
from lab.wire import dsropt
from lab.wire.packets import read_pcap
from tests.check import synth6
from tests.check.synth6 import Broken

TRACE: dict[str, Any] = {
    "scenario": "dsr6",
    "flows": {
        "start": {"point": {"role": "client"},
                  "match": {"src": "$client", "dst": "$service.ip", "dport": "$service.port",
                            "flags": "S"},
                  "bind": {"eph": "sport"}},
        "bind": [{"point": {"role": "lb-node"},
                  "match": {"src": "$client", "sport": "$eph", "dst": "$backend.ip",
                            "flags": "S"}}],
    },
    "vars": {"backend": {"one_of": "backends"}},
    "claims": [
        {"name": "client", "title": "client", "point": {"role": "client"},
         "expect": [
             {"name": "syn-ack", "src": "$service.ip", "sport": "$service.port",
              "dst": "$client", "dport": "$eph", "flags": "SA"}],
         "never": [{"name": "reply-not-from-service", "dst": "$client", "dport": "$eph",
                    "src": {"not": "$service.ip"}}]},
        {"name": "backend-node", "title": "backend node",
         "point": {"role": "backend-node", "host": "$backend.node"},
         "expect": [
             {"name": "syn-in", "src": "$client", "sport": "$eph", "dst": "$backend.ip",
              "dport": "$backend.port", "flags": "S", "dsr": "$service"},
             {"name": "syn-ack-out", "src": "$service.ip", "sport": "$service.port",
              "dst": "$client", "dport": "$eph", "flags": "SA"}]},
    ],
}


def _verdicts(res: TraceResult) -> dict[str, bool]:
    return {c.name: c.passed for c in res.claims}


def _check(cd: Any, trace: dict[str, Any] = TRACE) -> TraceResult:
    return check_trace(parse_trace(copy.deepcopy(trace)), cd)


# -- the wire: Cilium's bytes -----------------------------------------------------------------


def test_the_ipv6_option_is_ciliums_test_vector() -> None:
    ext = dsropt.encode6("200::", 80)
    assert ext == synth6.DEST_OPT
    assert ext.hex(" ") == ("06 02 1b 14 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 "
                            "00 50 00 00")
    value = dsropt.decode6(ext)
    assert (value.ip, value.port, value.family, value.dispatch) == ("200::", 80, 6, "opt")
    assert str(value) == "[200::]:80"


def test_the_geneve_option_is_ciliums_layout() -> None:
    # class 0x014B, type 0x81 (critical + 1), length in words, address, port, 2 pad bytes
    assert dsropt.encode_geneve("172.18.0.2", 32000) == synth6.GENEVE_OPT4
    v6 = dsropt.encode_geneve("200::", 80)
    assert v6 == synth6.GENEVE_OPT6
    got = dsropt.find_in_geneve_options(bytes.fromhex("0102030100000000") + v6)
    assert got is not None
    assert (got.service, got.family, got.dispatch) == (
        "[200::]:80", 6, "geneve")
    four = dsropt.find_in_geneve_options(synth6.GENEVE_OPT4)
    assert four is not None
    assert (four.service, four.family) == ("172.18.0.2:32000", 4)


def test_the_backend_nodes_syn_carries_the_option_payload_length_plus_24(
        tmp_path: Path) -> None:
    cd = synth6.ipv6_set(tmp_path)
    syn = read_pcap(cd.point("cilium-dsr-worker").file)[0]
    raw = bytes(synth6.with_dest_opt(synth6._p6("100::", "300::", 111, 8080, "S")))
    assert raw[14 + 6] == 60
    assert int.from_bytes(raw[18:20], "big") == 20 + 24
    assert raw[54:78] == synth6.DEST_OPT
    assert syn.family == 6
    assert syn.ip_len == 40 + 44
    assert syn.l4_csum_ok
    value = syn.dsr()
    assert value is not None
    assert (value.service, value.family, value.dispatch, value.raw) == (
        "[200::]:80", 6, "opt", synth6.DEST_OPT)


def test_a_geneve_frame_is_its_inner_packet_with_the_outer_headers(tmp_path: Path) -> None:
    cd = synth6.geneve_set(tmp_path)
    enc = read_pcap(cd.point("cilium-dsr-worker").file)[0]
    assert (enc.src, enc.dst, enc.sport, enc.dport) == ("172.18.0.1", "10.0.2.123", 40000, 80)
    assert enc.outer is not None
    assert (enc.outer.src, enc.outer.dst, enc.outer.dport) == ("172.18.0.2", "172.18.0.3", 6081)
    value = enc.dsr()
    assert value is not None
    assert (value.service, value.dispatch) == ("172.18.0.2:32000", "geneve")
    assert "geneve 172.18.0.2:51234 > 172.18.0.3:6081" in enc.summary()


# -- the trace checker -----------------------------------------------------------------------


@pytest.mark.parametrize("make", [synth6.ipv6_set, synth6.geneve_set])
def test_a_working_flow_passes_every_claim(tmp_path: Path, make: Any) -> None:
    res = _check(make(tmp_path))
    assert _verdicts(res) == {"flows": True, "client": True, "backend-node": True}
    assert len(res.flows) == 1


def test_an_ipv6_flow_is_named_with_brackets(tmp_path: Path) -> None:
    res = _check(synth6.ipv6_set(tmp_path))
    assert [f.id for f in res.flows] == ["[100::]:111"]
    assert res.flows[0].bindings["backend"] == "cni-pod6"


@pytest.mark.parametrize("make", [synth6.ipv6_set, synth6.geneve_set])
def test_a_reply_from_the_pod_fails_with_a_field_diff(tmp_path: Path, make: Any) -> None:
    res = _check(make(tmp_path, Broken(reply_from_pod=True)))
    assert _verdicts(res) == {"flows": True, "client": False, "backend-node": False}
    miss = next(c for v in res.claims for c in v.checks if c.name == "syn-ack-out")
    src = next(d for d in miss.diff if d.field == "[IP].src")
    assert not src.ok
    assert src.got in ("300::", "10.0.2.123")


def test_dispatch_and_family_are_sub_fields_of_dsr(tmp_path: Path) -> None:
    trace = copy.deepcopy(TRACE)
    syn = trace["claims"][1]["expect"][0]
    syn["dsr"] = {"service": "$service", "dispatch": "geneve", "family": 4}
    assert _verdicts(_check(synth6.geneve_set(tmp_path), trace))["backend-node"]
    syn["dsr"] = {"service": "$service", "dispatch": "opt"}
    res = _check(synth6.geneve_set(tmp_path), trace)
    assert not _verdicts(res)["backend-node"]
    miss = next(c for v in res.claims for c in v.checks if c.name == "syn-in")
    dsr = next(d for d in miss.diff if d.field == "[IP].options.dsr")
    assert dsr.expected == "service 172.18.0.2:32000, dispatch opt"
    assert dsr.got == "172.18.0.2:32000 via geneve (IPv4)"


def test_flat_dispatch_family_fields_and_bracketed_literals(tmp_path: Path) -> None:
    (tmp_path / "6").mkdir()
    cd = synth6.ipv6_set(tmp_path / "6")
    trace = copy.deepcopy(TRACE)
    syn = trace["claims"][1]["expect"][0]
    syn.update({"dsr": "[200::]:80", "dsr_dispatch": "opt", "dsr_family": 6, "family": 6,
                "src": "[100::]"})
    assert _verdicts(_check(cd, trace))["backend-node"]
    syn["dsr_family"] = 4
    assert not _verdicts(_check(cd, trace))["backend-node"]
    (tmp_path / "g").mkdir()
    gtrace = copy.deepcopy(TRACE)
    gtrace["claims"][1]["expect"][0].update({"dsr_dispatch": "geneve",
                                             "outer_dst": "172.18.0.3"})
    assert _verdicts(_check(synth6.geneve_set(tmp_path / "g"), gtrace))["backend-node"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"dsr_dispatch": "ipip"}, "dsr_dispatch is opt, geneve or none"),
    ({"dsr_family": 5}, "dsr_family is 4 or 6 or none"),
    ({"dsr": {"service": "$service", "how": "geneve"}}, "one operator per field"),
    ({"src": "[nonsense]"}, "is not an IP address"),
])
def test_a_wrong_sub_field_is_named(spec: dict[str, Any], message: str) -> None:
    trace = copy.deepcopy(TRACE)
    trace["claims"][1]["expect"][0].update(spec)
    with pytest.raises(TraceError, match=r"claims\[1\]\.expect\[0\]") as err:
        parse_trace(trace)
    assert message in str(err.value)


# -- the merged pcapng's comments, read back by tshark ------------------------------------


def _comments(path: Path) -> list[tuple[str, str]]:
    require_cmd("tshark")
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=\t",
                          "-E", "aggregator=|", "-e", "frame.interface_name",
                          "-e", "frame.comment"],
                         check=True, capture_output=True, text=True).stdout
    return [([*line.split("\t"), ""])[:2] for line in out.splitlines()]  # type: ignore[misc]


def test_the_merged_pcapng_says_what_the_ipv6_option_names(tmp_path: Path) -> None:
    cd = synth6.ipv6_set(tmp_path)
    rows = _comments(merge_pcapng(cd, _check(cd)))
    worker = [c for hop, c in rows if hop == "cilium-dsr-worker/eth0"]
    assert worker[0] == ("backend-node/syn-in flow [100::]:111|DSR IPv6 option 0x1b 06 02 1b 14 "
                         "02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 50 00 00 -> "
                         "service [200::]:80")
    assert worker[1] == "backend-node/syn-ack-out flow [100::]:111"


def test_the_merged_pcapng_says_outer_inner_and_the_geneve_option(tmp_path: Path) -> None:
    cd = synth6.geneve_set(tmp_path)
    rows = _comments(merge_pcapng(cd, _check(cd)))
    lb = [c for hop, c in rows if hop == "cilium-dsr-control-plane/eth0"]
    assert lb[1] == ("flows/bind-0 flow 172.18.0.1:40000|encapsulated: geneve "
                     "172.18.0.2:51234 > 172.18.0.3:6081 vni=2; inner tcp 172.18.0.1:40000 > "
                     "10.0.2.123:80 [S]|DSR Geneve option 01 4b 81 02 ac 12 00 02 7d 00 00 00 "
                     "-> service 172.18.0.2:32000")


# -- review ------------------------------------------------------------------------------------


def _worker(tmp_path: Path, make: Any, brk: Broken) -> ReviewResult:
    make(tmp_path, brk)
    return review(tmp_path / f"{synth6.NODE}.pcap", role="backend-node")


_EXPECTED_FLOWS = {
    "ipv6_set": ("[100::]:111", "[300::]:8080", "[200::]:80", "rewritten", "opt", 6, "carrier"),
    "geneve_set": ("172.18.0.1:40000", "10.0.2.123:80", "172.18.0.2:32000", "rewritten",
                   "geneve", 4, "carrier"),
}


@pytest.mark.parametrize("make", [synth6.ipv6_set, synth6.geneve_set])
def test_review_finds_the_flow_and_its_rewritten_reply(tmp_path: Path, make: Any) -> None:
    r = _worker(tmp_path, make, Broken())
    assert [(str(f.client), str(f.backend), str(f.service), f.status, f.dispatch, f.family,
             f.order_basis) for f in r.flows] == [_EXPECTED_FLOWS[make.__name__]]
    assert r.findings == []
    assert r.option_packets == 1


@pytest.mark.parametrize("make", [synth6.ipv6_set, synth6.geneve_set])
@pytest.mark.parametrize("brk", [Broken(reply_from_pod=True), Broken(rst=True)])
def test_review_flags_a_reply_from_the_pods_address(tmp_path: Path, make: Any,
                                                     brk: Broken) -> None:
    r = _worker(tmp_path, make, brk)
    assert [f.status for f in r.flows] == ["not-rewritten"]
    assert [(x.kind, x.severity) for x in r.findings] == [("not-rewritten", "error")]
    pod = "[300::]:8080" if make is synth6.ipv6_set else "10.0.2.123:80"
    svc = "[200::]:80" if make is synth6.ipv6_set else "172.18.0.2:32000"
    assert (f"left the backend with source {pod}, not the service address {svc}"
            in r.findings[0].message)


@pytest.mark.parametrize("make", [synth6.ipv6_set, synth6.geneve_set])
def test_review_flags_a_missing_reply_and_knows_the_lb_node(tmp_path: Path, make: Any) -> None:
    r = _worker(tmp_path, make, Broken(no_reply=True))
    assert [f.status for f in r.flows] == ["no-reply"]
    assert [x.kind for x in r.findings] == ["no-reply"]
    lb = review(tmp_path / f"{synth6.LB}.pcap")  # no role: the client's packets say it
    assert [f.status for f in lb.flows] == ["lb-node"]


def test_review_of_the_capture_set_reads_every_hop(tmp_path: Path) -> None:
    synth6.ipv6_set(tmp_path)
    by_point = {r.point: r for r in review_paths([tmp_path]) if isinstance(r, ReviewResult)}
    assert {p: [f.status for f in r.flows] for p, r in by_point.items()} == {
        "client/br-kind": [], f"{synth6.LB}/eth0": ["lb-node"],
        f"{synth6.NODE}/eth0": ["rewritten"], f"{synth6.POD}/eth0": ["pod-side"]}
    assert by_point["client/br-kind"].ipv6_packets == 3


def test_a_decapsulated_geneve_syn_is_not_a_syn_without_option(tmp_path: Path) -> None:
    # tcpdump -i any on the backend's node: the SYN encapsulated, then decapsulated
    enc = synth6.geneve(synth6._p4(synth6.CLIENT4, synth6.POD4, 40000, 80, "S"))
    inner = synth6._p4(synth6.CLIENT4, synth6.POD4, 40000, 80, "S")
    reply = synth6._p4(synth6.SVC4, synth6.CLIENT4, 32000, 40000, "SA", ttl=63)
    wrpcap(str(tmp_path / "any.pcap"), [enc, inner, reply])
    r = review(tmp_path / "any.pcap")
    assert [f.status for f in r.flows] == ["rewritten"]
    assert r.findings == []


def test_an_ipv6_option_0x1b_of_another_length_is_flagged(tmp_path: Path) -> None:
    bad = bytes.fromhex("06021b12") + bytes(18) + b"\x01\x00"  # length 18, then PadN
    syn = synth6.with_dest_opt(synth6._p6("100::", "300::", 111, 8080, "S"), bad)
    wrpcap(str(tmp_path / "bad.pcap"), [syn])
    r = review(tmp_path / "bad.pcap")
    assert r.flows == []
    assert [x.kind for x in r.findings] == ["option-bad-length"]


# -- diagnose, and dsrlab review on a capture set ---------------------------------------------


@pytest.mark.parametrize(("make", "line"), [
    (synth6.ipv6_set, "backend node cilium-dsr-worker replied from [300::]:8080 instead of "
                      "[200::]:80 although the DSR option reached it (the option said "
                      "[200::]:80): its datapath did not translate the reply"),
    (synth6.geneve_set, "backend node cilium-dsr-worker replied from 10.0.2.123:80 instead of "
                        "172.18.0.2:32000 although the DSR Geneve option reached it (the "
                        "option said 172.18.0.2:32000): its datapath did not translate the "
                        "reply"),
])
def test_diagnose_names_the_untranslated_reply(tmp_path: Path, make: Any, line: str) -> None:
    assert [(d.cause, d.line) for d in diagnose(make(tmp_path, Broken(reply_from_pod=True)))] \
        == [("reply-not-translated", line)]
    (tmp_path / "ok").mkdir()
    assert diagnose(make(tmp_path / "ok")) == []


def test_diagnose_names_the_refusal_with_brackets(tmp_path: Path) -> None:
    got = diagnose(synth6.ipv6_set(tmp_path, Broken(rst=True)))
    assert [(d.cause, d.flows) for d in got] == [("connection-refused", ["[100::]:111"])]


def test_dsrlab_review_of_an_ipv6_set_fails_on_the_pods_address(tmp_path: Path) -> None:
    synth6.ipv6_set(tmp_path, Broken(reply_from_pod=True))
    out = subprocess.run([str(Path(sys.executable).with_name("dsrlab")), "review",
                          str(tmp_path)], capture_output=True, text=True, check=False,
                         env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 1, out.stderr
    assert "[200::]:80 (IPv6 option)" in out.stdout
    assert ("left the backend with source [300::]:8080, not the service address [200::]:80"
            in out.stdout)
    assert f"diagnosis: {tmp_path}: backend node cilium-dsr-worker replied from [300::]:8080" \
        in out.stdout


# -- the Wireshark dissector, in the real tshark -----------------------------------------------


def _tshark(pcap: Path, *args: str) -> str:
    require_cmd("tshark")
    out = subprocess.run(ws.tshark_argv(pcap, *args), capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "Lua: Error" not in out.stderr, out.stderr
    return out.stdout


def test_tshark_decodes_the_ipv6_option(tmp_path: Path) -> None:
    cd = synth6.ipv6_set(tmp_path)
    pcap = cd.point(synth6.NODE).file
    verbose = _tshark(pcap, "-V", "-Y", "dsropt")
    assert "Cilium DSR IPv6 option 0x1b: service [200::]:80" in verbose
    for line in ("Service: [200::]:80", "Service address (IPv6): 200::", "Service port: 80",
                 "Dispatch: opt", "Address family: 6",
                 "Option bytes: 1b140200000000000000000000000000000000500000"):
        assert f"    {line}\n" in verbose, line
    info = _tshark(pcap, "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info")
    rows = [line.split("\t") for line in info.splitlines()]
    assert rows[0][1].endswith(" [DSR [200::]:80]")
    assert all("DSR" not in r[1] for r in rows[1:])  # the reply and the ACK carry nothing
    assert _tshark(pcap, "-Y", "dsropt.service.ipv6 == 200:: && dsropt.service.port == 80",
                   "-T", "fields", "-e", "frame.number").split() == ["1"]


@pytest.mark.parametrize(("option", "shown", "family"), [
    (synth6.GENEVE_OPT4, "172.18.0.2:32000", "4"), (synth6.GENEVE_OPT6, "[200::]:80", "6")],
    ids=["ipv4", "ipv6"])
def test_tshark_decodes_the_geneve_option(tmp_path: Path, option: bytes, shown: str,
                                          family: str) -> None:
    inner = synth6._p4(synth6.CLIENT4, synth6.POD4, 40000, 80, "S")
    enc = synth6.geneve(inner, options=option)
    wrpcap(str(tmp_path / "g.pcap"), [enc])
    verbose = _tshark(tmp_path / "g.pcap", "-V")
    assert f"Cilium DSR Geneve option: service {shown}" in verbose
    assert "    Dispatch: geneve\n" in verbose
    assert f"    Address family: {family}\n" in verbose
    info = _tshark(tmp_path / "g.pcap", "-T", "fields", "-e", "_ws.col.Info",
                   "-e", "dsropt.service", "-e", "dsropt.dispatch")
    assert info.split("\t")[0].endswith(f" [DSR {shown}]")
    assert info.strip().split("\t")[1:] == [shown, "geneve"]


def test_tshark_passes_over_other_geneve_and_ipv6_options(tmp_path: Path) -> None:
    other = bytes.fromhex("01020102") + bytes(8)  # class 0x0102: not Cilium's
    inner = synth6._p4(synth6.CLIENT4, synth6.POD4, 40000, 80, "S")
    bad6 = bytes.fromhex("06021b12") + bytes(18) + b"\x01\x00"  # 0x1b, length 18
    wrpcap(str(tmp_path / "o.pcap"), [
        synth6.geneve(inner, options=other),
        synth6.with_dest_opt(synth6._p6("100::", "300::", 111, 8080, "S"), bad6)])
    assert _tshark(tmp_path / "o.pcap", "-Y", "dsropt") == ""


# -- the ladder report ------------------------------------------------------------------------


class _Svg(HTMLParser):
    """Every SVG ``text`` of a report (class, content) and every arrow's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[tuple[str, str]] = []
        self.arrows: list[dict[str, str]] = []
        self._cls: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "text":
            self._cls = a.get("class", "")
        elif tag == "g" and "arrow" in a.get("class", "").split():
            self.arrows.append(a)

    def handle_data(self, data: str) -> None:
        if self._cls is not None:
            self.texts.append((self._cls, data))
            self._cls = None


def _report(cd: Any) -> tuple[_Svg, str]:
    html = build_report(cd).html.read_text()
    svg = _Svg()
    svg.feed(html)
    return svg, html


def test_the_ladder_draws_an_encapsulated_hop_with_outer_and_inner(tmp_path: Path) -> None:
    svg, html = _report(synth6.geneve_set(tmp_path))
    syn_out = next(a for a in svg.arrows if a["data-from"] == synth6.LB
                   and a["data-to"] == synth6.NODE and a["data-flags"] == "S")
    assert "encap" in syn_out["class"].split()
    assert (syn_out["data-src"], syn_out["data-dst"]) == ("172.18.0.1:40000", "10.0.2.123:80")
    assert (syn_out["data-outer-src"], syn_out["data-outer-dst"]) == ("172.18.0.2", "172.18.0.3")
    assert syn_out["data-dsr"] == "172.18.0.2:32000"
    assert ("outer", "geneve 172.18.0.2 → 172.18.0.3") in svg.texts
    assert ("change", "decapsulated (geneve) · DSR option removed") in svg.texts
    assert "outer:    geneve 172.18.0.2:51234 &gt; 172.18.0.3:6081 vni=2" in html
    assert "DSR Geneve option 01 4b 81 02 ac 12 00 02 7d 00 00 00 → service 172.18.0.2:32000" \
        in html


def test_the_ladder_writes_ipv6_endpoints_with_brackets(tmp_path: Path) -> None:
    svg, html = _report(synth6.ipv6_set(tmp_path))
    assert {a["data-flow"] for a in svg.arrows} == {"[100::]:111"}
    addrs = [t for c, t in svg.texts if c == "addr"]
    assert "[100::]:111 → [200::]:80" in addrs
    assert "[100::]:111 → [300::]:8080" in addrs
    assert "[200::]:80 → [100::]:111" in addrs  # the reply, from the service
    assert ("change", "src was [300::]:8080") in svg.texts
    assert ("change", "dst was [200::]:80") in svg.texts
    syn = next(a for a in svg.arrows if a["data-to"] == synth6.NODE and a["data-flags"] == "S")
    assert syn["data-dsr"] == "[200::]:80"
    assert "→ [200::]:80 → cni-pod6 [300::]:8080 on cilium-dsr-worker" in html
    assert "06 02 1b 14 02 00" in html  # the expected option, the IPv6 header whole


# -- dsrlab diff: two capture sets ------------------------------------------------------------


def _two(tmp_path: Path, make_a: Any, make_b: Any,
         brk_b: Broken = synth6.WORKING) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    make_a(a)
    make_b(b, brk_b)
    return a, b


@pytest.mark.parametrize("make", [synth6.ipv6_set, synth6.geneve_set])
def test_diff_of_two_alike_sets_is_same(tmp_path: Path, make: Any) -> None:
    a, b = _two(tmp_path, make, make)
    d = diff_folders(a, b)
    assert d.same
    assert [r.summary() for r in d.roles] == [
        "client: 3 packets, same", "lb-node: 4 packets, same",
        "backend-node: 3 packets, same", "pod: 3 packets, same"]


def test_diff_finds_the_ipv6_reply_from_the_pod(tmp_path: Path) -> None:
    a, b = _two(tmp_path, synth6.ipv6_set, synth6.ipv6_set, Broken(reply_from_pod=True))
    d = diff_folders(a, b)
    assert not d.same
    node = next(r for r in d.roles if r.role == "backend-node")
    assert node.difference is not None
    assert node.difference.message == ("direction $service:$service-port > $client:$eph vs "
                                       "$backend:$backend-port > $client:$eph")
    # no IHL and no header checksum for IPv6: neither is a row of the table
    assert {f.field for f in node.difference.fields} >= {"direction", "l4_checksum"}
    assert not {"ihl", "ip_checksum"} & {f.field for f in node.difference.fields}


def test_diff_compares_the_encapsulated_hop_outer_and_carrier(tmp_path: Path) -> None:
    a, b = _two(tmp_path, synth6.geneve_set, synth6.ipv6_set)
    node = next(r for r in diff_folders(a, b).roles if r.role == "backend-node")
    assert node.difference is not None
    rows = {f.field: (f.expected, f.got) for f in node.difference.fields}
    assert rows["encap"] == ("geneve $service > 172.18.0.3:6081 vni=2 ttl=64", "")
    assert rows["dsr_option"] == ("$service:$service-port (Geneve)",
                                  "$service:$service-port (IPv6 option)")


def test_an_ipv6_option_cut_off_by_the_snap_length_is_not_a_bad_length(tmp_path: Path) -> None:
    syn = bytes(synth6.with_dest_opt(synth6._p6("100::", "300::", 111, 8080, "S")))
    wrpcap(str(tmp_path / "cut.pcap"), [Ether(syn[:14 + 40 + 10])])  # 10 of its 24 bytes
    r = review(tmp_path / "cut.pcap")
    assert (r.flows, r.findings, r.ipv6_packets) == ([], [], 1)


def test_a_geneve_header_longer_than_its_frame_is_passed_over(tmp_path: Path) -> None:
    enc = bytearray(bytes(synth6.geneve(synth6._p4(synth6.CLIENT4, synth6.POD4, 40000, 80,
                                                   "S"))))
    enc[14 + 20 + 8] = 0x3F  # options: 63 words, far beyond the frame
    wrpcap(str(tmp_path / "long.pcap"), [Ether(bytes(enc))])
    r = review(tmp_path / "long.pcap")
    assert (r.flows, r.findings, r.option_packets) == ([], [], 0)
