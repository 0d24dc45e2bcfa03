"""The per-run report: ladders derived from captures alone, HTML + Markdown, real Chromium.

Most tests build a capture set by hand (scapy frames written to one pcap per
hop, the way tcpdump saw them in the seed run) so every path of the ladder
derivation is exercised without root; the last ones render the report the
session's real seed run wrote (``seed_capture``, tests/conftest.py) in
headless Chromium.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from lab.capture.layout import Role
from lab.capture.live import CapturePoint
from lab.capture.manifest import Manifest, ManifestBackend, ManifestClient, ManifestService
from lab.check.trace.results import parse_results
from lab.report import build_report, merge_pcapng, model
from lab.report.capset import load_view, own_mac
from lab.report.ladder import find_flows
from tests.capset import run_file, write_capture_set
from tests.seed import (
    CLIENT_IP,
    CLIENT_MAC,
    LB_NAME,
    NODE_MACS,
    NODE_PORT,
    OPTION,
    POD2_IP,
    POD2_NAME,
    POD2_NODE,
    POD_IP,
    POD_NAME,
    POD_NODE,
    POD_PORT,
    SERVICE,
    SERVICE_ADDR,
    VIP,
    flow_id,
)

LB = LB_NAME
MAC = {"client": CLIENT_MAC, **NODE_MACS}
PODS = {  # name: (ip, node, pod eth0 MAC, host-side lxc MAC)
    POD_NAME: (POD_IP, POD_NODE, "e2:c1:3b:41:ce:0d", "8a:36:fe:06:6b:18"),
    POD2_NAME: (POD2_IP, POD2_NODE, "8e:f9:d5:14:5e:88", "66:a8:2f:4d:ca:4c"),
}
POD2_ADDR = f"{POD2_IP}:{POD_PORT}"
POINTS: list[tuple[str, str, Role]] = [("client", "br-kind", "client"), (LB, "eth0", "lb-node"),
          (POD_NODE, "eth0", "backend-node"),
          (POD2_NODE, "eth0", "backend-node"),
          (POD_NAME, "eth0", "pod"), (POD2_NAME, "eth0", "pod")]
FLOW1, FLOW2 = flow_id(40312), flow_id(40320)  # two_flows(): to POD2, then to POD

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


# --------------------------------------------------------------------------- a capture set by hand
@dataclass
class Synth:
    """Frames per capture point, as the seed's tcpdumps would have written them."""

    t: float = 1_795_612_626.0
    step: float = 0.00001  # between two sightings (0: every timestamp ties)
    frames: dict[str, list[Packet]] = field(
        default_factory=lambda: {f"{h}/{i}": [] for h, i, _ in POINTS})

    def see(self, host: str, frame: Packet) -> None:
        self.t += self.step
        frame.time = self.t
        ifname = next(i for h, i, _ in POINTS if h == host)
        self.frames[f"{host}/{ifname}"].append(frame)

    @staticmethod
    def tcp(sport: int, dport: int, flags: str, *, seq: int, ack: int, data: bytes) -> Packet:
        seg = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
        return seg / Raw(data) if data else seg

    def request(self, eph: int, pod: str, flags: str, *, seq: int, ack: int, ip_id: int,
                data: bytes = b"") -> None:
        """Client -> LB node (DNAT, option on a SYN) -> backend node -> pod."""
        pod_ip, node, pod_mac, lxc_mac = PODS[pod]
        seg = self.tcp(eph, NODE_PORT, flags, seq=seq, ack=ack, data=data)
        to_svc = Ether(src=MAC["client"], dst=MAC[LB]) / IP(
            src=CLIENT_IP, dst=VIP, ttl=64, id=ip_id) / seg
        self.see("client", to_svc.copy())
        self.see(LB, to_svc.copy())
        opts = [IPOption(OPTION)] if flags == "S" else []
        seg2 = self.tcp(eph, POD_PORT, flags, seq=seq, ack=ack, data=data)
        dnat = Ether(src=MAC[LB], dst=MAC[node]) / IP(
            src=CLIENT_IP, dst=pod_ip, ttl=63, id=ip_id, options=opts) / seg2
        self.see(LB, dnat.copy())
        self.see("client", dnat.copy())  # the bridge sees node-to-node traffic too
        self.see(node, dnat.copy())
        in_pod = Ether(src=lxc_mac, dst=pod_mac) / IP(
            src=CLIENT_IP, dst=pod_ip, ttl=62, id=ip_id, options=opts) / seg2.copy()
        self.see(pod, in_pod)

    def reply(self, eph: int, pod: str, flags: str, *, seq: int, ack: int, ip_id: int,
              data: bytes = b"", via_lb: bool = False) -> None:
        """Pod -> backend node -> client, rewritten to the service (or, broken, via the LB)."""
        pod_ip, node, pod_mac, lxc_mac = PODS[pod]
        out = Ether(src=pod_mac, dst=lxc_mac) / IP(src=pod_ip, dst=CLIENT_IP, ttl=64, id=ip_id) \
            / self.tcp(POD_PORT, eph, flags, seq=seq, ack=ack, data=data)
        self.see(pod, out)
        seg = self.tcp(NODE_PORT, eph, flags, seq=seq, ack=ack, data=data)
        if via_lb:  # kube-proxy-like: back through the LB node, which un-NATs it
            back = Ether(src=MAC[node], dst=MAC[LB]) / IP(
                src=pod_ip, dst=VIP, ttl=63, id=ip_id) / self.tcp(
                    POD_PORT, eph, flags, seq=seq, ack=ack, data=data)
            self.see(node, back.copy())
            self.see(LB, back.copy())
            fwd = Ether(src=MAC[LB], dst=MAC["client"]) / IP(
                src=VIP, dst=CLIENT_IP, ttl=62, id=ip_id) / seg
            self.see(LB, fwd.copy())
            self.see("client", fwd.copy())
            return
        direct = Ether(src=MAC[node], dst=MAC["client"]) / IP(
            src=VIP, dst=CLIENT_IP, ttl=63, id=ip_id) / seg
        self.see(node, direct.copy())
        self.see("client", direct.copy())

    def session(self, eph: int, pod: str, *, via_lb: bool = False,
                retransmit_syn: bool = False) -> None:
        c, s = 1000 + eph * 7, 9000 + eph * 3  # ISNs
        cid, sid = eph * 10 % 60000, 30000 + eph % 1000
        self.request(eph, pod, "S", seq=c, ack=0, ip_id=cid)
        if retransmit_syn:  # same IP id and seq: only time tells the two SYNs apart
            self.t += 1.0
            self.request(eph, pod, "S", seq=c, ack=0, ip_id=cid)
        self.reply(eph, pod, "SA", seq=s, ack=c + 1, ip_id=0, via_lb=via_lb)
        self.request(eph, pod, "A", seq=c + 1, ack=s + 1, ip_id=cid + 1)
        self.request(eph, pod, "PA", seq=c + 1, ack=s + 1, ip_id=cid + 2,
                     data=b"GET / HTTP/1.1\r\n\r\n")
        self.reply(eph, pod, "PA", seq=s + 1, ack=c + 19, ip_id=sid,
                   data=b"HTTP/1.1 200 OK\r\n\r\nPodName: " + pod.encode(), via_lb=via_lb)
        self.request(eph, pod, "FA", seq=c + 19, ack=s + 40, ip_id=cid + 3)
        self.reply(eph, pod, "FA", seq=s + 40, ack=c + 20, ip_id=sid + 1, via_lb=via_lb)
        self.request(eph, pod, "A", seq=c + 20, ack=s + 41, ip_id=cid + 4)

    def write(self, directory: Path) -> Path:
        frames = {CapturePoint(host, ifname, role): self.frames[f"{host}/{ifname}"]
                  for host, ifname, role in POINTS}
        manifest = Manifest(
            scenario="seed", run_id="5ynth1", backend="netns",
            service=ManifestService(ip=VIP, port=NODE_PORT, name=SERVICE.name, protocol="TCP"),
            client=ManifestClient(ip=CLIENT_IP), topology="topologies/seed.yaml",
            option_byte_order="host",
            backends=[ManifestBackend(name=n, ip=ip, port=POD_PORT, node=node)
                      for n, (ip, node, _, _) in PODS.items()])
        return write_capture_set(directory, frames, manifest, file_name=run_file, counts=True)


