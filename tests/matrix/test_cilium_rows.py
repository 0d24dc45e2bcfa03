"""The kernel matrix's Cilium rows: a ``cilium-verifier <version>`` row per kernel and
Cilium version (pass with counts, fail with "object/program: why", skip with the
reason), read from the guest's ``cilium-verifier.json``, and a table of instructions
per datapath in summary.md/html."""

from __future__ import annotations

from pathlib import Path

from lab.datapath.verifier import ProgramLoad, VerifierReport, reports_json
from lab.matrix.kernels import Group, host_kernel
from lab.matrix.run import CILIUM_VERIFIER_JSON, gather, pytest_command
from lab.matrix.verdict import KernelVerdict, Summary, rows, summary_markdown, write_summary

LAB = VerifierReport(kernel="6.1.0-57-amd64", outcome="pass", programs=[
    ProgramLoad(program="dsr_from_netdev", verified_insns=2848, xlated_insns=1145)])
V113 = VerifierReport(kernel="6.1.0-57-amd64", outcome="pass", datapath="cilium v1.13.0",
                      programs=[
    ProgramLoad(program="bpf_host/tail_handle_snat_fwd_ipv4", verified_insns=84748,
                xlated_insns=8054),
    ProgramLoad(program="bpf_lxc/handle_policy", verified_insns=15424, xlated_insns=1788)])
V116_FAIL = VerifierReport(
    kernel="5.10.0-35-amd64", outcome="fail", datapath="cilium v1.16.0",
    reason="cilium-dsr-worker: loading bpf_host-x.o failed: E2BIG: Argument list too long",
    failed_program="bpf_host/tail_handle_ipv4_from_netdev", processed_insns=1000001,
    log_tail=["; return ret;", "BPF program is too large. Processed 1000001 insn",
              "processed 1000001 insns (limit 1000000) max_states_per_insn 9",
              "libbpf: prog 'tail_handle_ipv4_from_netdev': failed to load: -7"])
NO_SOURCE = VerifierReport(kernel="6.1.0-57-amd64", outcome="skip", datapath="cilium",
                           reason="no Cilium source: DSRLAB_CILIUM_SRC is not set")


def test_the_pytest_run_asks_for_the_cilium_report(tmp_path: Path) -> None:
    cmd = pytest_command([Group(name="g", paths=["tests"])], tmp_path)
    assert f"--dsrlab-cilium-verifier-report={tmp_path / CILIUM_VERIFIER_JSON}" in cmd


def test_a_guests_cilium_reports_become_rows_after_the_lab_verifier(tmp_path: Path) -> None:
    kernel = host_kernel().model_copy(update={"name": "6.1", "release": "6.1.0-57-amd64"})
    kdir = tmp_path / "6.1"
    kdir.mkdir()
    (kdir / "verifier.json").write_text(LAB.model_dump_json())
    (kdir / CILIUM_VERIFIER_JSON).write_text(reports_json([V113, V116_FAIL]))
    verdict = gather(kernel, [Group(name="datapath", paths=["tests/x.py"])], tmp_path,
                     mode="vm", seconds=1.0)
    assert [g.group for g in verdict.groups] == [
        "verifier", "cilium-verifier v1.13.0", "cilium-verifier v1.16.0", "datapath"]
    assert [g.outcome for g in verdict.groups[:3]] == ["pass", "pass", "fail"]
    assert verdict.cilium_verifiers == [V113, V116_FAIL]
    assert verdict.outcome == "fail"  # a rejection fails the kernel
    table = rows(Summary(run_id="r", full=False, kernels=[verdict]))
    by_group = {r[1]: r for r in table}
    assert by_group["cilium-verifier v1.13.0"][3:] == [
        "2/0/0", "0.0", "2 programs; largest bpf_host/tail_handle_snat_fwd_ipv4 84748 "
        "insns processed"]
    assert by_group["cilium-verifier v1.16.0"][5] == (
        "bpf_host/tail_handle_ipv4_from_netdev: BPF program is too large. Processed 1000001 "
        "insn (after 1000001 insns processed)")
    assert by_group["verifier"][5] == "dsr_from_netdev 2848 insns processed"


def test_no_source_is_a_skip_row_with_the_reason(tmp_path: Path) -> None:
    kernel = host_kernel().model_copy(update={"name": "6.1", "release": "6.1.0-57-amd64"})
    kdir = tmp_path / "6.1"
    kdir.mkdir()
    (kdir / CILIUM_VERIFIER_JSON).write_text(reports_json([NO_SOURCE]))
    verdict = gather(kernel, [], tmp_path, mode="vm", seconds=1.0)
    (row,) = rows(Summary(run_id="r", full=False, kernels=[verdict]))
    assert row[1:3] == ["cilium-verifier", "skip"]
    assert row[5] == "no Cilium source: DSRLAB_CILIUM_SRC is not set"
    (kdir / CILIUM_VERIFIER_JSON).write_text("{not json")
    broken = gather(kernel, [], tmp_path, mode="vm", seconds=1.0)
    assert broken.groups[0].outcome == "fail"
    assert broken.cilium_verifiers[0].reason is not None
    assert broken.cilium_verifiers[0].reason.startswith(f"{CILIUM_VERIFIER_JSON}: unreadable")


def test_the_summary_has_a_table_of_instructions_per_datapath(tmp_path: Path) -> None:
    host = host_kernel()
    k61 = host.model_copy(update={"name": "6.1", "release": "6.1.0-57-amd64"})
    k510 = host.model_copy(update={"name": "5.10", "release": "5.10.0-35-amd64"})
    v116 = V113.model_copy(update={"datapath": "cilium v1.16.0", "programs": [
        ProgramLoad(program="bpf_host/tail_handle_ipv4_from_netdev", verified_insns=13994,
                    xlated_insns=1746)]})
    a = KernelVerdict(kernel=k61, mode="vm", seconds=1.0, verifier=LAB,
                      cilium_verifiers=[V113, v116], groups=[])
    b = KernelVerdict(kernel=k510, mode="vm", seconds=1.0, verifier=LAB,
                      cilium_verifiers=[V113, V116_FAIL], groups=[])
    summary = Summary(run_id="r", full=False, kernels=[a, b])
    md = summary_markdown(summary)
    assert "Instructions the verifier processed (limit 1,000,000):" in md
    assert "Instructions the verifier processed, Cilium v1.13.0's programs (limit 1,000,000):" in md
    assert "| bpf_lxc/handle_policy | 15424 | 15424 |" in md
    # v1.16.0 loaded on 6.1 only ("-": rejected on 5.10)
    assert "| bpf_host/tail_handle_ipv4_from_netdev | 13994 | - |" in md
    write_summary(summary, tmp_path)
    page = (tmp_path / "summary.html").read_text()
    assert 'id="verifier"' in page
    assert 'id="verifier-cilium-v1.13.0"' in page
    assert 'id="verifier-cilium-v1.16.0"' in page
    assert "<td>bpf_lxc/handle_policy</td>" in page
