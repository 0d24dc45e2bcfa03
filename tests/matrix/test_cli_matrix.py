"""``dsrlab matrix`` as a user runs it: the list, and clean errors before anything runs."""

from __future__ import annotations

import platform
from pathlib import Path

from tests.cli.helpers import dsrlab


def test_list_of_the_host_kernel_is_a_plain_table() -> None:
    proc = dsrlab("matrix", "--list", "--kernel", "host")
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split() == ["kernel", "package", "version", "release", "installed"]
    assert row.split() == ["host", "-", "-", platform.release(), "yes"]


def test_an_unknown_kernel_and_a_bad_list_are_one_line_errors(tmp_path: Path) -> None:
    proc = dsrlab("matrix", "--kernel", "4.19", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: no kernel '4.19' in the matrix (known: host, 6.1, 6.12)"]
    assert not any(tmp_path.iterdir())  # nothing ran
    bad = tmp_path / "k.yaml"
    bad.write_text("kernels: [{name: '6.1'}]\ngroups: [{name: a, paths: [x]}]\n")
    proc = dsrlab("matrix", "--list", "--kernels-file", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {bad}: kernels.0.package: Field required"
    proc = dsrlab("matrix", "--kernel", "host", "--out", str(tmp_path / "o"), "--run-id", "../x")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --run-id '../x': ")
    assert not (tmp_path / "x").exists()