def two_flows(directory: Path, **kw: Any) -> Path:
    s = Synth()
    s.session(40312, POD2_NAME, **kw)
    s.session(40320, POD_NAME, **kw)
    return s.write(directory)


def frame_index(directory: Path, point: str, **want: Any) -> int:
    """The frame number (Wireshark's) of the first packet at ``point`` whose fields
    equal ``want``."""
    view = load_view(directory)
    return next(p.frame for p in view.packets[point]
                if all(getattr(p, k) == v for k, v in want.items()))


# --------------------------------------------------------------------------- reading the HTML back
class Dom(HTMLParser):
    """Start tags with their attributes, and the text of each element's <title>."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[dict[str, str]] = []
        self._open: list[dict[str, str]] = []
        self._in_title: dict[str, str] | None = None
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = {"tag": tag, **{k: v or "" for k, v in attrs}}
        self.elements.append(el)
        if tag == "title" and self._open:
            self._in_title = self._open[-1]
        if tag in ("g", "article", "div", "details", "tr", "svg"):
            self._open.append(el)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = None
        if tag in ("g", "article", "div", "details", "tr", "svg") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title is not None:
            self._in_title["title"] = self._in_title.get("title", "") + data

    def select(self, tag: str, cls: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [e for e in self.elements if e["tag"] == tag
                and (cls is None or cls in e.get("class", "").split())
                and all(e.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def arrows(self, **attrs: str) -> list[dict[str, str]]:
        return self.select("g", "arrow", **attrs)


def html_of(directory: Path) -> Dom:
    return Dom((directory / "report.html").read_text())


# --------------------------------------------------------------------------- the ladder, derived
def test_each_flow_is_one_client_connection_with_its_backend(tmp_path: Path) -> None:
    view = load_view(two_flows(tmp_path))
    flows, stray = find_flows(view)
    assert [f.id for f in flows] == [FLOW1, FLOW2]
    assert [f.backend.name if f.backend else None for f in flows] == [POD2_NAME, POD_NAME]
    assert [[c.host for c in f.columns] for f in flows] == [
        ["client", LB, POD2_NODE, POD2_NAME],
        ["client", LB, POD_NODE, POD_NAME]]
    assert [t.name for t in flows[0].trails] == [
        "SYN", "SYN+ACK", "ACK", "PSH+ACK", "PSH+ACK", "FIN+ACK", "FIN+ACK", "ACK"]
    assert stray == []


def test_direction_of_a_sighting_comes_from_the_nodes_own_mac(tmp_path: Path) -> None:
    view = load_view(two_flows(tmp_path))
    assert view.own_mac == {f"{LB}/eth0": MAC[LB],
                            f"{POD_NODE}/eth0": MAC[POD_NODE],
                            f"{POD2_NODE}/eth0": MAC[POD2_NODE]}
    assert own_mac([]) is None


def test_syn_goes_client_lb_backend_pod_with_dnat_and_option(tmp_path: Path) -> None:
    flows, _ = find_flows(load_view(two_flows(tmp_path)))
    syn = flows[0].trails[0]
    assert syn.hosts == ["client", LB, POD2_NODE, POD2_NAME]
    # the LB node saw it twice: in (to the service), out (DNATed, with the option)
    lb_visit = syn.visits[1]
    assert [(s.direction, s.dst, s.pkt.has_dsr_option) for s in lb_visit.sightings] == [
        ("in", SERVICE_ADDR, False), ("out", POD2_ADDR, True)]
    hops = [(h.src, h.dst, h.view.src, h.view.dst, h.changes()) for h in syn.hops]
    assert hops == [
        ("client", LB, FLOW1, SERVICE_ADDR, []),
        (LB, POD2_NODE, FLOW1, POD2_ADDR,
         [f"dst was {SERVICE_ADDR}", "+ DSR option"]),
        (POD2_NODE, POD2_NAME, FLOW1, POD2_ADDR, []),
    ]
    # the bridge's copy of the LB -> node frame is not a sighting "at the client"
    assert [s.host for s in syn.sightings].count("client") == 1


def test_synack_goes_pod_backend_client_and_never_the_lb(tmp_path: Path) -> None:
    flows, _ = find_flows(load_view(two_flows(tmp_path)))
    for flow in flows:
        for trail in (t for t in flow.trails if t.reply):
            assert LB not in trail.hosts, trail.hosts
            last = trail.hops[-1]
            assert (last.dst, last.view.src) == ("client", SERVICE_ADDR)
            assert flow.backend is not None
            assert last.changes() == [f"src was {flow.backend.ip}:{POD_PORT}"]


def test_retransmitted_syn_is_its_own_trail(tmp_path: Path) -> None:
    s = Synth()
    s.session(40400, POD2_NAME, retransmit_syn=True)
    flows, _ = find_flows(load_view(s.write(tmp_path)))
    syns = [t for t in flows[0].trails if t.name == "SYN"]
    assert len(syns) == 2
    assert all(t.hosts == ["client", LB, POD2_NODE, POD2_NAME] for t in syns)
    assert syns[1].time - syns[0].time > 0.9


def test_equal_timestamps_keep_each_packets_hops_in_path_order(tmp_path: Path) -> None:
    """pcaps have microsecond stamps: hops of one packet can tie; requests then go
    client -> pod (the manifest's order of points) and replies pod -> client."""
    s = Synth(step=0.0)
    s.session(40600, POD_NAME)
    flows, _ = find_flows(load_view(s.write(tmp_path)))
    by_name = {t.name: t.hosts for t in flows[0].trails}
    assert by_name["SYN"] == ["client", LB, POD_NODE, POD_NAME]
    assert by_name["SYN+ACK"] == [POD_NAME, POD_NODE, "client"]


def test_a_packet_seen_on_one_host_only_is_a_dot_there(tmp_path: Path) -> None:
    s = Synth()
    s.session(40700, POD2_NAME)
    rst = Ether(src=MAC["client"], dst=MAC[LB]) / IP(src=CLIENT_IP, dst=VIP, id=777) / TCP(
        sport=40700, dport=NODE_PORT, flags="R", seq=5)
    s.see("client", rst)  # the LB node never got it
    directory = s.write(tmp_path)
    results = {"packet_numbers": "frame", "claims": [{"name": "client-session", "checks": [
        {"flow": flow_id(40700), "point": "client/br-kind", "name": "reset", "kind": "never",
         "passed": False, "packet": frame_index(directory, "client/br-kind", flags="R")}]}]}
    (directory / "results.json").write_text(json.dumps(results))
    build_report(directory)
    lone = html_of(directory).select("g", "lone")
    assert len(lone) == 1
    assert (lone[0]["data-host"], lone[0]["data-flags"], lone[0]["data-check"]) == (
        "client", "R", "client-session/reset")
    assert "failed" in lone[0]["class"].split()
    assert "seen only on client" in lone[0]["title"]


def test_replies_through_the_lb_node_are_drawn_through_it(tmp_path: Path) -> None:
    """Not DSR (replies un-NATed by the LB node): the ladder shows what happened."""
    s = Synth()
    s.session(40500, POD2_NAME, via_lb=True)
    directory = s.write(tmp_path)
    flows, _ = find_flows(load_view(directory))
    synack = next(t for t in flows[0].trails if t.name == "SYN+ACK")
    # the hop node -> LB carries no client port, only the packet's identity ties it in
    assert synack.hosts == [POD2_NAME, POD2_NODE, LB, "client"]
    build_report(directory)
    dom = html_of(directory)
    assert dom.arrows(data_flags="SA", data_from=LB, data_to="client")
    assert not dom.arrows(data_flags="SA", data_skips=LB)


# --------------------------------------------------------------------------- the report files
def test_report_without_results_is_drawn_but_not_checked(tmp_path: Path) -> None:
    directory = two_flows(tmp_path)
    files = build_report(directory)
    assert files.status == "NOT CHECKED"
    assert files.html == directory / "report.html"
    assert files.markdown == directory / "report.md"
    dom = html_of(directory)
    assert dom.select("body")[0]["data-status"] == "NOT CHECKED"
    assert "no results.json" in "".join(dom.text)
    assert not dom.select("article", "claim")
    assert "**Not checked**" in files.markdown.read_text()
    # one ladder per flow, every hop an arrow (8 packets: 5 requests x 3 hops + 3 replies x 2)
    ladders = dom.select("svg", "ladder")
    assert [s["data-flow"] for s in ladders] == [FLOW1, FLOW2]
    assert len(dom.arrows(data_flow=FLOW1)) == 5 * 3 + 3 * 2


def test_arrows_carry_hop_flags_addresses_and_the_dsr_option(tmp_path: Path) -> None:
    directory = two_flows(tmp_path)
    build_report(directory)
    dom = html_of(directory)
    flow = FLOW1
    synack = dom.arrows(data_flow=flow, data_flags="SA", data_to="client")
    assert len(synack) == 1
    a = synack[0]
    assert (a["data-from"], a["data-src"], a["data-dst"]) == (
        POD2_NODE, SERVICE_ADDR, FLOW1)
    assert a["data-was-src"] == POD2_ADDR
    assert a["data-skips"] == LB  # drawn over the LB node's lifeline, not through it
    assert "reply" in a["class"].split()
    assert "bypass" in a["class"].split()
    assert f"{POD2_NODE}--eth0.pcap frame" in a["title"]
    assert "client--br-kind.pcap frame" in a["title"]
    # the DNATed SYN: LB node -> backend node, with the option decoded
    dnat = dom.arrows(data_flow=flow, data_flags="S", data_from=LB)
    assert len(dnat) == 1
    assert dnat[0]["data-dsr"] == SERVICE_ADDR
    assert dnat[0]["data-was-dst"] == SERVICE_ADDR
    assert dnat[0]["data-dst"] == POD2_ADDR
    assert "dsr" in dnat[0]["class"].split()
    assert OPTION.hex(" ") in dnat[0]["title"]
    # only SYNs carry the option; no reply arrow touches the LB node
    assert {x["data-flags"] for x in dom.arrows() if "data-dsr" in x} == {"S"}
    assert not [x for x in dom.arrows(data_dir="reply") if LB in (x["data-from"], x["data-to"])]


def _results(directory: Path) -> dict[str, Any]:
    """A results.json by hand: one failing expectation with a diff, one failing never."""
    syn_out = frame_index(directory, f"{LB}/eth0", dst=POD2_IP, flags="S")
    syn_in = frame_index(directory, f"{LB}/eth0", dst=VIP, flags="S")
    synack = frame_index(directory, f"{POD2_NODE}/eth0", flags="SA")
    client_ack = frame_index(directory, "client/br-kind", flags="A", dst=VIP)
    flow = FLOW1
    return {
        "scenario": "seed", "run_id": "5ynth1", "trace": "scenarios/seed.trace.yaml",
        "packet_numbers": "frame", "passed": False,
        "flows": [{"id": flow, "bindings": {"eph": 40312, "backend": POD2_NAME},
                   "passed": False},
                  {"id": FLOW2, "bindings": {"eph": 40320}, "passed": True}],
        "claims": [
            {"name": "lb-node", "title": "LB node eth0: SYN in; SYN out DNATed", "passed": False,
             "checks": [
                 {"flow": flow, "point": f"{LB}/eth0", "name": "syn-in", "kind": "expect",
                  "passed": True, "packet": syn_in, "message": "matched"},
                 {"flow": flow, "point": f"{LB}/eth0", "name": "syn-out", "kind": "expect",
                  "passed": False, "packet": None, "message": "no packet matched",
                  "closest": syn_out, "closest_summary": f"tcp {FLOW1} > {POD2_ADDR}",
                  "diff": [{"field": "[IP].dst", "expected": POD_IP, "got": POD2_IP,
                            "ok": False},
                           {"field": "[TCP].flags", "expected": "S", "got": "S", "ok": True}]},
             ]},
            {"name": "backend-node", "title": "Backend node: SYN+ACK from the service",
             "passed": True,
             "checks": [{"flow": flow, "point": f"{POD2_NODE}/eth0", "name": "synack-out",
                         "kind": "expect", "passed": True, "packet": synack}]},
            {"name": "client-session", "title": "Client: no stray ACK", "passed": False,
             "checks": [{"flow": flow, "point": "client/br-kind", "name": "no-ack",
                         "kind": "never", "passed": False, "packet": client_ack,
                         "message": "a packet that must never appear here"}]},
        ],
    }


def test_failing_checks_show_message_diff_and_mark_the_ladder(tmp_path: Path) -> None:
    directory = two_flows(tmp_path)
    (directory / "results.json").write_text(json.dumps(_results(directory)))
    files = build_report(directory)
    assert files.status == "FAIL"
    dom = html_of(directory)
    assert dom.select("body")[0]["data-status"] == "FAIL"
    claims = {c["data-claim"]: c["data-status"] for c in dom.select("article", "claim")}
    assert claims == {"lb-node": "FAIL", "backend-node": "PASS", "client-session": "FAIL"}
    failing = {c["data-check"] for c in dom.select("div", "check")}
    assert failing == {"lb-node/syn-out", "client-session/no-ack"}
    # the diff table: the mismatching row highlighted, the matching one not
    rows = [r for r in dom.select("tr") if r.get("class") in ("bad", "ok")]
    assert [r["class"] for r in rows] == ["bad", "ok"]
    text = "".join(dom.text)
    assert "no packet matched" in text
    assert POD_IP in text
    # the ladder: matched packets marked, the offender and the closest miss flagged
    flow = FLOW1
    assert dom.arrows(data_flow=flow, data_flags="SA", data_to="client",
                      data_check="backend-node/synack-out")
    assert dom.arrows(data_flow=flow, data_flags="S", data_to=LB, data_check="lb-node/syn-in")
    closest = dom.arrows(data_flow=flow, data_flags="S", data_from=LB)
    assert closest[0]["data-closest"] == "lb-node/syn-out"
    assert "failed" in closest[0]["class"].split()
    offender = dom.arrows(data_check="client-session/no-ack")
    assert len(offender) == 1
    assert "failed" in offender[0]["class"].split()
    # the flows' verdicts come from results.json
    flows = {d["data-flow"]: d["data-status"] for d in dom.select("details", "flow")
             if "data-flow" in d}
    assert flows == {flow: "FAIL", FLOW2: "PASS"}
    md = files.markdown.read_text()
    assert "# dsrlab seed run 5ynth1: FAIL" in md
    assert "| lb-node | **FAIL** | 1/2 |" in md
    assert f"### lb-node/syn-out · flow {FLOW1}" in md
    assert f"| ✗ | [IP].dst | {POD_IP} | {POD2_IP} |" in md


def test_capture_set_without_flows_still_reports(tmp_path: Path) -> None:
    directory = Synth().write(tmp_path)  # every pcap empty
    files = build_report(directory)
    assert files.status == "NOT CHECKED"
    dom = html_of(directory)
    assert not dom.select("svg", "ladder")
    assert f"No flow: no SYN from {CLIENT_IP} to {VIP}:{NODE_PORT}" in "".join(dom.text)
    assert "| flow | backend |" in files.markdown.read_text()


def test_results_json_that_is_not_json_is_reported(tmp_path: Path) -> None:
    directory = two_flows(tmp_path)
    (directory / "results.json").write_text("{not json")
    files = build_report(directory)
    assert files.status == "NOT CHECKED"
    assert "Cannot read results.json" in files.html.read_text()


def test_results_parse_tolerates_missing_fields() -> None:
    r = parse_results({"claims": [{"name": "x", "checks": [{"passed": True}, {}]},
                                  {"name": "y", "evidence": ["ok"], "problems": []}]})
    assert [c.name for c in r.claims] == ["x", "y"]
    assert r.claims[0].passed is False  # derived: one check did not pass
    assert r.claims[1].passed is True
    assert r.claims[1].evidence == ("ok",)
    assert r.passed is False
    assert r.flows == ()
    assert [c.label for c in r.failures()] == ["x/?"]


def test_many_flows_show_the_first_open_and_the_rest_collapsed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "MAX_LADDERS", 5)
    s = Synth()
    for i in range(7):
        s.session(41000 + i, POD2_NAME if i % 2 else POD_NAME)
    directory = s.write(tmp_path)
    build_report(directory)
    dom = html_of(directory)
    details = [d for d in dom.select("details", "flow") if "data-flow" in d]
    assert len(details) == 5  # ladders drawn
    assert ["open" in d for d in details] == [True, True, True, False, False]
    assert len(dom.select("tr")) >= 7  # every flow is in the table
    assert "2 more flows without a ladder" in "".join(dom.text)


