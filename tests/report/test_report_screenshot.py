"""The report rendered by real headless Chromium to a PNG (what `make demo` does)."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.env import cleanup
from lab.plumbing import names, procs
from lab.report import screenshot as shot
from tests.marks import MARK, marked, new_mark


def test_chromium_renders_a_page_to_png(tmp_path: Path) -> None:
    if not shot.available():
        pytest.skip("needs Debian's chromium (scripts/install.sh installs it)")
    html = tmp_path / "report.html"
    html.write_text("<!doctype html><title>t</title><h1 id=x>dsrlab</h1>")
    png = shot.screenshot(html, width=640, height=480)
    assert png == tmp_path / "report.png"
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (640, 480)


def test_a_missing_chromium_is_a_clear_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shot, "CHROMIUM", "no-such-chromium-binary")
    with pytest.raises(shot.ScreenshotError, match="chromium is not installed"):
        shot.screenshot(tmp_path / "report.html")


# -- stopping Chromium: nothing of it is left, however the screenshot ends -----------------

REPO = Path(__file__).resolve().parents[2]
# a page whose load never ends: Chromium runs until it is stopped (no race with its speed)
HANGING = "<!doctype html><title>t</title><h1>dsrlab</h1><script>for(;;){}</script>"
WAIT_S = 60.0

_SHOT = """
import sys
from pathlib import Path
from lab.plumbing import interrupts
from lab.report.screenshot import ScreenshotError, screenshot

interrupts.install()  # as dsrlab does: SIGINT, SIGTERM, SIGHUP... raise an interrupt
kwargs = {"run_id": sys.argv[3]} if sys.argv[3] else {}
try:
    screenshot(Path(sys.argv[1]), timeout_s=float(sys.argv[2]), **kwargs)
    print("finished")
except ScreenshotError as exc:
    print("error:", exc)
except KeyboardInterrupt:
    print("interrupted")
"""


def _renderer_running(mark: str) -> bool:
    for pid in marked(mark):
        try:
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


@dataclass
class Shot:
    proc: subprocess.Popen[str]
    mark: str
    tmp: Path  # the TMPDIR it ran with (private to the case)


@pytest.fixture
def shoot(tmp_path: Path) -> Iterator[Callable[..., Shot]]:
    """Start a screenshot of a page that never loads in a subprocess of its own TMPDIR
    and mark; every case's processes are stopped afterwards, whatever it asserted."""
    if not shot.available():
        pytest.skip("needs Debian's chromium (scripts/install.sh installs it)")
    started: list[Shot] = []

    def _start(timeout_s: float = 60.0, run_id: str = "") -> Shot:
        html = tmp_path / "hanging.html"
        html.write_text(HANGING)
        # short: Chromium's sockets go in TMPDIR, and a socket's path has 107 bytes at most
        tmp = Path(tempfile.mkdtemp(prefix="dsrlab-test-", dir="/tmp"))
        mark = new_mark()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": str(tmp), MARK: mark}
        proc = subprocess.Popen([sys.executable, "-c", _SHOT, str(html), str(timeout_s), run_id],
                                cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_signals)  # noqa: PLW1509
        started.append(Shot(proc, mark, tmp))
        return started[-1]

    yield _start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()
        procs.stop(marked(s.mark))
        shutil.rmtree(s.tmp, ignore_errors=True)


def _default_signals() -> None:
    os.setsid()  # a session of the case's own: what is in it is the case's
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


def _until_rendering(s: Shot) -> None:
    deadline = time.monotonic() + WAIT_S
    while not _renderer_running(s.mark):
        assert s.proc.poll() is None, s.proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "Chromium never started rendering"
        time.sleep(0.02)


def _nothing_left(s: Shot) -> None:
    """Checked as soon as the call returned: it waits for what it started."""
    assert marked(s.mark) == [], "Chromium processes left running"
    assert sorted(p.name for p in s.tmp.iterdir()) == [], "files left in TMPDIR"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_an_interrupted_screenshot_leaves_nothing(shoot: Callable[..., Shot], sig: int) -> None:
    """A signal while Chromium renders: the call raises the interrupt (no OSError from
    a profile still being written), and Chromium, its helpers (including the crash
    handlers that leave its process group) and its files, TMPDIR included, are gone."""
    s = shoot()
    _until_rendering(s)
    s.proc.send_signal(sig)
    out, err = s.proc.communicate(timeout=WAIT_S)
    assert (s.proc.returncode, out.strip()) == (0, "interrupted"), err
    assert "Traceback" not in err, err
    _nothing_left(s)


def test_a_screenshot_that_times_out_leaves_nothing(shoot: Callable[..., Shot]) -> None:
    s = shoot(timeout_s=3)
    out, err = s.proc.communicate(timeout=WAIT_S)
    assert out.strip() == "error: chromium did not finish within 3s", err
    _nothing_left(s)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (reaped late by PID 1 here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_screenshot_is_found_by_its_run_id(shoot: Callable[..., Shot]) -> None:
    """SIGKILL while Chromium renders: its scratch directory and processes carry the run
    id, and cleaning that run id (what ``dsrlab clean RUN_ID`` does) removes them."""
    run_id = names.new_run_id()
    s = shoot(run_id=run_id)
    _until_rendering(s)
    s.proc.kill()
    s.proc.communicate()
    assert marked(s.mark), "Chromium went with its parent: nothing to find"
    old_tmp = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(s.tmp)  # the run's TMPDIR, as a user's shell would have it
    tempfile.tempdir = None
    try:
        # Chromium's survivors may still start helpers: every process there was before
        # the search is found (and _nothing_left below shows none outlives the clean)
        before = set(marked(s.mark))
        res = cleanup.find_runs([run_id])[run_id]
        assert [d.parent for d in res.temp_dirs] == [s.tmp]
        missing = before - set(res.pids)  # only processes that ended meanwhile
        assert not [pid for pid in missing if _running(pid)], (missing, res.pids)
        done = cleanup.clean_run(res)
    finally:
        if old_tmp is None:
            os.environ.pop("TMPDIR")
        else:
            os.environ["TMPDIR"] = old_tmp
        tempfile.tempdir = None
    assert not [line for line in done if line.startswith("could not")], done
    _nothing_left(s)
