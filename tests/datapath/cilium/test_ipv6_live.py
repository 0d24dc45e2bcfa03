"""The seed in IPv6 (``scenarios/ipv6/seed-ipv6.yaml``, the dual-stack seed) and the
dual-stack seed over IPv4 on a netns lab whose nodes run Cilium's own programs,
hop by hop: every claim holds on 1.13 and 1.16. The one field where Cilium's
IPv6 DSR differs from the lab's datapath is said in the trace: both lines
forward the SYN with the client's hop limit (``tail_nodeport_ipv6_dsr``
redirects after its FIB lookup without the decrement ``fib_redirect_v4`` makes
for IPv4; Cilium's own ``tc_nodeport_lb6_dsr_lb`` vector keeps it too).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from tests.datapath.cilium.live import failures, run_on_cilium

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
SCENARIOS = Path(__file__).parents[3] / "scenarios" / "ipv6"


def _scenario(name: str) -> Path:
    path = SCENARIOS / name
    if not path.is_file():
        pytest.skip(f"{path.relative_to(SCENARIOS.parents[1])} is not in this tree")
    return path


def test_the_ipv6_seed_on_ciliums_datapath(cilium_source: CiliumSource,
                                           tmp_path: Path) -> None:
    res = run_on_cilium(_scenario("seed-ipv6.yaml"), cilium_source, tmp_path)
    assert res.passed, failures(res)
    assert res.result is not None
    (lb,) = [cl for cl in res.result.claims if cl.name == "lb-node"]
    syn_outs = [c.message for c in lb.checks if c.label == "lb-node/syn-out"]
    assert syn_outs
    assert all("keeping the hop limit" in m for m in syn_outs), syn_outs


def test_the_dual_stack_seed_over_ipv4_on_ciliums_datapath(cilium_source: CiliumSource,
                                                            tmp_path: Path) -> None:
    res = run_on_cilium(_scenario("seed-dual-stack-ipv4.yaml"), cilium_source, tmp_path)
    assert res.passed, failures(res)


@pytest.mark.parametrize("name", ["udp-packet-too-big.yaml", "fabric-drops-ext-headers.yaml"])
def test_the_ipv6_mtu_and_fabric_scenarios_on_ciliums_datapath(
        cilium_source: CiliumSource, tmp_path: Path, name: str) -> None:
    """As on the lab's datapath: Packet Too Big for the datagram, MTU 1476; the SYN
    with the Destination Options header lost in a fabric that drops them."""
    res = run_on_cilium(_scenario(name), cilium_source, tmp_path)
    assert res.passed, failures(res)


def test_the_tfo_syn_too_big_is_dropped_silently_by_cilium(cilium_source: CiliumSource,
                                                          tmp_path: Path) -> None:
    """Cilium sends no Packet Too Big for the TFO SYN (the trace says so by datapath):
    the diagnosis names the silent drop in its figures and in Cilium's own words."""
    res = run_on_cilium(_scenario("tcp-packet-too-big.yaml"), cilium_source, tmp_path)
    assert res.passed, failures(res)
    assert res.result is not None
    line, counted = res.result.diagnoses
    assert line == (
        "cilium-dsr-control-plane did not forward a 1492-byte SYN from the client: with "
        "the 24-byte DSR Destination Options header it would be 1516 bytes, over the MTU "
        "1480; no ICMPv6 Packet Too Big went back, so the client is never told")
    assert counted.startswith("dropped at cilium-dsr-control-plane eth0: DROP_FRAG_NEEDED "
                              f"(Cilium {cilium_source.version}"), counted