def test_report_is_self_contained(tmp_path: Path) -> None:
    directory = two_flows(tmp_path)
    merge_pcapng(directory, None)
    build_report(directory)
    html = (directory / "report.html").read_text()
    dom = Dom(html)
    assert not dom.select("script")
    assert not dom.select("link")
    assert not dom.select("img")
    for el in dom.elements:
        for k in ("src", "href"):
            v = el.get(k, "")
            assert not v.startswith(("http:", "https:", "//")), el
    assert "@import" not in html
    assert "url(http" not in html
    assert "@font-face" not in html
    # links to every pcap and the merged file, relative to the capture dir
    hrefs = {e["href"] for e in dom.select("a") if "href" in e}
    assert {"merged.pcapng", "manifest.json", "report.md", "client--br-kind.pcap"} <= hrefs
    for href in hrefs - {"results.json"}:
        if not href.startswith("#"):
            assert (directory / href).exists(), href


# --------------------------------------------------------------------------- real Chromium
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver at /usr/bin "
                    "(scripts/install.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def render(browser: Any, html: Path) -> None:
    """Open the report, screenshot the whole page next to it (report.png)."""
    browser.set_window_size(1400, 900)
    browser.get(html.resolve().as_uri())
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.set_window_size(1400, min(height + 140, 16000))
    png = html.with_name("report.png")
    assert browser.save_screenshot(str(png))
    assert png.stat().st_size > 20_000


