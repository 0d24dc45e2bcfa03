"""externalTrafficPolicy=Local on Cilium's own datapath: the scenarios written for the
lab's pass unchanged, and the drop is named in Cilium's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource
from tests.datapath.cilium.live import failures, run_on_cilium
from tests.seed import LB_NAME, REPO

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]
MODES = REPO / "scenarios" / "modes"


def test_no_local_backend_drops_with_ciliums_reason(cilium_source: CiliumSource,
                                                    tmp_path: Path) -> None:
    res = run_on_cilium(MODES / "local-policy-drops.yaml", cilium_source, tmp_path)
    assert res.result is not None
    assert res.passed, failures(res)
    (line,) = res.result.diagnoses
    assert line.startswith(f"dropped at {LB_NAME} eth0: DROP_NO_SERVICE (Cilium "
                           f"{cilium_source.version}, bpf_host.c:"), line


def test_a_local_backend_serves_without_dsr(cilium_source: CiliumSource,
                                           tmp_path: Path) -> None:
    res = run_on_cilium(MODES / "local-policy-serves.yaml", cilium_source, tmp_path)
    assert res.result is not None
    assert res.passed, failures(res)
    assert res.result.diagnoses == ()
