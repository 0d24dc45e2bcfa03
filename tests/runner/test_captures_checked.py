"""Where a run's capture set goes is checked before any namespace exists, and a disk
that fills up during the run is one error line, with nothing cut or temporary left.

``dsrlab run seed --captures X`` as a user runs it. Each bad X (a regular
file, a folder under a regular file, a symbolic link loop, a read-only
mount, a full disk, a ``latest`` that is a folder) is one ``error:`` line
naming it, exit 1, no traceback, and no namespace: the run's private state
folder (``DSRLAB_STATE_DIR``, which the first namespace's claim creates)
never comes to exist. On a 200 KiB disk the run itself fills it: one error
line naming the file that did not fit, no ``*.tmp`` anywhere, no cut file,
no ``latest``, the lab taken down.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.plumbing import names
from tests.cli.helpers import DSRLAB, ENV, REPO
from tests.mounts import fill, leftovers, read_only, small_disk

pytestmark = [pytest.mark.netns, pytest.mark.bpf]
TIMEOUT = 180


def dsrlab_run(captures: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DSRLAB, "run", "seed", "--captures", str(captures),
                           "--no-screenshot"], capture_output=True, text=True, cwd=REPO,
                          env={**ENV, "DSRLAB_STATE_DIR": str(state)}, timeout=TIMEOUT,
                          check=False, stdin=subprocess.DEVNULL)


def _a_file(tmp: Path) -> Path:
    (tmp / "afile").write_text("")
    return tmp / "afile"


def _under_a_file(tmp: Path) -> Path:
    return _a_file(tmp) / "captures"


def _a_loop(tmp: Path) -> Path:
    (tmp / "loop-a").symlink_to(tmp / "loop-b")
    (tmp / "loop-b").symlink_to(tmp / "loop-a")
    return tmp / "loop-a"


def _latest_a_folder(tmp: Path) -> Path:
    (tmp / "captures" / "seed" / "latest").mkdir(parents=True)
    return tmp / "captures"


BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a regular file": (_a_file, "captures folder {x}: is a regular file, not a folder"),
    "under a regular file": (_under_a_file, "captures folder {x}: a folder on its path is "
                                            "not a directory"),
    "a symlink loop": (_a_loop, "captures folder {x}: too many levels of symbolic links"),
    "latest a folder": (_latest_a_folder, "{x}/seed/latest: is not a symbolic link: the run "
                                          "points it at its capture set; move it away"),
}


def assert_refused_before_the_lab(out: subprocess.CompletedProcess[str], line: str,
                                  state: Path) -> None:
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines() == [f"error: {line}"], out.stderr
    assert out.returncode == 1
    # the settings check may make the state folder (it probes it): no claim in it, so
    # no namespace was made
    claims = sorted(p.name for p in state.iterdir()) if state.exists() else []
    assert claims == [], f"a namespace was made (its claim is in the state folder): {claims}"


@pytest.mark.parametrize("case", BAD)
def test_a_bad_captures_folder_is_refused_before_the_lab(tmp_path: Path, case: str) -> None:
    make, line = BAD[case]
    captures = make(tmp_path)
    state = tmp_path / "state"
    out = dsrlab_run(captures, state)
    assert_refused_before_the_lab(out, line.format(x=captures), state)


def test_a_read_only_captures_folder_is_refused_before_the_lab(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with read_only(tmp_path / "ro") as ro:
        out = dsrlab_run(ro, state)
        assert_refused_before_the_lab(
            out, f"captures folder {ro}: is on a read-only file system", state)
        out = dsrlab_run(ro / "captures", state)
        assert_refused_before_the_lab(
            out, f"captures folder {ro / 'captures'}: cannot be made: {ro} is on a "
                 "read-only file system", state)


def test_a_full_captures_disk_is_refused_before_the_lab(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with small_disk(tmp_path / "disk", "64k") as disk:
        fill(disk)
        out = dsrlab_run(disk, state)
        assert_refused_before_the_lab(
            out, f"captures folder {disk}: its file system is full (no space left on "
                 "device)", state)


def test_a_disk_that_fills_during_the_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with small_disk(tmp_path / "disk", "200k") as disk:
        out = dsrlab_run(disk, state)
        assert "Traceback" not in out.stderr, out.stderr
        lines = out.stderr.splitlines()
        assert len(lines) == 1, out.stderr
        m = re.fullmatch(rf"error: {re.escape(str(disk))}/seed/([0-9a-f]{{6}})/"
                         r"([a-z.]+): cannot write: no space left on device", lines[0])
        assert m, lines[0]
        assert out.returncode == 1
        run_id, name = m[1], m[2]
        run_dir = disk / "seed" / run_id
        assert leftovers(disk) == []
        assert not (run_dir / name).exists()  # never cut: not there at all
        assert not (disk / "seed" / "latest").exists()
        assert not list(state.glob(f"*{run_id}*"))  # no claim, no state: the lab is down
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=True).stdout
        assert names.netns_name(run_id, "client") not in netns
        assert os.path.exists(run_dir / "manifest.json")  # what fitted is whole