GEOMETRY_JS = """
const out = [];
for (const svg of document.querySelectorAll('svg.ladder')) {
  const cols = {};
  for (const c of svg.querySelectorAll('g.column')) {
    const r = c.querySelector('line.lifeline').getBoundingClientRect();
    cols[c.dataset.host] = r.left + r.width / 2;
  }
  const arrows = [...svg.querySelectorAll('g.arrow')].map(a => {
    const r = a.querySelector('path.line').getBoundingClientRect();
    return {from: a.dataset.from, to: a.dataset.to, flags: a.dataset.flags,
            dir: a.dataset.dir, left: r.left, right: r.right};
  });
  const texts = [...svg.querySelectorAll('text.addr')].map(t => {
    const r = t.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  });
  out.push({flow: svg.dataset.flow, cols, arrows, texts,
            width: svg.getBoundingClientRect().width});
}
return out;
"""


def check_geometry(browser: Any, lb: str) -> None:
    """Arrows end on their hosts' lifelines, replies jump the LB node, labels never overlap."""
    ladders = browser.execute_script(GEOMETRY_JS)
    assert ladders
    for lad in ladders:
        cols = lad["cols"]
        assert lad["width"] > 0
        for a in lad["arrows"]:
            lo, hi = sorted((cols[a["from"]], cols[a["to"]]))
            assert abs(a["left"] - lo) < 12, a
            assert abs(a["right"] - hi) < 12, a
            if a["dir"] == "reply":
                assert lb not in (a["from"], a["to"])
            if a["flags"] == "SA" and a["to"] != a["from"] and cols[a["to"]] < cols[lb]:
                assert a["left"] < cols[lb] < a["right"]  # passes over the LB column
        boxes = lad["texts"]
        for i, (l1, t1, r1, b1) in enumerate(boxes):
            for l2, t2, r2, b2 in boxes[i + 1:]:
                overlap = min(r1, r2) - max(l1, l2) > 1 and min(b1, b2) - max(t1, t2) > 1
                assert not overlap, (lad["flow"], (l1, t1, r1, b1), (l2, t2, r2, b2))


