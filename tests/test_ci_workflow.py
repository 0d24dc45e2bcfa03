"""The CI workflow (.github/workflows/ci.yml) holds to what the lab pins: the kind
release and its node images (lab/env/kind/config.py), a kubectl within one minor of
the cluster, tools checked by sha256, every job in Debian 12, a kind job that cannot
pass with its test skipped. `make lint` runs actionlint on it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from lab.env.kind.config import KIND_VERSION, kubernetes_minor, node_image
from lab.matrix.kernels import HOST, load_list
from lab.model.topology import load_topology

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def _jobs() -> dict[str, Any]:
    jobs: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return jobs


def test_the_kind_job_installs_the_labs_kind_release_and_a_kubectl_that_fits() -> None:
    env = _jobs()["kind"]["env"]
    assert env["KIND_VERSION"] == KIND_VERSION
    for topology in sorted((REPO / "topologies").glob("*.yaml")):
        image_tag = node_image(load_topology(topology)).split(":")[1].split("@")[0]
        server = kubernetes_minor(image_tag)
        client = kubernetes_minor(env["KUBECTL_VERSION"])
        assert client[0] == server[0], topology.name
        assert abs(client[1] - server[1]) <= 1, topology.name
    for tool in ("KIND", "KUBECTL", "HELM"):
        assert re.fullmatch(r"[0-9a-f]{64}", env[f"{tool}_SHA256"]), tool
    steps = "\n".join(s.get("run", "") for s in _jobs()["kind"]["steps"])
    assert "sha256sum -c -" in steps
    assert "--dsrlab-require-backend kind" in steps


def test_every_job_runs_the_lab_in_debian_12() -> None:
    """Ubuntu's chromium and chromium-driver are snap stubs: `make install` there fails."""
    jobs = _jobs()
    assert jobs["test"]["container"]["image"] == "debian:12"
    for name in ("kind", "matrix"):
        runs = [s["run"] for s in jobs[name]["steps"] if "run" in s]
        lab_steps = [r for r in runs if "make install" in r or "scripts/install" in r]
        assert lab_steps, name
        assert all("debian:12" in r for r in lab_steps), name


def test_the_matrix_job_runs_every_kernel_of_the_list() -> None:
    kernels = _jobs()["matrix"]["strategy"]["matrix"]["kernel"]
    assert kernels == [HOST, *(k.name for k in load_list().kernels)]


def test_actionlint_passes_the_workflow_and_fails_a_broken_one(tmp_path: Path) -> None:
    actionlint = Path(sys.executable).parent / "actionlint"  # the dev extra's
    ok = subprocess.run([str(actionlint), str(WORKFLOW)], capture_output=True, text=True,
                        check=False, timeout=60)
    assert ok.returncode == 0, ok.stdout
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04",
                                                   "runs-on: ${{ matrix.nothing }}", 1))
    bad = subprocess.run([str(actionlint), str(broken)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert bad.returncode == 1
    assert "matrix.nothing" in bad.stdout
