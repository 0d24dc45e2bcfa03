"""A scenario run end to end on a netns lab whose nodes run Cilium's own programs."""

from __future__ import annotations

from pathlib import Path

from lab.datapath.cilium.source import CiliumSource
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.pytest_plugin import require_root
from lab.runner.scenario import ScenarioRun, run_scenario


def run_on_cilium(scenario: Path, source: CiliumSource, captures_root: Path) -> ScenarioRun:
    """``scenario`` on Cilium ``source``'s datapath, its trace checked (root needed)."""
    require_root()
    res = run_scenario(scenario, captures_root=captures_root,
                       backend=NetnsBackend(datapaths=CiliumDatapaths(source)))
    assert res.result is not None
    return res


def failures(res: ScenarioRun) -> list[str]:
    """Every failed check of the run, described (for an assertion's message)."""
    assert res.result is not None
    return [c.describe() for claim in res.result.claims for c in claim.failures]
