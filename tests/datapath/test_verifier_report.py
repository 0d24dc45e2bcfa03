"""The datapath under the running kernel's verifier: instruction counts, rejections,
and the minimum kernel that ``bpf/dsr.h`` states."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from lab.datapath import PROGRAMS, DatapathError, DatapathObject, requires
from lab.datapath.verifier import COMPLEXITY_LIMIT, rejection_figures, verify
from tests.datapath.broken import BROKEN_PROGRAM, VERIFIER_SAYS, broken_object


@pytest.mark.bpf
def test_report_sizes_every_program_and_counts_only_where_the_kernel_says() -> None:
    report = verify()
    assert report.outcome == "pass", report.reason
    assert [p.program for p in report.programs] == list(PROGRAMS)
    # bpf_prog_info.verified_insns came in 5.16: an older kernel's count is unknown
    says = requires.release_version(platform.release()) >= (5, 16)
    for p in report.programs:
        assert p.xlated_insns > 0
        assert (p.verified_insns is not None) == says, p
    assert ("?" in report.summary()) != says


# the count is bpf_prog_info.verified_insns, which kernels before 5.16 do not fill
@pytest.mark.kernel("5.16")
@pytest.mark.bpf
def test_report_counts_what_the_verifier_processed_per_program() -> None:
    report = verify()
    assert report.outcome == "pass", report.reason
    assert [p.program for p in report.programs] == list(PROGRAMS)
    for p in report.programs:
        # 6.18 reports verified_insns (5.16+); the ingress program is the big one
        assert p.verified_insns is not None
        assert 0 < p.verified_insns < COMPLEXITY_LIMIT
        assert 0 < p.xlated_insns <= p.verified_insns
    sizes = {p.program: p.verified_insns for p in report.programs}
    assert sizes["dsr_from_netdev"] > sizes["dsr_to_netdev"]


@pytest.mark.bpf
def test_rejection_report_names_the_program_its_count_and_the_log_tail(
        tmp_path: Path) -> None:
    report = verify(broken_object(tmp_path))
    assert report.outcome == "fail"
    assert report.failed_program == BROKEN_PROGRAM
    assert report.processed_insns is not None
    assert report.processed_insns > 0
    assert any(VERIFIER_SAYS in line for line in report.log_tail)
    assert 0 < len(report.log_tail) <= 22  # 20 of the verifier, what libbpf says failed
    assert report.reason
    assert "verifier log" in report.reason


def test_rejection_figures_from_libbpf_and_verifier_text() -> None:
    log = ("--- verifier log ---\n0: R1=ctx() R10=fp0\n; invalid access to packet\n"
           "processed 1234 insns (limit 1000000) max_states_per_insn 2 total_states 80\n"
           "--- libbpf ---\nlibbpf: prog 'dsr_from_netdev': BPF program load failed: "
           "Permission denied\n")
    assert rejection_figures(log) == ("dsr_from_netdev", 1234)
    assert rejection_figures("nothing useful") == (None, None)


def test_a_kernel_older_than_the_stated_minimum_is_refused_before_loading(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requires.platform, "release", lambda: "5.4.0-150-generic")
    built = []
    monkeypatch.setattr("lab.datapath.loader.build_object", lambda: built.append(1))
    with pytest.raises(requires.KernelTooOld) as info:
        DatapathObject.load()
    assert not built  # refused before building or loading anything
    assert str(info.value) == ("the lab's datapath needs kernel >= 5.10 (bpf_redirect_neigh() "
                               "came in 5.10); this kernel is 5.4.0-150-generic")
    report = verify()
    assert report.outcome == "skip"
    assert report.reason == str(info.value)


@pytest.mark.parametrize(("release", "ok"), [
    ("5.9.16", False), ("5.10.0", True), ("5.11.0-49-generic", True),
    ("5.4.0-150-generic", False),
    ("6.1.0-57-amd64", True), ("6.12.117+deb12-amd64", True), ("4.19.0", False),
    ("weird", False)])
def test_release_against_the_minimum(release: str, ok: bool) -> None:
    assert (requires.unmet(release) is None) is ok


def test_the_minimum_is_read_from_the_header(tmp_path: Path) -> None:
    assert requires.requirement().version == (5, 10)
    (tmp_path / "dsr.h").write_text('#define DSRLAB_MIN_KERNEL "6.3"\n'
                                    '#define DSRLAB_MIN_KERNEL_WHY "a newer helper"\n')
    assert requires.requirement(tmp_path) == requires.KernelRequirement((6, 3), "a newer helper")
    assert "6.1.0-57-amd64" in (requires.unmet("6.1.0-57-amd64", tmp_path) or "")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dsr.h").write_text('#define DSRLAB_MIN_KERNEL "six"\n'
                               '#define DSRLAB_MIN_KERNEL_WHY "x"\n')
    with pytest.raises(DatapathError, match=r"dsr.h: DSRLAB_MIN_KERNEL 'six' is not"):
        requires.requirement(bad)
    none = tmp_path / "none"
    none.mkdir()
    (none / "dsr.h").write_text("/* nothing */\n")
    with pytest.raises(DatapathError, match="does not define DSRLAB_MIN_KERNEL"):
        requires.requirement(none)
