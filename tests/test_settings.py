"""Every setting the lab reads from the environment is checked, and a bad one is one
line naming the variable: ``/dev/null``, ``/proc``, a regular file, a relative path or a
link into ``/proc`` for a folder; a missing, non-executable or failing program for
``CLANG``; anything but tcg/kvm for ``DSRLAB_MATRIX_ACCEL``. Through the library and
through ``dsrlab`` as a user runs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab import settings
from lab.matrix.run import kvm_usable
from lab.plumbing import owner
from tests.cli.helpers import dsrlab

DIR_VARS = {
    settings.STATE_DIR: lambda: settings.state_dir(create=True),
    settings.CACHE_DIR: settings.cache_dir,
    settings.XDG_CACHE_HOME: settings.cache_dir,
    settings.HOME: settings.cache_dir,
    settings.BPF_DIR: settings.bpf_dir,
}


@pytest.fixture
def bad_dirs(tmp_path: Path) -> dict[str, str]:
    regular = tmp_path / "regular"
    regular.write_text("not a folder")
    to_proc = tmp_path / "to-proc"
    to_proc.symlink_to("/proc/self")
    return {"/dev/null": "/dev/null is in /dev", "/proc": "/proc is in /proc",
            "/proc/self/fd": "is in /proc", "/sys/kernel": "/sys/kernel is in /sys",
            str(regular): "a regular file, not a directory",
            str(regular / "sub"): "cannot resolve|not a directory|cannot use",
            str(to_proc): "is in /proc", "relative/dir": "not an absolute path"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in (*settings.ALL, settings.HOME):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(settings.HOME, str(tmp_path / "home"))
    return monkeypatch


@pytest.mark.parametrize("var", list(DIR_VARS))
def test_a_folder_setting_that_cannot_be_used_is_one_line(
        var: str, bad_dirs: dict[str, str], clean_env: pytest.MonkeyPatch) -> None:
    for value, why in bad_dirs.items():
        clean_env.setenv(var, value)
        with pytest.raises(settings.SettingError) as info:
            DIR_VARS[var]()
        message = str(info.value)
        assert message.startswith(f"{var}='{value}': "), message
        assert "\n" not in message
        assert any(w in message for w in why.split("|")), (value, message)
        with pytest.raises(settings.SettingError, match=f"^{var}="):
            settings.check_environment()  # what `dsrlab up`, `run` and `matrix` do first


def test_usable_folders_are_made(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert settings.cache_dir() == tmp_path / "home" / ".cache" / "dsrlab" / "bpf"
    clean_env.setenv(settings.XDG_CACHE_HOME, str(tmp_path / "xdg"))
    assert settings.cache_dir() == tmp_path / "xdg" / "dsrlab" / "bpf"
    clean_env.setenv(settings.CACHE_DIR, str(tmp_path / "c"))
    assert settings.cache_dir() == tmp_path / "c" / "bpf"
    assert (tmp_path / "c" / "bpf").is_dir()
    clean_env.setenv(settings.STATE_DIR, str(tmp_path / "s" / "t"))
    assert settings.state_dir(create=True).is_dir()
    clean_env.setenv(settings.STATE_DIR, "/dev/shm")  # a tmpfs, not a pseudo file system
    assert settings.state_dir() == Path("/dev/shm")
    settings.check_environment()


def test_clang_that_cannot_run_is_one_line(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    not_exec = tmp_path / "clang-text"
    not_exec.write_text("#!/bin/sh\necho hi\n")
    failing = tmp_path / "clang-fails"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    cases = {"/dev/null": "a character device, not a program", "/proc": "a directory",
             str(not_exec): "not executable", str(tmp_path / "missing"): "no such program",
             "no-such-clang-here": "no such program", str(failing): "--version` exited 3",
             "/bin/false": "--version` exited 1"}
    for value, why in cases.items():
        clean_env.setenv(settings.CLANG, value)
        with pytest.raises(settings.SettingError) as info:
            settings.clang()
        assert str(info.value).startswith(f"CLANG='{value}': "), info.value
        assert why in str(info.value)
    clean_env.setenv(settings.CLANG, "/bin/true")
    assert settings.clang() == "/bin/true"


def test_matrix_accel_is_tcg_or_kvm(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(settings.MATRIX_ACCEL, "qemu")
    with pytest.raises(settings.SettingError, match=r"^DSRLAB_MATRIX_ACCEL='qemu': tcg or kvm"):
        kvm_usable()
    clean_env.setenv(settings.MATRIX_ACCEL, "tcg")
    assert kvm_usable() is False


def test_a_claim_in_a_bad_state_dir_is_one_error(clean_env: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    regular = tmp_path / "regular"
    regular.write_text("")
    for value in ("/dev/null", "/proc", str(regular)):
        clean_env.setenv(settings.STATE_DIR, value)
        clean_env.setattr(owner, "OWNER_DIR", Path(value))
        with pytest.raises(settings.SettingError, match=r"^DSRLAB_STATE_DIR="):
            owner.claim("abc123")
        with pytest.raises(settings.SettingError, match=r"^DSRLAB_STATE_DIR="):
            owner.run_files()
    assert regular.read_text() == ""


def _one_error(out: subprocess.CompletedProcess[str], var: str) -> None:
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"error: {var}="), out.stderr


@pytest.mark.parametrize("value", ["/dev/null", "/proc", "{regular}"])
@pytest.mark.parametrize("command", [["list"], ["clean", "--dry-run"]])
def test_dsrlab_with_a_bad_state_dir(tmp_path: Path, value: str, command: list[str]) -> None:
    regular = tmp_path / "regular"
    regular.write_text("")
    out = dsrlab(*command, env={settings.STATE_DIR: value.format(regular=regular)})
    _one_error(out, settings.STATE_DIR)


@pytest.mark.skipif(os.geteuid() != 0, reason="dsrlab datapath verify needs root")
@pytest.mark.parametrize("var", [settings.CACHE_DIR, settings.XDG_CACHE_HOME, settings.HOME,
                                 settings.BPF_DIR, settings.CLANG])
def test_dsrlab_datapath_with_a_bad_setting(tmp_path: Path, var: str) -> None:
    regular = tmp_path / "regular"
    regular.write_text("")
    for value in ("/dev/null", "/proc", str(regular), str(tmp_path / "missing" / "clang")):
        if var != settings.CLANG and value.endswith("clang"):
            continue  # a folder that does not exist yet is made
        env = {var: value}
        if var != settings.CACHE_DIR:
            env[settings.CACHE_DIR] = str(tmp_path / "cache")
        if var in (settings.XDG_CACHE_HOME, settings.HOME):
            del env[settings.CACHE_DIR]
        out = dsrlab("datapath", "verify", env=env)
        _one_error(out, var)

