"""The crafted-SYN failure scenarios on Cilium's own datapath: they hold on every
version, and where 1.13 behaves otherwise (IP options already on the SYN) the trace
says so and why, and the run shows that variant was checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.seed import REPO

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
FAILURES = REPO / "scenarios" / "failures"


@pytest.mark.parametrize("name", ["syn-with-ip-options", "syn-options-too-long"])
def test_a_syn_with_options_on_cilium(name: str, cilium_source: CiliumSource,
                                      tmp_path: Path) -> None:
    require_root()
    res = run_scenario(FAILURES / f"{name}.yaml", captures_root=tmp_path,
                       backend=NetnsBackend(datapaths=CiliumDatapaths(cilium_source)))
    assert res.result is not None
    assert res.passed, [c.describe() for cl in res.result.claims for c in cl.failures]
    messages = [c.message for cl in res.result.claims for c in cl.checks]
    older = any("(on cilium<1.14:" in m for m in messages)
    assert older is not cilium_source.version.at_least(1, 14), messages
