"""Every file the lab writes, written whole or not at all.

An output is written to a temporary file beside it (``.<name>.<random>.tmp``,
same folder, so same file system), synced, and renamed over its place: a
reader sees the old file or the new one, never half of one. Whatever stops
the writing (a full disk, a read-only file system, a permission, an
exception, Ctrl-C) removes the temporary file and leaves the old output as it
was; a failure of the file system becomes one :class:`OutputError`,
``<path>: cannot write: no space left on device``.

:class:`AtomicFile` is the one writer (a binary file for ``with``);
:func:`write_bytes`, :func:`write_text`, :func:`copy_file` and
:func:`replace_symlink` are its everyday forms. The path itself is replaced:
a symbolic link there is replaced by the file, never followed (a caller that
means the link's target resolves it first, as :mod:`lab.wire.paths` does).

This module imports only :mod:`lab.errors`: every layer of the lab writes
through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from lab.errors import LabError

# what a file system answers a writer of an open file (full, over quota, read-only,
# failing): raised by a library writing the temporary file by name, turned into one
# OutputError naming the output; any other OSError there (an input it could not read,
# a bug) keeps its own story
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
COPY_CHUNK = 1 << 20


class OutputError(LabError):
    """An output the lab could not write; the message names the file and says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def reason(exc: OSError) -> str:
    """Why a file could not be written, in words (``no space left on device``...)."""
    words = {errno.ENOENT: "its folder does not exist",
             errno.EACCES: "permission denied", errno.EPERM: "permission denied",
             errno.ENOTDIR: "a folder on its path is not a directory",
             errno.ELOOP: "too many levels of symbolic links",
             errno.EISDIR: "is a directory"}
    if exc.errno in words:
        return words[exc.errno]
    return (exc.strerror or str(exc)).lower()


def is_write_error(exc: BaseException) -> bool:
    """True for an :class:`OSError` a file system gives a writer (full, read-only...)."""
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


def temp_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.<8 hex>.tmp``."""
    return path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")


class AtomicFile:
    """A binary file written as ``.<name>.<random>.tmp`` beside ``path`` and renamed over
    it by :meth:`commit` (or leaving the ``with`` block normally); :meth:`discard` (or
    leaving it by any exception, ``KeyboardInterrupt`` too) removes it.

    ``shown`` is the path error messages name (default ``path``). An existing
    output keeps its permission bits (and owner, as root); a new one gets
    ``mode`` less the umask. :attr:`tmp_path` may be opened again by a
    library that insists on a file name; its writes are synced by
    :meth:`commit` too (same file).
    """

    error: Callable[[str | Path, str], LabError] = OutputError

    def __init__(self, path: str | Path, *, shown: str | Path | None = None,
                 mode: int = 0o666) -> None:
        self.path = Path(path)
        self.shown = shown if shown is not None else path
        self.tmp_path = temp_name(self.path)
        try:
            fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         mode)
        except OSError as exc:
            raise self.error(self.shown, f"cannot write in {self.path.parent}: "
                             f"{reason(exc)}") from None
        try:
            self._f: BinaryIO | None = open(fd, "wb")  # noqa: SIM115 (closed by commit/discard)
        except BaseException:
            os.close(fd)
            self._unlink()
            raise
        with contextlib.suppress(OSError):
            old = os.stat(self.path, follow_symlinks=False)
            if stat.S_ISREG(old.st_mode):
                os.chmod(fd, stat.S_IMODE(old.st_mode))
                if os.geteuid() == 0:
                    os.chown(fd, old.st_uid, old.st_gid)

    @property
    def file(self) -> BinaryIO:
        if self._f is None:
            raise self.error(self.shown, "written after it was closed")
        return self._f

    def _fail(self, exc: OSError) -> LabError:
        self.discard()
        return self.error(self.shown, f"cannot write: {reason(exc)}")

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as exc:
            raise self._fail(exc) from None

    def commit(self) -> Path:
        """Flush, sync and rename the temporary file over ``path``; returns ``path``."""
        if self._f is None:
            return self.path
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None
            os.replace(self.tmp_path, self.path)
        except OSError as exc:
            raise self._fail(exc) from None
        except BaseException:
            self.discard()
            raise
        _sync_folder(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Drop what was written; ``path`` stays as it was."""
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
        self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.tmp_path)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.commit()
            return
        self.discard()
        if isinstance(exc, OSError) and is_write_error(exc):  # a library wrote tmp_path
            raise self.error(self.shown, f"cannot write: {reason(exc)}") from None


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes, *, mode: int = 0o666) -> Path:
    """``data`` as the whole content of ``path`` (see :class:`AtomicFile`)."""
    with AtomicFile(path, mode=mode) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, mode: int = 0o666) -> Path:
    """``text`` (UTF-8) as the whole content of ``path`` (see :class:`AtomicFile`)."""
    return write_bytes(path, text.encode("utf-8"), mode=mode)


