"""Cilium's objects of the seed topology under the running kernel's verifier: a report
per version, with instructions processed per object/program, or the rejection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.datapath.cilium import verify as cverify
from lab.datapath.cilium.build import BuiltObject
from lab.datapath.cilium.source import ENV_VAR, CiliumSource
from lab.datapath.verifier import COMPLEXITY_LIMIT, read_reports
from lab.model.topology import load_topology
from lab.pytest_plugin import require_root, write_cilium_verifier_report
from tests.datapath.broken import BROKEN_PROGRAM, VERIFIER_SAYS, broken_object

pytestmark = [pytest.mark.bpf]


def test_the_seed_objects_load_with_counts_per_object_and_program(
        cilium_source: CiliumSource) -> None:
    require_root()
    report = cverify.verify_topology(cilium_source, load_topology(cverify.SEED_TOPOLOGY))
    assert report.outcome == "pass", report.summary()
    assert report.datapath == f"cilium {cilium_source.version}"
    assert report.features is not None
    assert report.features.startswith("kernel ")
    names = [p.program for p in report.programs]
    assert names == sorted(set(names))
    for want in ("bpf_host/cil_from_netdev", "bpf_host/cil_to_netdev",
                 "bpf_host/cil_from_host", "bpf_lxc/cil_from_container", "bpf_lxc/handle_policy"):
        assert want in names
    assert {n.split("/")[0] for n in names} == {"bpf_host", "bpf_lxc"}
    for p in report.programs:
        if p.verified_insns is not None:  # 5.16 and later say
            assert 0 < p.verified_insns < COMPLEXITY_LIMIT
        assert p.xlated_insns > 0


def test_a_rejection_names_the_object_program_count_and_log(
        cilium_source: CiliumSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object the verifier refuses, in bpf_host's place: the report names it as
    bpf_host/<program>, with the count and what the verifier said."""
    require_root()
    broken = broken_object(tmp_path / "src")

    def build_node(*_a: object, **_k: object) -> tuple[BuiltObject, dict[str, BuiltObject]]:
        return BuiltObject("bpf_host", broken, True, 0.0), {}

    monkeypatch.setattr(cverify, "build_node", build_node)
    report = cverify.verify_topology(cilium_source, load_topology(cverify.SEED_TOPOLOGY))
    assert report.outcome == "fail"
    assert report.failed_program == f"bpf_host/{BROKEN_PROGRAM}"
    assert report.processed_insns is not None
    assert report.processed_insns > 0
    assert any(VERIFIER_SAYS in line for line in report.log_tail)
    assert report.reason is not None
    assert report.reason.startswith("cilium-dsr-control-plane: loading ")


def test_no_source_is_a_skip_that_says_so() -> None:
    (report,) = cverify.verify_sources(None, load_topology(cverify.SEED_TOPOLOGY))
    assert report.outcome == "skip"
    assert report.datapath == "cilium"
    assert report.reason == f"no Cilium source: {ENV_VAR} is not set"
    (bad,) = cverify.verify_sources("/nonexistent/cilium", load_topology(cverify.SEED_TOPOLOGY))
    assert bad.outcome == "skip"
    assert bad.reason is not None
    assert "/nonexistent/cilium" in bad.reason


def test_the_pytest_option_writes_one_report_per_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    target = tmp_path / "out" / "cilium-verifier.json"
    write_cilium_verifier_report(target)
    reports = read_reports(target.read_text())
    assert [(r.datapath, r.outcome) for r in reports] == [("cilium", "skip")]
    assert isinstance(json.loads(target.read_text()), list)