def test_chromium_renders_the_synthetic_report(tmp_path: Path, browser: Any) -> None:
    directory = two_flows(tmp_path)
    (directory / "results.json").write_text(json.dumps(_results(directory)))
    build_report(directory)
    render(browser, directory / "report.html")
    assert browser.find_element(By.ID, "verdict").text == "FAIL"
    bad = browser.find_elements(By.CSS_SELECTOR, "tr.bad td")
    assert bad
    assert bad[0].value_of_css_property("background-color") == "rgba(254, 202, 202, 1)"
    dsr = browser.find_element(By.CSS_SELECTOR, "g.arrow.dsr:not(.failed) path.line")
    assert dsr.value_of_css_property("stroke") == "rgb(234, 88, 12)"
    check_geometry(browser, LB)


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.scenario
def test_real_seed_run_report_in_chromium(seed_capture: Path, seed_capture_copy: Path,
                                          browser: Any) -> None:
    """The report the seed run wrote itself, from its own results.json, in Chromium."""
    # the run wrote every artifact; none is made here (a missing one is the regression)
    for name in ("results.json", "merged.pcapng", "report.html", "report.md"):
        assert (seed_capture / name).is_file(), f"the seed run did not write {name}"
    seed_run = seed_capture_copy  # render() writes report.png beside the page
    results = json.loads((seed_run / "results.json").read_text())
    assert results["passed"] is True
    # rebuilding from the capture set alone gives the run's verdict and the same page
    files = build_report(seed_run)
    assert files.status == "PASS"
    assert files.html.read_text() == (seed_capture / "report.html").read_text()
    render(browser, files.html)
    find = browser.find_elements
    assert browser.find_element(By.ID, "verdict").text == "PASS"
    claims = find(By.CSS_SELECTOR, "article.claim")
    assert claims
    assert {c.get_attribute("data-status") for c in claims} == {"PASS"}
    manifest = json.loads((seed_run / "manifest.json").read_text())
    backend_nodes = {b["node"] for b in manifest["backends"]}
    # every flow's SYN+ACK starts on a backend node, carries the service address
    # and goes straight to the client
    ladders = find(By.CSS_SELECTOR, "svg.ladder")
    assert len(ladders) >= 2
    for svg in ladders:
        flow = svg.get_attribute("data-flow")
        sa = svg.find_elements(By.CSS_SELECTOR, "g.arrow[data-flags='SA'][data-to='client']")
        assert len(sa) == 1, flow
        assert sa[0].get_attribute("data-from") in backend_nodes
        assert sa[0].get_attribute("data-src") == SERVICE_ADDR
        assert sa[0].get_attribute("data-dst") == flow
        assert sa[0].get_attribute("data-skips") == LB
        dnat = svg.find_elements(By.CSS_SELECTOR, f"g.arrow[data-flags='S'][data-from='{LB}']")
        assert [d.get_attribute("data-dsr") for d in dnat] == [SERVICE_ADDR]
    replies = find(By.CSS_SELECTOR, "g.arrow[data-dir='reply']")
    assert replies
    assert not [r for r in replies if LB in (r.get_attribute("data-from"),
                                             r.get_attribute("data-to"))]
    # every packet the trace checker matched is marked on its flow's ladder
    want = {(k["flow"], f"{c['name']}/{k['name']}") for c in results["claims"]
            for k in c["checks"] if k.get("packet") is not None and k.get("flow")}
    drawn = {svg.get_attribute("data-flow") for svg in ladders}
    marked = {(a.get_attribute("data-flow"), label)
              for a in find(By.CSS_SELECTOR, "g.arrow[data-check], g.lone[data-check]")
              for label in a.get_attribute("data-check").split()}
    assert want
    assert {w for w in want if w[0] in drawn} <= marked
    check_geometry(browser, LB)
    assert (seed_run / "report.png").stat().st_size > 50_000