def copy_file(src: str | Path, path: str | Path, *, mode: int = 0o666) -> Path:
    """A copy of the regular file ``src`` put in place at ``path`` (see :class:`AtomicFile`);
    a link at ``path`` is replaced, never followed."""
    with AtomicFile(path, mode=mode) as out:
        try:
            src_f = open(src, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise OutputError(src, f"cannot read: {reason(exc)}") from None
        with src_f:
            while chunk := src_f.read(COPY_CHUNK):
                out.write(chunk)
    return Path(path)


def replace_symlink(path: str | Path, target: str) -> Path:
    """Point the symbolic link ``path`` at ``target`` (made beside it, renamed over it).

    Refused (:class:`OutputError`) when ``path`` is something other than a
    symbolic link (a folder, a file): that is not the lab's to replace.
    """
    link = Path(path)
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(link)
        if not stat.S_ISLNK(st.st_mode):
            raise OutputError(link, "exists and is not a symbolic link: the lab "
                              "replaces only its own link there; move it away")
    tmp = temp_name(link)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(link, f"cannot write: {reason(exc)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return link


def check_folder(path: str | Path, what: str = "folder") -> None:
    """Refuse (:class:`OutputError`), before any work, a folder outputs cannot go to.

    ``path`` must be a directory this process can write in, on a file system
    with free space, or not exist yet under such a directory (it is made
    when the first output goes there). A regular file there, a symbolic
    link loop or dangling link, a read-only mount, a full file system are
    each refused with one line naming ``path`` as ``what``.
    """
    folder = Path(path)
    label = f"{what} {folder}"
    probe = folder
    while True:
        try:
            st = os.stat(probe)
            break
        except FileNotFoundError:
            if os.path.islink(probe):
                what = "" if probe == folder else f"{probe} "
                raise OutputError(label, f"{what}is a symbolic link to nothing") from None
            parent = probe.parent
            if parent == probe:
                raise OutputError(label, "no folder on its path exists") from None
            probe = parent
        except OSError as exc:
            raise OutputError(label, reason(exc)) from None
        except ValueError:  # an embedded NUL
            raise OutputError(label, "not a valid path") from None
    if not stat.S_ISDIR(st.st_mode):
        where = "is" if probe == folder else f"cannot be made: {probe} is"
        raise OutputError(label, f"{where} {_kind(st.st_mode)}, not a folder")
    made = "" if probe == folder else f"cannot be made: {probe} "  # (trailing space)
    if not os.access(probe, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if _read_only(probe) else "is not writable"
        raise OutputError(label, f"{made}{why}")
    test_file = temp_name(probe / "probe")  # what the file system says, not only the
    try:                                    # permission bits (/proc, /sys...)
        os.close(os.open(test_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o600))
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
        raise OutputError(label, f"{made or ''}cannot hold a new file: {why}") from None
    with contextlib.suppress(OSError):
        os.unlink(test_file)
    try:
        free = os.statvfs(probe)
    except OSError:
        return
    left = free.f_bfree if os.geteuid() == 0 else free.f_bavail
    if free.f_blocks > 0 and left == 0:
        raise OutputError(label, "its file system is full (no space left on device)")


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a directory"


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
