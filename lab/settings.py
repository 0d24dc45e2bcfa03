"""Every setting the lab takes from the environment, read and checked in one place.

=========================  ==================================================
``DSRLAB_STATE_DIR``       run owner and state files (default ``/run/dsrlab``)
``DSRLAB_CACHE_DIR``       the BPF object cache (``$DSRLAB_CACHE_DIR/bpf``)
``XDG_CACHE_HOME``         without ``DSRLAB_CACHE_DIR``: ``$XDG_CACHE_HOME/dsrlab``
``HOME``                   without either: ``~/.cache/dsrlab``
``DSRLAB_BPF_DIR``         the datapath's C sources (default: the checkout's ``bpf/``)
``CLANG``                  the compiler (default: ``clang`` on ``PATH``)
``DSRLAB_MATRIX_ACCEL``    the kernel matrix's QEMU accelerator, ``tcg`` or ``kvm``
``DSRLAB_MATRIX_BOOT_S``   seconds a TCG guest may take to boot (default 600)
``DSRLAB_MATRIX_IMAGE``    ``off``: the guests read Python over 9p (no image)
=========================  ==================================================

A value that cannot be used is a :class:`SettingError` of one line naming
the variable, its value (escaped, short) and why: a folder the lab writes
must be a directory it can create and write, outside ``/proc``, ``/sys`` and
``/dev`` (``/dev/shm`` aside); a folder it reads must exist; a program must
exist and run. Each accessor reads the environment when called (never at
import), so a test or a caller may change it.

This module imports only :mod:`lab.errors` and :mod:`lab.safetext`; every
layer may use it.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from lab.errors import LabError
from lab.safetext import excerpt

STATE_DIR = "DSRLAB_STATE_DIR"
CACHE_DIR = "DSRLAB_CACHE_DIR"
XDG_CACHE_HOME = "XDG_CACHE_HOME"
HOME = "HOME"
BPF_DIR = "DSRLAB_BPF_DIR"
CLANG = "CLANG"
MATRIX_ACCEL = "DSRLAB_MATRIX_ACCEL"
MATRIX_BOOT = "DSRLAB_MATRIX_BOOT_S"
MATRIX_IMAGE = "DSRLAB_MATRIX_IMAGE"
ALL = (STATE_DIR, CACHE_DIR, XDG_CACHE_HOME, BPF_DIR, CLANG, MATRIX_ACCEL, MATRIX_BOOT,
       MATRIX_IMAGE)
"""The lab's own settings (``HOME`` is checked where the lab falls back to it)."""

DEFAULT_STATE_DIR = Path("/run/dsrlab")
DEFAULT_BPF_DIR = Path(__file__).resolve().parents[1] / "bpf"
_PSEUDO = (Path("/proc"), Path("/sys"), Path("/dev"))
_PSEUDO_OK = (Path("/dev/shm"),)
_PROGRAM_TIMEOUT_S = 10.0
_SHOWN_CHARS = 256  # a path is shown whole up to this (escaped), a longer value cut


class SettingError(LabError, ValueError):
    """A setting from the environment that cannot be used: one line naming it."""


def _value(var: str) -> str | None:
    """The variable's value; unset and empty are the same (the default)."""
    return os.environ.get(var) or None


def _named(var: str | None, value: str | Path) -> str:
    if var is None:
        return f"{value}"
    return f"{var}={excerpt(str(value), _SHOWN_CHARS)}" if _value(var) is not None else \
        f"{value} (the default, {var} unset)"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a directory"


