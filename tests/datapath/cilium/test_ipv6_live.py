"""The seed in IPv6 (``scenarios/ipv6/seed-ipv6.yaml``, the dual-stack seed) on a
netns lab whose nodes run Cilium's own programs, hop by hop.

Cilium 1.13 passes every claim. Cilium 1.16 differs from the lab's datapath in
one field: it forwards the IPv6 DSR SYN with the client's hop limit
(``tail_nodeport_ipv6_dsr`` redirects after its FIB lookup without the
decrement ``fib_redirect_v4`` makes for IPv4; Cilium's own
``tc_nodeport_lb6_dsr_lb`` vector leaves the hop limit too). Where the trace
still expects 1.14+ to lower it, that check, and only that, fails: the test
says exactly that, so any other failure, or that one on 1.13, fails it.
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


def _hop_limit_kept(res_failures: list[str]) -> bool:
    """Every failure is the LB's SYN out keeping the hop limit the trace lowers."""
    return bool(res_failures) and all(
        f.startswith("lb-node/syn-out") and "lowers the hop limit" in f
        and sum("✗" in line for line in f.splitlines()) == 1
        and any("✗ [IP].ttl" in line for line in f.splitlines())
        for f in res_failures)


def test_the_ipv6_seed_on_ciliums_datapath(cilium_source: CiliumSource,
                                           tmp_path: Path) -> None:
    res = run_on_cilium(_scenario("seed-ipv6.yaml"), cilium_source, tmp_path)
    failed = failures(res)
    if res.passed:
        return
    assert cilium_source.version.at_least(1, 14), failed
    assert _hop_limit_kept(failed), failed


def test_the_dual_stack_seed_over_ipv4_on_ciliums_datapath(cilium_source: CiliumSource,
                                                            tmp_path: Path) -> None:
    res = run_on_cilium(_scenario("seed-dual-stack-ipv4.yaml"), cilium_source, tmp_path)
    assert res.passed, failures(res)
