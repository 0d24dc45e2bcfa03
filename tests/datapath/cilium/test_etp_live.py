"""externalTrafficPolicy=Local on Cilium's own datapath: the scenarios written for the
lab's pass unchanged, and the drop is named in Cilium's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.seed import LB_NAME, REPO

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
MODES = REPO / "scenarios" / "modes"


def test_no_local_backend_drops_with_ciliums_reason(cilium_source: CiliumSource,
                                                    tmp_path: Path) -> None:
    require_root()
    res = run_scenario(MODES / "local-policy-drops.yaml", captures_root=tmp_path,
                       backend=NetnsBackend(datapaths=CiliumDatapaths(cilium_source)))
    assert res.result is not None
    assert res.passed, [c.describe() for cl in res.result.claims for c in cl.failures]
    (line,) = res.result.diagnoses
    assert line.startswith(f"dropped at {LB_NAME} eth0: DROP_NO_SERVICE (Cilium "
                           f"{cilium_source.version}, bpf_host.c:"), line


def test_a_local_backend_serves_without_dsr(cilium_source: CiliumSource,
                                           tmp_path: Path) -> None:
    require_root()
    res = run_scenario(MODES / "local-policy-serves.yaml", captures_root=tmp_path,
                       backend=NetnsBackend(datapaths=CiliumDatapaths(cilium_source)))
    assert res.result is not None
    assert res.passed, [c.describe() for cl in res.result.claims for c in cl.failures]
    assert res.result.diagnoses == ()
