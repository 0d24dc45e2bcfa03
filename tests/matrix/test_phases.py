"""Where a kernel's time goes: marks from the host, the guest's shell and its pytest,
cut into phases; the host's marks come from the VM's own lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import settings
from lab.matrix.kernels import host_kernel, load_list
from lab.matrix.phases import PHASES, phase_line, phases_from, read_marks
from lab.matrix.run import (
    GUEST_SCRIPT,
    GUEST_UP,
    PYTEST_DONE,
    _boot,
    gather,
    guest_command,
    guest_script,
)
from lab.matrix.verdict import GroupVerdict, KernelVerdict


def test_a_phase_needs_both_its_marks_and_keeps_running_order(tmp_path: Path) -> None:
    marks = tmp_path / "phases.guest"
    marks.write_text("up 100.0\nmodules 101.5\ngarbage\npytest-start 102\n"
                     "session-start 130.25\ncollected x\nverifier-done 140.0\n"
                     "collect")  # a line cut short by a killed guest
    found = read_marks(marks)
    assert found == {"up": 100.0, "modules": 101.5, "pytest-start": 102.0,
                     "session-start": 130.25, "verifier-done": 140.0}
    phases = phases_from({**found, "host-vm-start": 5.0, "host-guest-up": 45.0})
    assert [(p.name, p.seconds) for p in phases] == [
        ("boot", 40.0), ("set-up", 1.5), ("start-up", 28.25), ("verifier", 9.75)]
    # the collection's end was never marked: neither it nor anything after is guessed
    assert "collection" not in {p.name for p in phases}
    assert read_marks(tmp_path / "none") == {}


def test_every_phase_pairs_marks_of_one_clock() -> None:
    for name, start, end in PHASES:
        assert start.startswith("host-") == end.startswith("host-"), name


def test_the_phase_line_splits_the_tests_by_group() -> None:
    phases = phases_from({"collected": 10.0, "tests-done": 70.0, "host-start": 0.0,
                          "host-prepared": 2.5})
    assert phase_line(phases, {"datapath": 40.0, "scenarios": 19.5}) == (
        "prepare 2.5 s, tests 60.0 s (datapath 40.0 s, scenarios 19.5 s)")


def test_the_pytest_plugin_marks_the_session_in_order(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("def test_a():\n    pass\n")
    marks = tmp_path / "marks"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "lab.pytest_phases", f"--dsrlab-phases={marks}",
                           str(tmp_path / "test_x.py")], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [line.split()[0] for line in marks.read_text().splitlines()]
    assert names == ["session-start", "verifier-done", "collected", "tests-done"]
    values = list(read_marks(marks).values())
    assert values == sorted(values)


def test_without_the_option_the_plugin_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("def test_a():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "lab.pytest_phases", str(tmp_path / "test_x.py")],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == [
        "test_x.py"]


def test_a_vm_run_gets_every_phase_from_the_host_and_guest_marks(tmp_path: Path) -> None:
    """A stand-in VM (a shell) prints the guest's lines and writes its marks as the
    guest script does; the verdict has every phase, in order."""
    kernel = host_kernel().model_copy(update={"name": "6.1"})
    kdir = tmp_path / "6.1"
    kdir.mkdir()
    m = kdir / "phases.guest"
    steps = ["up", "modules", "pytest-start", "session-start", "verifier-done", "collected",
             "tests-done", "pytest-exit"]
    script = (f"echo '{GUEST_UP}' x; "
              + "; ".join(f'echo "{s} $(date +%s.%N)" >> {m}' for s in steps)
              + f"; echo '{PYTEST_DONE}' 0")
    boot, rc, host = _boot(["/bin/sh", "-c", script], kdir / "vm.log", boot_timeout=30,
                           timeout=60, progress=lambda _m: None, label="6.1")
    assert rc == 0
    assert boot is not None
    assert list(host) == ["host-vm-start", "host-guest-up", "host-guest-done", "host-vm-exit"]
    verdict = gather(kernel, [], tmp_path, {"host-start": 0.0, "host-prepared": 1.0, **host},
                     mode="vm", seconds=1.0)
    assert [p.name for p in verdict.phases] == [name for name, _s, _e in PHASES]
    assert all(p.seconds >= 0 for p in verdict.phases)
    assert verdict.phase_summary().startswith("prepare 1.0 s, boot ")


@pytest.mark.parametrize("value", ["abc", "5", "99999", "-1", "nan"])
def test_a_boot_limit_that_cannot_be_used_is_one_line(value: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.MATRIX_BOOT, value)
    with pytest.raises(settings.SettingError) as exc:
        settings.matrix_boot_seconds()
    assert str(exc.value).startswith(f"{settings.MATRIX_BOOT}=")
    assert "\n" not in str(exc.value)


def test_the_boot_limit_defaults_past_a_loaded_hosts_boot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.MATRIX_BOOT, raising=False)
    # a TCG boot took 125 s on a loaded CI host, which the old 120 s limit killed
    assert settings.matrix_boot_seconds() >= 300
    monkeypatch.setenv(settings.MATRIX_BOOT, "240")
    assert settings.matrix_boot_seconds() == 240.0


def test_the_guest_gets_its_script_as_a_file_its_command_line_stays_short(
        tmp_path: Path) -> None:
    """vng passes --exec on the kernel's command line (x86: 2,048 bytes); with the
    image's binds the script is longer than that, so it travels as a file."""
    kernel = host_kernel().model_copy(update={"name": "6.1"})
    groups = load_list().selected_groups(full=True)
    img = tmp_path / "python-0123.img"
    command = guest_command(kernel, groups, tmp_path, image=img)
    script = guest_script(kernel, groups, tmp_path, image=img)
    assert len(script) > 2048
    assert len(command) < 256
    assert command == f"sh {tmp_path / '6.1' / GUEST_SCRIPT}"
    assert (tmp_path / "6.1" / GUEST_SCRIPT).read_text() == script + "\n"


def test_the_verifier_rows_are_not_counted_among_the_tests() -> None:
    verdict = KernelVerdict(
        kernel=host_kernel(), mode="direct", seconds=9.0,
        phases=phases_from({"collected": 0.0, "tests-done": 9.0}),
        groups=[GroupVerdict(group="verifier", outcome="pass"),
                GroupVerdict(group="cilium-verifier v1.16.0", outcome="pass"),
                GroupVerdict(group="datapath", outcome="pass", seconds=9.0)])
    assert verdict.phase_summary() == "tests 9.0 s (datapath 9.0 s)"
