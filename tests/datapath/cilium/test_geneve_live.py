"""Geneve dispatch on Cilium's own datapath, live: ``scenarios/geneve/seed-geneve.yaml``
on a netns lab whose nodes run Cilium 1.14+'s programs, ``bpf_overlay`` on each
node's ``cilium_geneve`` (a kernel Geneve device in external mode), every claim
of the trace checked hop by hop.

It needs a kernel with the Geneve driver: this project's host kernel has none,
the kernel matrix's guests do (``geneve`` is among the modules they load; the
``cilium-geneve`` group runs this file there). Where the kernel cannot make a
Geneve device, the test skips with what ``ip link`` said.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import geneve as netns_geneve
from lab.pytest_plugin import captures_root_for, require_root
from tests.datapath.cilium.live import failures, run_on_cilium

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
SCENARIO = Path(__file__).parents[3] / "scenarios" / "geneve" / "seed-geneve.yaml"


def test_the_geneve_seed_on_ciliums_datapath(cilium_source: CiliumSource,
                                             request: pytest.FixtureRequest) -> None:
    if not cilium_source.version.at_least(1, 14):
        pytest.skip(f"Cilium {cilium_source.version} has no Geneve dispatch (1.14 and later)")
    require_root()
    problem = netns_geneve.kernel_geneve_problem()
    if problem is not None:
        pytest.skip(f"this kernel cannot make a Geneve device (ip link add type geneve "
                    f"external: {problem}); the kernel matrix's guests can")
    # the session's captures folder: in the matrix, the kernel's (captures and
    # datapath-events.json outlive the guest)
    res = run_on_cilium(SCENARIO, cilium_source, captures_root_for(request.config))
    assert res.passed, failures(res)
