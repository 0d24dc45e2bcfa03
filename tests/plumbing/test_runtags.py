"""Run tags outside the namespaces (lab.plumbing.runtags): scratch directories and
child processes found by the exact run id, and removal that waits out a late writer."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.plumbing import names, procs, runtags


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Iterator[Path]:
    """``TMPDIR`` pointed at a folder of the test's (scratch directories go there)."""
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path)
    tempfile.tempdir = None
    yield tmp_path
    if old is None:
        os.environ.pop("TMPDIR")
    else:
        os.environ["TMPDIR"] = old
    tempfile.tempdir = None


def test_scratch_directories_are_found_by_their_exact_run_id(tmpdir_env: Path) -> None:
    mine, other = names.new_run_id(), names.new_run_id()
    a = runtags.scratch_dir(mine, "chromium")
    b = runtags.scratch_dir(other, "transfer")
    assert a.parent == tmpdir_env
    assert a.name.startswith(f"dsrlab-{mine}-chromium-")
    # look-alikes that are not the lab's: a file, a link, another prefix, a longer id
    (tmpdir_env / f"dsrlab-{mine}-chromium-file").write_text("")
    (tmpdir_env / f"dsrlab-{mine}-chromium-link").symlink_to(b)
    (tmpdir_env / f"dsrlab-{mine}0-chromium-x").mkdir()
    (tmpdir_env / f"xdsrlab-{mine}-chromium-x").mkdir()
    assert runtags.find_dirs([mine]) == {mine: [a]}
    assert runtags.find_dirs([other]) == {other: [b]}
    with pytest.raises(ValueError, match="lowercase"):
        runtags.scratch_dir(mine, "../x")


def test_a_scratch_directory_written_to_while_removed_still_goes(tmp_path: Path) -> None:
    """A writer that goes on for a moment after it was told to stop (Chromium's
    profile): the removal waits it out instead of failing with ENOTEMPTY."""
    d = tmp_path / "profile"
    (d / "Default").mkdir(parents=True)
    stop = time.monotonic() + 0.3

    def write() -> None:
        i = 0
        while time.monotonic() < stop:
            try:
                (d / "Default" / f"f{i}").write_text("x")
            except FileNotFoundError:  # removed under it: the writer is done
                return
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert runtags.remove_dir(d) is None
    finally:
        writer.join()
    assert runtags.remove_dir(d) is None  # whatever the writer made after the first pass
    assert not d.exists()


_SLEEPERS = """
import os, subprocess, sys, time
# a child in the group, and one in a session of its own (as Chromium's crash handler)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(60)"])
print("started", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("ending", ["exit", "timeout"])
def test_run_stops_every_process_it_started(ending: str) -> None:
    run_id = names.new_run_id()
    script = _SLEEPERS if ending == "timeout" else _SLEEPERS.replace("time.sleep(60)\n", "")
    if ending == "exit":
        script = script.rstrip() + "\ntime.sleep(0.5)\n"  # its children outlive it
        out = runtags.run([sys.executable, "-c", script], run_id=run_id, timeout=30)
        assert out.stdout == "started\n"
    else:
        with pytest.raises(subprocess.TimeoutExpired):
            runtags.run([sys.executable, "-c", script], run_id=run_id, timeout=2)
    assert runtags.find_pids([run_id]) == {}


def test_tagged_processes_are_found_by_run_id_only() -> None:
    mine, other = names.new_run_id(), names.new_run_id()
    procs_ = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                               env=runtags.tag_env(rid), start_new_session=True)
              for rid in (mine, other)]
    try:
        deadline = time.monotonic() + 10
        while runtags.find_pids([mine]).get(mine) != [procs_[0].pid]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert runtags.find_pids([other]) == {other: [procs_[1].pid]}
    finally:
        procs.stop([p.pid for p in procs_])
        for p in procs_:
            p.wait()
    assert runtags.find_pids([mine, other]) == {}
