"""The seed on a real kind cluster with Cilium installed by Helm: the write-up's
setup, run by the kind backend end to end and checked with the same trace as the
netns lab. Needs docker (a daemon), kind, kubectl and helm; skips, saying which is
missing, anywhere they are not (this project's machines have no Docker engine), and
fails instead with ``--dsrlab-require-backend kind``, as GitHub Actions runs it
(.github/workflows/ci.yml, job kind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.env.kind.backend import KindBackend
from lab.pytest_plugin import require_backend
from lab.runner.scenario import run_scenario

pytestmark = [pytest.mark.kind]


def test_the_seed_on_a_real_kind_cluster(captures_root: Path,
                                         request: pytest.FixtureRequest) -> None:
    require_backend(request.node, "kind")  # --dsrlab-require-backend kind: fail, not skip
    run = run_scenario("seed", captures_root=captures_root,
                       backend=KindBackend(workdir=captures_root / "kind-tools"))
    assert run.backend == "kind"
    assert run.passed, run.result.summary() if run.result else "no result"
    # a real cluster's pods, the write-up's answer
    assert all(e.ok and e.body.startswith("PodName: cni-") for e in run.exchanges)
