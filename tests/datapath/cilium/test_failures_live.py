"""The crafted-SYN failure scenarios on Cilium's own datapath: they hold on every
version, and where 1.13 behaves otherwise (IP options already on the SYN) the trace
says so and why, and the run shows that variant was checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from tests.datapath.cilium.live import failures, run_on_cilium
from tests.seed import REPO

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
FAILURES = REPO / "scenarios" / "failures"


@pytest.mark.parametrize("name", ["syn-with-ip-options", "syn-options-too-long"])
def test_a_syn_with_options_on_cilium(name: str, cilium_source: CiliumSource,
                                      tmp_path: Path) -> None:
    res = run_on_cilium(FAILURES / f"{name}.yaml", cilium_source, tmp_path)
    assert res.result is not None
    assert res.passed, failures(res)
    messages = [c.message for cl in res.result.claims for c in cl.checks]
    older = any("(on cilium<1.14:" in m for m in messages)
    assert older is not cilium_source.version.at_least(1, 14), messages
