"""``dsrlab matrix`` as a user runs it: the list, and clean errors before anything runs."""

from __future__ import annotations

import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.plumbing import names, nsutil
from lab.pytest_plugin import require_root
from tests.cli.helpers import ENV, REPO, dsrlab


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
        "error: no kernel '4.19' in the matrix (known: host, 5.10, 6.1, 6.12)"]
    assert not any(tmp_path.iterdir())  # nothing ran
    bad = tmp_path / "k.yaml"
    bad.write_text("kernels: [{name: '6.1'}]\ngroups: [{name: a, paths: [x]}]\n")
    proc = dsrlab("matrix", "--list", "--kernels-file", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {bad}: kernels[0].package: Field required"
    proc = dsrlab("matrix", "--kernel", "host", "--group", "datapath", "--group", "nope",
                  "--out", str(tmp_path / "g"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[0].startswith(
        "error: no group 'nope' in the matrix (known: datapath, ")
    assert not (tmp_path / "g").exists()
    proc = dsrlab("matrix", "--kernel", "host", "--out", str(tmp_path / "o"), "--run-id", "../x")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --run-id '../x': ")
    assert not (tmp_path / "x").exists()


def test_a_stopped_matrix_lets_its_group_take_its_labs_down(tmp_path: Path) -> None:
    """SIGTERM to `dsrlab matrix` while a group runs: the group's pytest is stopped with
    SIGTERM (its labs torn down), not killed; nothing of its run is left."""
    require_root()
    run_id = names.new_run_id()
    ns = names.netns_name(run_id, "mxtest")
    group = tmp_path / "test_holds_a_lab.py"
    group.write_text(
        "import time\nfrom lab.plumbing import nsutil\n\n"
        f"def test_holds_a_lab():\n    with nsutil.scratch({ns!r}):\n        time.sleep(60)\n")
    kernels = tmp_path / "k.yaml"
    kernels.write_text(f"kernels: []\ngroups: [{{name: hold, paths: [{str(group)!r}]}}]\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "matrix", "--kernel", "host", "--kernels-file",
         str(kernels), "--out", str(tmp_path / "out")],
        cwd=REPO, env={**ENV, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not nsutil.exists(ns):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the group never brought its lab up"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        left = nsutil.exists(ns)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if nsutil.exists(ns):  # the test failed: still leave nothing behind
            nsutil.remove(ns)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert not left, f"{ns} was left behind"
