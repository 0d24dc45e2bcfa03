"""Files a user names: what the path is before it is opened, and outputs written whole.

An input must be a regular file: a FIFO would block the reader until some
writer comes (forever, usually), a character device such as ``/dev/zero``
never ends and ``/dev/null`` is always empty. :func:`open_input` looks
(``stat``) before it opens, opens with ``O_NONBLOCK`` (so a path swapped for
a FIFO between the look and the open cannot block either) and looks again at
what it opened. Every refusal is a :class:`PathError` saying what the path is:
``does not exist``, ``permission denied``, ``not a regular file: a FIFO``,
``not a regular file: a character device``, ``not a regular file: a
directory``...

An output is written to a temporary file in its own folder and renamed over
the output path when it is complete (:class:`AtomicOutput`): the output is
never opened, let alone truncated, while the inputs are read; a run that
fails (a full disk, an interrupt) leaves the old output, if any, as it was,
and no temporary file. :func:`check_output` refuses, before anything runs,
an output that is one of the inputs (also through a symbolic or hard link),
a directory or any other file that is not a regular one, in a folder that
does not exist or cannot be written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from lab.atomic import AtomicFile
from lab.errors import LabError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISREG, "a regular file"),
)


class PathError(LabError):
    """A path that cannot be used as asked; ``reason`` says what it is or why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def kind(mode: int) -> str:
    """What a ``st_mode`` is: ``a FIFO``, ``a character device``, ``a directory``..."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "an unknown kind of file"


def os_reason(exc: OSError) -> str:
    """An :class:`OSError` about a path, in words: ``does not exist``, ``permission denied``..."""
    if exc.errno == errno.ENOENT:
        return "does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOTDIR:
        return "a folder on its path is not a directory"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return (exc.strerror or str(exc)).lower()


def _not_regular(mode: int) -> str:
    return f"not a regular file: {kind(mode)}"


def check_input(path: str | Path) -> os.stat_result:
    """``path``'s stat (links followed) if it is a regular file, else :class:`PathError`."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PathError(path, os_reason(exc)) from None
    except ValueError:  # an embedded NUL
        raise PathError(path, "not a valid path") from None
    if not stat.S_ISREG(st.st_mode):
        raise PathError(path, _not_regular(st.st_mode))
    if not os.access(path, os.R_OK):
        raise PathError(path, "permission denied")
    return st


def open_input(path: str | Path) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file ``path`` and its stat; never blocks.

    Raises :class:`PathError` for anything else (see the module doc). The
    caller closes the descriptor.
    """
    check_input(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise PathError(path, os_reason(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since the stat
            raise PathError(path, _not_regular(st.st_mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_input(path: str | Path) -> bytes:
    """The whole content of the regular file ``path`` (:class:`PathError` otherwise)."""
    fd, _st = open_input(path)
    try:
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as exc:
        raise PathError(path, f"cannot read: {os_reason(exc)}") from None
    finally:
        os.close(fd)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """The file an output named ``path`` will replace (symbolic links resolved), if usable.

    :class:`PathError` when ``path`` is one of ``inputs`` (the same file,
    through any link), exists and is not a regular file, or its folder does
    not exist, is not a directory or cannot be written.
    """
    target = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise PathError(path, os_reason(exc)) from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise PathError(path, _not_regular(st.st_mode))
        for i in inputs:
            with contextlib.suppress(OSError):
                if _same(st, os.stat(i)):
                    raise PathError(path, f"is the input file {i}: write the output "
                                    "somewhere else")
    folder = target.parent
    try:
        fst = os.stat(folder)
    except OSError as exc:
        raise PathError(path, f"folder {folder} {os_reason(exc)}") from None
    if not stat.S_ISDIR(fst.st_mode):
        raise PathError(path, f"{folder} is {kind(fst.st_mode)}, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if _read_only(folder) else "is not writable"
        raise PathError(path, f"folder {folder} {why}")
    return target


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class AtomicOutput(AtomicFile):
    """A binary output a user named, checked with :func:`check_output` against
    ``inputs`` first and written whole or not at all (:class:`lab.atomic.AtomicFile`:
    a temporary file beside it, renamed over it at :meth:`commit`); a symbolic link
    at ``path`` is followed, its target replaced. Every failure is a :class:`PathError`
    naming ``path``.
    """

    error = PathError

    def __init__(self, path: str | Path, inputs: Iterable[str | Path] = ()) -> None:
        super().__init__(check_output(path, inputs), shown=path)
