"""Expected traces: the seed trace on hand-built captures, each classic DSR
break caught by the claim that should catch it with a per-field diff, and
trace files that are wrong named by file and field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.check.trace import TraceError, TraceResult, check_trace, load_trace, parse_trace
from lab.check.trace.fields import Env, FieldSpec
from lab.wire.packets import from_scapy
from tests.check.synth import Breakage, build
from tests.datapath.frames import udp_fragments
from tests.seed import (
    CLIENT_IP,
    LB_NAME,
    MISREAD_ADDR,
    NODE_NAMES,
    NODE_PORT,
    OPTION_NETWORK,
    POD2_NAME,
    POD_IP,
    POD_NAME,
    POD_NODE,
    POD_PORT,
    SEED_TRACE_PATH,
    SERVICE_ADDR,
    TOPOLOGY,
    VIP,
    flow_id,
)

SEED_TRACE = SEED_TRACE_PATH


def run(tmp: Path, brk: Breakage | None = None, trace: Any = None) -> TraceResult:
    brk = brk or Breakage()
    t = parse_trace(trace, "edited.trace.yaml") if trace is not None else load_trace(SEED_TRACE)
    return check_trace(t, build(tmp, brk))


def verdicts(res: TraceResult) -> dict[str, bool]:
    return {c.name: c.passed for c in res.claims}


def seed_data() -> dict[str, Any]:
    data = yaml.safe_load(SEED_TRACE.read_text())
    assert isinstance(data, dict)
    return data


def test_working_dsr_passes_every_claim_and_binds_each_flow(tmp_path: Path) -> None:
    res = run(tmp_path)
    assert verdicts(res) == {"flows": True, "client-session": True, "lb-node": True,
                             "backend-node": True, "pod": True, "all-backends": True}, \
        res.summary()
    assert [(f.id, f.bindings["eph"], f.bindings["backend"]) for f in res.flows] == [
        (flow_id(40000), 40000, POD_NAME), (flow_id(40001), 40001, POD2_NAME)]
    syn_out = next(c for c in res.claims if c.name == "lb-node").checks[1]
    assert (syn_out.name, syn_out.passed, syn_out.packet) == ("syn-out", True, 2)


@pytest.mark.parametrize(
    ("brk", "failing", "text"),
    [
        (Breakage(lb_sees_reply=True), {"lb-node"},
         f"lb-node/reply-seen at {LB_NAME}/eth0"),
        (Breakage(option=OPTION_NETWORK), {"lb-node", "backend-node", "pod"},
         f"✗ [IP].options.dsr expected {SERVICE_ADDR} got {MISREAD_ADDR} "
         f"(bytes {OPTION_NETWORK.hex(' ')}; network order: {SERVICE_ADDR})"),
        (Breakage(synack_src=POD_IP), {"client-session", "backend-node"},
         f"✗ [IP].src expected {VIP} got {POD_IP}"),
        (Breakage(option_on_ack=True), {"lb-node"}, "lb-node/option-on-non-syn"),
        (Breakage(no_fin=True), {"client-session"}, "client-session/service-fin"),
        (Breakage(client_reset="mid-session"), {"client-session"},
         "client-session/reset at client/br-kind"),
    ],
)
def test_each_break_fails_its_claim_with_a_field_diff(
        tmp_path: Path, brk: Breakage, failing: set[str], text: str) -> None:
    res = run(tmp_path, brk)
    assert {c.name for c in res.claims if not c.passed} == failing
    report = " ".join("\n".join(f.describe() for f in res.failures()).split())
    assert text in report, report


def test_a_reset_after_the_teardown_breaks_no_session(tmp_path: Path) -> None:
    """The client's RST after both FINs answers a stray segment (a loaded host's veth
    reordered a pure ACK past the client's FIN, the backend's TIME_WAIT answered it):
    the seed's ``reset`` rule looks only ahead of the service's FIN."""
    res = run(tmp_path, Breakage(client_reset="after-teardown"))
    assert all(c.passed for c in res.claims), res.summary()
    reset = next(c for c in res.claims if c.name == "client-session").checks[-3]
    assert reset.name == "reset"
    assert re.fullmatch(r"none of \d+ packets ahead of service-fin matched", reset.message)


def test_a_never_rule_before_an_unknown_expectation_is_refused(tmp_path: Path) -> None:
    data = seed_data()
    data["claims"][0]["never"][0]["before"] = "teardown"
    with pytest.raises(TraceError, match=r"claims\[0\]\.never\[0\]\.before: 'teardown' is "
                                         r"not an expectation of claim 'client-session'"):
        run(tmp_path, trace=data)


def test_a_deliberately_broken_expectation_shows_expected_got_per_field(tmp_path: Path) -> None:
    data = seed_data()
    # claim: the SYN+ACK leaves the backend node from the pod's address (it must not)
    data["claims"][2]["expect"][1]["src"] = "$backend.ip"
    data["claims"][2]["expect"][1]["sport"] = "$backend.port"
    res = run(tmp_path, trace=data)
    failure = next(f for f in res.failures() if f.name == "syn-ack-out")
    text = failure.describe()
    assert text.startswith(f"backend-node/syn-ack-out at {POD_NODE}/eth0, flow "
                           f"{flow_id(40000)}: no packet matched")
    assert f"closest packet: frame 2: tcp {SERVICE_ADDR} > {flow_id(40000)} [SA]" in text
    rows = {d.field: d for d in failure.diff}
    assert (rows["[IP].src"].expected, rows["[IP].src"].got, rows["[IP].src"].ok) == (
        POD_IP, VIP, False)
    assert (rows["[L4].sport"].expected, rows["[L4].sport"].got) == (
        str(POD_PORT), str(NODE_PORT))
    assert rows["[TCP].flags"].ok
    assert rows["[IP].options.dsr"].ok  # masked? no: compared, and right (no option)


def test_a_manifest_without_the_service_is_named(tmp_path: Path) -> None:
    capdir = build(tmp_path)
    m = json.loads((tmp_path / "manifest.json").read_text())
    del m["service"]
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(TraceError, match=r"manifest\.json: the trace needs client\.ip, "
                                         r"service\.ip and service\.port"):
        check_trace(load_trace(SEED_TRACE), type(capdir).load(tmp_path))


def test_an_empty_capture_fails_loudly(tmp_path: Path) -> None:
    capdir = build(tmp_path)
    for p in capdir.points:
        wrpcap(str(p.file), [])
    res = check_trace(load_trace(SEED_TRACE), capdir)
    assert not any(c.passed for c in res.claims)
    flows = res.claims[0].checks[0]
    assert flows.message == ("0 flows found (want at least 1); no packet at client/br-kind "
                             "matched the start rule (0 packets in the capture)")


def test_volatile_fields_are_masked_unless_asked(tmp_path: Path) -> None:
    data = seed_data()
    data["claims"][0]["expect"][0]["ttl"] = 7  # now asked: compared
    res = run(tmp_path, trace=data)
    miss = next(f for f in res.failures() if f.name == "syn")
    assert any(d.field == "[IP].ttl" and not d.ok and d.got == "64" for d in miss.diff)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["claims"][1]["expect"][0].update(colour="red"),
         "claims[1].expect[0].colour: unknown field"),
        (lambda d: d["claims"][1]["expect"][0].pop("flags"),
         "claims[1].expect[0]: an expectation compares every field; missing flags"),
        (lambda d: d["claims"][0]["expect"][5].update(after="nope"),
         "claims[0].expect[5].after: 'nope' is not an earlier expectation"),
        (lambda d: d["claims"][1]["expect"][1].update(dst="$backend..ip"),
         "claims[1].expect[1].dst: bad reference"),
        (lambda d: d["claims"][1]["expect"][1].update(flags={"has": "S", "lacks": "A"}),
         "claims[1].expect[1].flags: one operator per field"),
        (lambda d: d["claims"][1]["point"].update(role="router"),
         "claims[1].point.role: Input should be"),
        (lambda d: d.pop("flows"), "flows: Field required"),
    ],
)
def test_a_wrong_trace_names_file_and_field(edit: Any, expected: str) -> None:
    data = seed_data()
    edit(data)
    with pytest.raises(TraceError) as info:
        parse_trace(data, "scenarios/broken.trace.yaml")
    assert str(info.value).startswith("scenarios/broken.trace.yaml: ")
    assert expected in str(info.value)


def test_the_trace_names_no_address_literally() -> None:
    text = SEED_TRACE.read_text()
    subnet_prefix = str(TOPOLOGY.network.subnet.network_address).rsplit(".", 2)[0] + "."
    literals = {subnet_prefix, CLIENT_IP, VIP, POD_IP, str(NODE_PORT), POD_NAME, POD2_NAME,
                *NODE_NAMES, *(str(n.pod_cidr.network_address) for n in TOPOLOGY.nodes)}
    for literal in literals:
        assert literal not in text, literal


def test_ethernet_padding_is_not_payload() -> None:
    syn = bytes(Ether() / IP() / TCP(flags="S"))  # 54 bytes: padded to 60 on a real wire
    padded = from_scapy(Ether(syn + b"\0" * 6), 0)
    assert padded is not None
    assert (padded.payload_len, padded.payload) == (0, b"")
    data = from_scapy(Ether(bytes(Ether() / IP() / TCP(flags="PA") / Raw(b"hello"))), 0)
    assert data is not None
    assert (data.payload_len, data.payload) == (5, b"hello")


def test_a_capture_that_lost_packets_fails_the_run_saying_where(tmp_path: Path) -> None:
    """tcpdump's kernel-drop count in the manifest: the trace fails even though every
    expectation it can see holds, and says which capture is incomplete."""
    from lab.capture.capdir import CaptureDir  # noqa: PLC0415

    capdir = build(tmp_path, Breakage())
    manifest = json.loads((capdir.directory / "manifest.json").read_text())
    manifest["points"][1]["dropped"] = 7
    (capdir.directory / "manifest.json").write_text(json.dumps(manifest))
    res = check_trace(load_trace(SEED_TRACE), CaptureDir.load(capdir.directory))
    assert not res.passed
    (bad,) = [c for c in res.checks() if not c.passed]
    name = manifest["points"][1]["name"]
    assert (bad.name, bad.kind, bad.point) == ("capture-complete", "capture", name)
    assert bad.message.startswith(f"tcpdump at {name} lost 7 packets (dropped by the kernel, "
                                  "or unread when it was stopped)")
    # packets received but never written (tcpdump stopped before it read them) count too
    manifest["points"][1].update(dropped=0, packets=10, received=13)
    (capdir.directory / "manifest.json").write_text(json.dumps(manifest))
    res = check_trace(load_trace(SEED_TRACE), CaptureDir.load(capdir.directory))
    (bad,) = [c for c in res.checks() if not c.passed]
    assert bad.message.startswith(f"tcpdump at {name} lost 3 packets")


def test_fragments_are_read_as_pieces_of_their_datagram() -> None:
    """A first fragment has the ports (its L4 checksum covers the whole datagram, so it
    is not judged here); a later one has no ports, its bytes are the datagram's."""
    pieces = udp_fragments(bytes(3000), sport=40000, ip_id=77, frag_size=1480)
    first, second, last = (from_scapy(Ether(bytes(Ether() / f)), i)
                           for i, f in enumerate(pieces))
    assert first is not None
    assert second is not None
    assert last is not None
    assert (first.sport, first.frag_offset, first.more_fragments, first.l4_csum_ok) == (
        40000, 0, True, None)
    assert (second.sport, second.frag_offset, second.more_fragments, second.payload_len) == (
        None, 1480, True, 1480)
    assert (last.frag_offset, last.more_fragments, last.ip_id) == (2960, False, 77)
    assert "frag=1480+MF" in second.summary()


def test_a_range_may_give_only_its_minimum_or_maximum() -> None:
    pkt = from_scapy(Ether(bytes(Ether() / IP(frag=185, flags="MF", proto=17)
                                 / Raw(bytes(64)))), 0)
    assert pkt is not None
    env = Env({}, {})
    assert FieldSpec("frag_offset", {"min": 1}).check(pkt, env).ok
    assert not FieldSpec("frag_offset", {"max": 1000}).check(pkt, env).ok
    assert FieldSpec("more_fragments", True).check(pkt, env).ok
    with pytest.raises(ValueError, match="one operator per field"):
        FieldSpec("frag_offset", {"min": 1, "not": 2})
