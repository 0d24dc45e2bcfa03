"""scenarios/ipv6/: the seed's claims in IPv6 on the dual-stack seed, and the seed's
IPv4 claims on the same topology, run end to end on the netns backend.

Both need the lab datapath's IPv6 maps (the dual-stack service is filled in both
families); the IPv6 trace needs the trace language's IPv6 DSR fields. Where this
tree lacks them the test says so and is skipped (the refusal itself is
tests/env/test_dual_stack_netns.py's).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from lab.datapath import DatapathError, DatapathObject, build_object
from lab.model.scenario import SCENARIO_DIR, ScenarioError, load_scenario
from lab.runner.scenario import ScenarioRun, load_scenario_trace, run_scenario
from tests.cli.helpers import dsrlab
from tests.runner.mtu_scenarios import datagrams

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

IPV6 = SCENARIO_DIR / "ipv6"


def _needs_ipv6_maps() -> None:
    with DatapathObject.load(build_object()) as dp:
        try:
            dp.map("lb6_services")
        except DatapathError:
            pytest.skip("the lab datapath here has no IPv6 maps (lb6_services)")


def _failed(run: ScenarioRun) -> str:
    assert run.result is not None
    return "\n".join(f"{c.claim}/{c.name}: {c.detail}"
                     for c in run.result.checks if not c.passed)[:2000]


def test_the_seeds_ipv4_claims_hold_on_the_dual_stack_seed(captures_root: Path) -> None:
    _needs_ipv6_maps()
    run = run_scenario(IPV6 / "seed-dual-stack-ipv4.yaml", captures_root=captures_root)
    assert run.passed, _failed(run)
    manifest = json.loads((run.capture_dir / "manifest.json").read_text())
    assert (manifest["family"], manifest["service"]["ip"], manifest["client"]["ip"]) == (
        "IPv4", "172.18.0.2", "172.18.0.1")
    assert all(e.url == "http://172.18.0.2:32000/" for e in run.exchanges)


def test_the_seeds_claims_hold_in_ipv6(captures_root: Path) -> None:
    _needs_ipv6_maps()
    sc, _ = load_scenario(IPV6 / "seed-ipv6.yaml")
    try:
        load_scenario_trace(sc)
    except ScenarioError as exc:
        pytest.skip(f"the trace language here has no IPv6 DSR fields: {exc}")
    run = run_scenario(IPV6 / "seed-ipv6.yaml", captures_root=captures_root)
    assert run.passed, _failed(run)
    manifest = json.loads((run.capture_dir / "manifest.json").read_text())
    assert (manifest["family"], manifest["service"]["ip"], manifest["client"]["ip"]) == (
        "IPv6", "fc00:f853:ccd:e793::2", "fc00:f853:ccd:e793::1")
    assert sorted(b["ip"] for b in manifest["backends"]) == [
        "fd00:10:244:2::7b", "fd00:10:244::d8"]
    assert {e.url for e in run.exchanges} == {"http://[fc00:f853:ccd:e793::2]:32000/"}
    assert all(e.ok for e in run.exchanges)
    assert {e.pod for e in run.exchanges} == {"cni-8zxj9", "cni-m7tjc"}


def test_a_tfo_syn_too_big_for_the_ipv6_header_gets_packet_too_big(
        captures_root: Path) -> None:
    """The IPv6 twin of scenarios/mtu/tcp-frag-needed: ICMPv6 Packet Too Big with
    MTU 1480 - 24, the client's path MTU adapts and both transfers complete; nothing
    is broken, so no diagnosis (the too-big rule knows the 24-byte header and the
    ICMPv6 error)."""
    _needs_ipv6_maps()
    run = run_scenario(IPV6 / "tcp-packet-too-big.yaml", captures_root=captures_root)
    assert run.passed, _failed(run)
    assert run.result is not None
    assert run.result.diagnoses == ()
    assert [s.kind for s in run.steps] == ["transfer", "transfer"]
    assert all(s.ok for s in run.steps), [s.summary for s in run.steps]
    assert run.steps[1].figures["transfers"][0]["uploaded"] == 300000


def test_a_fabric_dropping_ext_headers_is_proven_and_diagnosed(captures_root: Path) -> None:
    """The DNATed SYN leaves the LB node with the Destination Options header and never
    reaches the backend's node; the diagnosis says so, naming the header, and
    ``dsrlab review`` says the same."""
    _needs_ipv6_maps()
    run = run_scenario(IPV6 / "fabric-drops-ext-headers.yaml", captures_root=captures_root)
    assert run.passed, _failed(run)
    assert run.result is not None
    assert not any(e.ok for e in run.exchanges)
    (line,) = run.result.diagnoses
    assert re.fullmatch(
        r"the DNATed SYN left cilium-dsr-control-plane for "
        r"\[(fd00:10:244:2::7b|fd00:10:244::d8)\]:80 with the DSR Destination Options "
        r"header \(an IPv6 extension header\) and (cilium-dsr-worker2?) saw none of its "
        r"SYNs: the fabric between them dropped it for the extension header \(many "
        r"networks drop IPv6 packets carrying them, RFC 7872/9098\)", line), line
    out = dsrlab("review", str(run.capture_dir))
    assert out.returncode == 1
    assert f"diagnosis: {run.capture_dir}: {line}\n" in out.stdout


def test_an_ipv6_datagram_too_big_gets_packet_too_big_and_adapts(
        captures_root: Path) -> None:
    """The IPv6 twin of scenarios/mtu/udp-frag-needed: the client's kernel takes MTU
    1476 (1500 - 24) from the ICMPv6 error; the datagram sent again at it is answered."""
    _needs_ipv6_maps()
    run = run_scenario(IPV6 / "udp-packet-too-big.yaml", captures_root=captures_root)
    assert run.passed, _failed(run)
    assert run.result is not None
    assert run.result.diagnoses == ()
    first, retry = datagrams(run)
    assert (first["ip_len"], first["error"], first["path_mtu"]) == (1500, "EMSGSIZE", 1476)
    assert (retry["ip_len"], retry["retry"], retry["path_mtu"]) == (1476, True, 1476)
    assert str(retry["answer"]).startswith("PodName: ")


def test_the_packet_too_big_trace_fails_when_the_errors_are_off(
        captures_root: Path, tmp_path: Path) -> None:
    """The trace can fail: the same scenario with DSR ICMP errors off. The TFO SYN is
    dropped at the LB node, the diagnosis says so in IPv6's figures."""
    _needs_ipv6_maps()
    for name in ("tcp-packet-too-big.yaml", "tcp-packet-too-big.trace.yaml"):
        shutil.copy(IPV6 / name, tmp_path / name)
    sc = tmp_path / "tcp-packet-too-big.yaml"
    data = yaml.safe_load(sc.read_text())
    data["topology"] = str(IPV6.parent.parent / "topologies" / "seed-dual-stack.yaml")
    data["settings"]["load_balancer.dsr_icmp_errors"] = False
    sc.write_text(yaml.safe_dump(data, sort_keys=False))
    run = run_scenario(sc, captures_root=captures_root)
    assert run.result is not None
    assert not run.passed
    failed = {c.name for c in run.result.claims if not c.passed}
    assert {"client", "lb-node"} <= failed
    assert run.result.diagnoses[0] == (
        "cilium-dsr-control-plane did not forward a 1492-byte SYN from the client: with "
        "the 24-byte DSR Destination Options header it would be 1516 bytes, over the MTU "
        "1480; DSR ICMP errors are off, so the client is never told and every SYN of that "
        "size is lost (turn them on, or lower the MTU the client uses)")
