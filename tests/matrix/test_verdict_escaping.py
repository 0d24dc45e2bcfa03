"""The matrix summary (Markdown and HTML) shows what a guest's tools said with control
characters escaped: a test's failure message or a VM's error may hold anything."""

from __future__ import annotations

from pathlib import Path

from lab.datapath.verifier import VerifierReport
from lab.matrix.kernels import host_kernel
from lab.matrix.verdict import GroupVerdict, KernelVerdict, Summary, write_summary

HOSTILE = "\x1b]0;retitled\x07 \u202eevil\x9b \x1b[2J"
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def test_a_hostile_reason_is_escaped_in_summary_md_and_html(tmp_path: Path) -> None:
    host = host_kernel()
    verdict = KernelVerdict(
        kernel=host, mode="direct", seconds=1.0, error=f"the VM said {HOSTILE}",
        verifier=VerifierReport(kernel=host.release, outcome="fail", reason=f"r{HOSTILE}"),
        groups=[GroupVerdict(group="scenarios", outcome="fail", failed=1, seconds=1.0,
                             reasons=[f"test_x: {HOSTILE}"])])
    write_summary(Summary(run_id="r1", full=False, kernels=[verdict]), tmp_path)
    for name in ("summary.md", "summary.html"):
        text = (tmp_path / name).read_text()
        for raw in RAW:
            assert raw not in text, (name, raw)
        assert "\\x1b]0;retitled\\x07 \\u202eevil\\x9b" in text, name
