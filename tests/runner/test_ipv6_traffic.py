"""An IPv6 run: its manifest holds the IPv6 addresses under the usual names, and
every traffic step speaks IPv6 (curl -6 to [addr]:port, AF_INET6 datagrams and
transfers), on a real dual-stack lab (plain routing: the steps aim at a pod)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.capture.manifest import Manifest, ManifestService
from lab.env.netns import NetnsBackend, NetnsLab
from lab.env.traffic import curl_argv, hostport, http_url
from lab.model.scenario import SCENARIO_DIR, Datagram, Requests, Transfer, load_scenario
from lab.model.topology import Topology
from lab.runner.scenario import run_manifest
from lab.runner.steps import StepContext
from lab.runner.steps.datagram import run as datagram
from lab.runner.steps.requests import run as requests
from lab.runner.steps.transfer import run as transfer

SEED_IPV6 = SCENARIO_DIR / "ipv6" / "seed-ipv6.yaml"


def test_addresses_with_a_port_are_written_in_brackets_in_ipv6() -> None:
    assert hostport("172.18.0.2", 32000) == "172.18.0.2:32000"
    assert hostport("fc00:f853:ccd:e793::2", 32000) == "[fc00:f853:ccd:e793::2]:32000"
    assert http_url("fc00::2", 80, "/bytes/5") == "http://[fc00::2]:80/bytes/5"
    assert "-6" in curl_argv("http://[fc00::2]:80/", 5)
    assert "-4" in curl_argv("http://172.18.0.2:32000/", 5)
    assert ManifestService(ip="fc00::2", port=32000).endpoint == "[fc00::2]:32000"
    assert ManifestService(ip="172.18.0.2", port=32000).endpoint == "172.18.0.2:32000"


def test_a_manifest_without_a_family_reads_as_ipv4(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"scenario": "old"}')
    assert Manifest.read(tmp_path).family == "IPv4"


@pytest.fixture(scope="module")
def ipv6_lab() -> Iterator[tuple[NetnsLab, Topology]]:
    """The dual-stack seed with a UDP port beside the TCP one (its pods echo UDP too)
    and the client's routes to the pods; no datapath."""
    _, topo = load_scenario(SEED_IPV6)
    svc = topo.services[0].model_dump()
    svc.update(protocol="TCP", node_port=None, target_port=None, ports=[
        {"name": "http", "protocol": "TCP", "node_port": 32000, "target_port": 80},
        {"name": "echo", "protocol": "UDP", "node_port": 32000, "target_port": 80}])
    data = topo.model_dump()
    data["services"] = [svc]
    data["client"]["routes_to_pods"] = True
    topo = Topology.model_validate(data).model_copy(update={"source": topo.source})
    with NetnsBackend(datapath=False).up(topo) as lab:
        lab.wait_serving()
        yield lab, topo


@pytest.mark.netns
def test_an_ipv6_runs_manifest_names_the_ipv6_addresses(
        ipv6_lab: tuple[NetnsLab, Topology], tmp_path: Path) -> None:
    lab, topo = ipv6_lab
    sc, _ = load_scenario(SEED_IPV6)
    manifest = run_manifest(sc, topo, lab)
    manifest.write(tmp_path)
    read = Manifest.read(tmp_path)
    assert read.family == "IPv6"
    assert (read.service.ip, read.service.port) == ("fc00:f853:ccd:e793::2", 32000)
    assert read.service.endpoint == "[fc00:f853:ccd:e793::2]:32000"
    assert read.client.ip == "fc00:f853:ccd:e793::1"
    assert sorted((b.name, b.ip, b.port) for b in read.backends) == [
        ("cni-8zxj9", "fd00:10:244:2::7b", 80), ("cni-m7tjc", "fd00:10:244::d8", 80)]
    # the same scenario in IPv4 names the IPv4 ones
    v4 = sc.model_copy(update={"target": sc.target.model_copy(update={"family": "IPv4"})})
    m4 = run_manifest(v4, topo, lab)
    assert (m4.family, m4.service.ip, m4.client.ip) == ("IPv4", "172.18.0.2", "172.18.0.1")


def _ctx(lab: NetnsLab, topo: Topology, protocol: str) -> StepContext:
    """A step context aimed at the pod cni-8zxj9's IPv6 address, port 80."""
    sc, _ = load_scenario(SEED_IPV6)
    pod = topo.pod("cni-8zxj9")
    return StepContext(lab=lab, scenario=sc, topology=topo, ip=str(pod.ip6), port=80,
                       protocol=protocol, deadline=time.monotonic() + 60,
                       say=lambda _m: None, family="IPv6")


@pytest.mark.netns
def test_the_traffic_steps_speak_ipv6(ipv6_lab: tuple[NetnsLab, Topology]) -> None:
    lab, topo = ipv6_lab
    ctx = _ctx(lab, topo, "TCP")
    assert ctx.client_ip == "fc00:f853:ccd:e793::1"
    assert ctx.endpoint == "[fd00:10:244:2::7b]:80"
    out = requests(Requests(min=2, max=2, until_every_backend=False), ctx)
    assert out.ok, out.summary
    assert [e.url for e in out.exchanges] == ["http://[fd00:10:244:2::7b]:80/"] * 2
    assert {e.pod for e in out.exchanges} == {"cni-8zxj9"}
    out = transfer(Transfer(bytes=200_000), ctx)
    assert out.ok, out.summary
    udp = _ctx(lab, topo, "UDP")
    out = requests(Requests(min=2, max=2, until_every_backend=False), udp)
    assert out.ok, out.summary
    assert [e.url for e in out.exchanges] == ["udp://[fd00:10:244:2::7b]:80"] * 2
    out = datagram(Datagram(size=1000, count=2), udp)
    assert out.ok, out.summary
    records = out.figures["datagrams"]
    assert [(r["size"], r["ip_len"], r["path_mtu"]) for r in records] == [(1000, 1048, 1500)] * 2