def check_dir(path: Path, var: str | None, *, create: bool) -> Path:
    """``path`` as a folder the lab uses, named after ``var`` in errors.

    ``create``: the lab writes there, so the folder is made (with its parents) and a
    file is made and removed in it; else it need not exist, but if it does it must
    be a directory. Never under ``/proc``, ``/sys`` or ``/dev`` (``/dev/shm`` aside).
    """
    where = _named(var, path)
    if "\0" in str(path):
        raise SettingError(f"{where}: a path cannot hold a NUL byte")
    if not path.is_absolute():
        raise SettingError(f"{where}: not an absolute path")
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise SettingError(f"{where}: cannot resolve: {exc}") from None
    for pseudo in _PSEUDO:
        if real.is_relative_to(pseudo) and not any(real.is_relative_to(ok) for ok in _PSEUDO_OK):
            raise SettingError(f"{where}: {real} is in {pseudo}, not a place for the lab's files")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise SettingError(f"{where}: cannot use: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISDIR(mode):
        raise SettingError(f"{where}: {_kind(mode)}, not a directory")
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dsrlab-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SettingError(f"{where}: cannot create or write in it: "
                           f"{exc.strerror or exc}") from None
    return path


def state_dir_path() -> Path:
    """Where run owner and state files are, not checked (for module constants)."""
    value = _value(STATE_DIR)
    return Path(value) if value is not None else DEFAULT_STATE_DIR


def state_dir(*, create: bool = False) -> Path:
    """``$DSRLAB_STATE_DIR`` or ``/run/dsrlab``, checked (:func:`check_dir`)."""
    return check_dir(state_dir_path(), STATE_DIR, create=create)


def cache_dir() -> Path:
    """The BPF object cache, made and checked: ``$DSRLAB_CACHE_DIR/bpf``, else
    ``$XDG_CACHE_HOME/dsrlab/bpf``, else ``~/.cache/dsrlab/bpf``. The error names the
    variable that chose it."""
    for var, sub in ((CACHE_DIR, ("bpf",)), (XDG_CACHE_HOME, ("dsrlab", "bpf"))):
        value = _value(var)
        if value is not None:
            check_dir(Path(value), var, create=True)
            return check_dir(Path(value).joinpath(*sub), var, create=True)
    home = _value(HOME)
    named: str | None = HOME
    if home is None:
        named = None
        try:
            home = str(Path.home())
        except RuntimeError:
            raise SettingError(f"{HOME} unset and no home folder for this user: set "
                               f"{CACHE_DIR} to a folder for the lab's cache") from None
    check_dir(Path(home), named, create=False)
    return check_dir(Path(home) / ".cache" / "dsrlab" / "bpf", named, create=True)


def bpf_dir() -> Path:
    """``$DSRLAB_BPF_DIR`` (an existing folder) or the checkout's ``bpf/``."""
    value = _value(BPF_DIR)
    if value is None:
        return DEFAULT_BPF_DIR
    path = check_dir(Path(value), BPF_DIR, create=False)
    if not path.is_dir():
        raise SettingError(f"{_named(BPF_DIR, value)}: no such directory")
    return path


def clang() -> str:
    """``$CLANG`` or ``clang`` on ``PATH``, a program that runs (``--version``)."""
    value = _value(CLANG)
    if value is None:
        found = shutil.which("clang")
        if found is None:
            raise SettingError("clang not found on PATH (install clang, or set "
                               "CLANG=/path/to/clang)")
        return found
    return check_program(value, CLANG)


def check_program(value: str, var: str) -> str:
    """``value`` as a program to run: found (a path, or a name on ``PATH``), a
    regular executable file, and ``value --version`` exits 0."""
    where = _named(var, value)
    if "\0" in value:
        raise SettingError(f"{where}: a program name cannot hold a NUL byte")
    found = shutil.which(value) if os.sep not in value else value
    if found is None or not os.path.lexists(found):
        raise SettingError(f"{where}: no such program")
    return _runs(found, where)


@functools.cache
def _runs_cached(path: str, mtime_ns: int) -> str | None:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, check=False,
                              timeout=_PROGRAM_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"`{path} --version` did not finish within {_PROGRAM_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return f"cannot run: {exc.strerror or exc}"
    if proc.returncode != 0:
        return f"`{path} --version` exited {proc.returncode}"
    return None


def _runs(path: str, where: str) -> str:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SettingError(f"{where}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else _kind(st.st_mode)
        raise SettingError(f"{where}: {kind}, not a program")
    if not os.access(path, os.X_OK):
        raise SettingError(f"{where}: not executable")
    why = _runs_cached(path, st.st_mtime_ns)
    if why is not None:
        raise SettingError(f"{where}: {why}")
    return path


def matrix_accel() -> Literal["tcg", "kvm"] | None:
    """``$DSRLAB_MATRIX_ACCEL``: ``tcg``, ``kvm`` or unset (the matrix decides)."""
    value = _value(MATRIX_ACCEL)
    if value is None:
        return None
    if value == "tcg":
        return "tcg"
    if value == "kvm":
        return "kvm"
    raise SettingError(f"{_named(MATRIX_ACCEL, value)}: tcg or kvm (or unset)")


# A TCG guest boots in 25-50 s on a quiet 2-core host and took over 120 s on a
# loaded one (the old fixed limit killed it); a guest that hangs is still stopped
# by the run's own limit
DEFAULT_MATRIX_BOOT_S = 600.0


def matrix_boot_seconds() -> float:
    """``$DSRLAB_MATRIX_BOOT_S``: how long a TCG guest may take to reach its first
    command (a number of seconds, 10 to 3600; default 600)."""
    value = _value(MATRIX_BOOT)
    if value is None:
        return DEFAULT_MATRIX_BOOT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 10 <= seconds <= 3600:
        raise SettingError(f"{_named(MATRIX_BOOT, value)}: a number of seconds, 10 to 3600")
    return seconds


def matrix_image() -> bool:
    """``$DSRLAB_MATRIX_IMAGE``: ``on`` (the default) or ``off``."""
    value = _value(MATRIX_IMAGE)
    if value is None or value == "on":
        return True
    if value == "off":
        return False
    raise SettingError(f"{_named(MATRIX_IMAGE, value)}: on or off (or unset)")


def check_environment(names: tuple[str, ...] = (*ALL, HOME)) -> None:
    """Every one of ``names`` that is set, checked as the lab will use it, before a
    lab starts: a :class:`SettingError` with one line per unusable setting. The
    cache folder is checked through whichever of ``DSRLAB_CACHE_DIR``,
    ``XDG_CACHE_HOME`` and ``HOME`` chooses it."""
    checks = {STATE_DIR: lambda: state_dir(create=os.geteuid() == 0),
              CACHE_DIR: cache_dir, XDG_CACHE_HOME: cache_dir, HOME: cache_dir,
              BPF_DIR: bpf_dir, CLANG: clang, MATRIX_ACCEL: matrix_accel,
              MATRIX_BOOT: matrix_boot_seconds, MATRIX_IMAGE: matrix_image}
    problems: list[str] = []
    for var in names:
        if _value(var) is None or var not in checks:
            continue
        try:
            checks[var]()
        except SettingError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    if problems:
        raise SettingError("\n".join(problems))