def test_packets_of_no_flow_are_named_by_protocol(tmp_path: Path) -> None:
    """What a real capture holds besides the service's flows (IGMP joins, mDNS) is named,
    not only counted, in report.html and report.md."""
    s = Synth()
    s.session(40900, POD_NAME)
    for host in (POD_NODE, POD2_NODE, LB):  # each node joins a multicast group
        s.see(host, Ether(src=MAC[host]) / IP(src=CLIENT_IP, dst="224.0.0.22", proto=2,
                                              options=[IPOption(b"\x94\x04\x00\x00")])
              / Raw(bytes(8)))
    s.see(LB, Ether(src=MAC[LB]) / IP(src=CLIENT_IP, dst="224.0.0.251")
          / UDP(sport=5353, dport=5353) / Raw(b"q"))
    directory = s.write(tmp_path)
    _, stray = find_flows(load_view(directory))
    assert sorted(x.pkt.proto for x in stray) == ["2", "2", "2", "udp"]
    files = build_report(directory)
    says = ("4 IPv4 packet sightings belong to no flow of the service: 3 IGMP (multicast "
            "group membership reports: a host joining a group), 1 UDP (to 224.0.0.251:5353).")
    assert says in files.markdown.read_text()
    assert says in " ".join(html_of(directory).text)
