"""``captures/<scenario>/latest`` only ever names a complete capture set.

A real ``dsrlab run seed`` is killed with SIGKILL (no cleanup at all) once
its new set holds ``manifest.json`` but before it is finished; ``latest``,
which named an earlier complete set, must still name it. A set is complete
when it holds ``results.json`` (lab.runner.scenario's docstring).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.capture.layout import LATEST, MANIFEST, RESULTS
from lab.plumbing import owner

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.netns, pytest.mark.bpf]


def _claimed_by(pid: int) -> set[str]:
    """Run ids whose owner file names ``pid``."""
    found = set()
    for run_id, files in owner.run_files().items():
        for f in files:
            with contextlib.suppress(OSError, IndexError):
                if f.name.endswith(".owner") and f.read_text().split()[0] == str(pid):
                    found.add(run_id)
    return found


def test_killed_run_does_not_move_latest(tmp_path: Path) -> None:
    seed = tmp_path / "captures" / "seed"
    old = seed / "000000"
    old.mkdir(parents=True)
    (old / RESULTS).write_text("{}\n")
    (seed / LATEST).symlink_to(old.name)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    run_ids: set[str] = set()
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "run", "seed", "--captures",
                             str(tmp_path / "captures"), "--no-screenshot"], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any(p.name != old.name for p in seed.glob(f"*/{MANIFEST}")):
            assert proc.poll() is None, "the run ended before its manifest was written"
            assert time.monotonic() < deadline, "no manifest.json within 30 s"
            time.sleep(0.001)
        run_ids = _claimed_by(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        new = next(p.parent for p in seed.glob(f"*/{MANIFEST}") if p.parent != old)
        target = os.readlink(seed / LATEST)
        if (new / RESULTS).exists():  # killed late: latest may name it only when it is whole
            assert target in (old.name, new.name)
            if target == new.name:
                assert (new / "merged.pcapng").exists()
                assert (new / "report.html").exists()
        else:
            assert target == old.name, "latest moved to a set without results.json"
    finally:
        run_ids |= _claimed_by(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for run_id in run_ids:  # SIGKILL left the lab: remove it by its run id
            subprocess.run([sys.executable, "-m", "lab.cli", "clean", run_id], cwd=REPO,
                           env=env, capture_output=True, check=False, timeout=60)
