"""Kernels before 5.16 refuse BPF_PROG_TEST_RUN a context with ``ingress_ifindex``
(EINVAL; the datapath's route lookups read it): such a run says so in one sentence,
and a test that needs it is skipped with that sentence, never failed. A frame the
kernel refuses for its own reasons stays a plain refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.datapath.errors import IngressIfindexRefused, TestRunRefused
from lab.datapath.loader import DatapathObject
from lab.datapath.testrun import run_program


def test_a_test_needing_the_ingress_device_is_skipped_with_the_kernels_reason(
        tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "from lab.datapath.errors import IngressIfindexRefused\n"
        "def test_run():\n    raise IngressIfindexRefused\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(tmp_path / "test_x.py")], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout
    assert "Linux 5.16 added it" in proc.stdout


def test_the_sentence_names_the_field_and_the_kernel() -> None:
    text = str(IngressIfindexRefused())
    assert "ingress_ifindex" in text
    assert "5.16" in text
    assert "\n" not in text


@pytest.mark.bpf
def test_a_frame_the_kernel_refuses_stays_a_refusal(dp: DatapathObject) -> None:
    # an IPv4 frame too short for its header: EINVAL with or without ingress_ifindex
    short = bytes(12) + b"\x08\x00" + b"\x45\x00"
    with pytest.raises(TestRunRefused):
        run_program(dp.program_fd("dsr_from_netdev"), short, ingress_ifindex=1, ifindex=1)
