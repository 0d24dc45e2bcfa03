"""A matrix run's VMs carry its run tag: what a killed matrix leaves running (vng,
QEMU) is found by ``dsrlab clean TAG``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.matrix.run import MATRIX_TAG_VAR, _boot
from lab.plumbing import names


def test_the_vm_command_carries_the_matrix_tag(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tag = names.new_run_id()
    monkeypatch.setenv(MATRIX_TAG_VAR, tag)
    _, rc, _ = _boot(["/bin/sh", "-c", "echo tag=$DSRLAB_RUN"], tmp_path / "log",
                     boot_timeout=30, timeout=60, progress=lambda _m: None, label="t")
    assert rc == 0
    assert f"tag={tag}" in (tmp_path / "log").read_text()


def test_a_tagged_vm_left_by_a_killed_matrix_is_found_and_stopped(tmp_path: Path) -> None:
    """The stand-in VM outlives its (killed) matrix; cleaning the tag stops it."""
    tag = names.new_run_id()
    script = (f"import os; os.environ['{MATRIX_TAG_VAR}'] = '{tag}'\n"
              "from lab.matrix.run import _boot\n"
              f"_boot(['/bin/sh', '-c', 'echo up; exec sleep 300'], "
              f"__import__('pathlib').Path('{tmp_path}/log'), boot_timeout=30, timeout=600, "
              "progress=lambda m: None, label='t')\n")
    matrix = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        for _ in range(100):
            if (tmp_path / "log").exists() and "up" in (tmp_path / "log").read_text():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        matrix.kill()  # SIGKILL: no cleanup of its own
        matrix.wait()
        found = cleanup.find_runs([tag])[tag]
        assert found.pids, "the VM stand-in was not found by the matrix's tag"
        done = cleanup.clean_run(found)
        assert not [line for line in done if line.startswith("could not")], done
        assert tag not in cleanup.find_runs([tag]), "the tag still holds something"
        for pid in found.pids:
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        if matrix.poll() is None:
            matrix.kill()
