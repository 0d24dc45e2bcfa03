"""Standard output that fails is an output error like any other: one line, exit 1.

``dsrlab list | head -1`` (the reader leaves: a broken pipe), ``dsrlab plan
t.yaml >/dev/full`` (no space left on device), ``dsrlab review x.pcap >&-``
(no standard output at all): each ends with one ``error: standard output:
...`` line on stderr and exit status :data:`EXIT_CODE`, never a traceback,
whichever command and whichever way it prints (Rich, ``sys.stdout.write``,
Typer's echo). :func:`guarded` does it for every command, in one place:

* before the command runs, a closed descriptor 0, 1 or 2 is given
  ``/dev/null`` (so no file the lab opens later becomes its "standard
  output" by taking the free number), and a closed standard output is
  refused there and then: the command would do its work and then have
  nowhere to say what it did (``dsrlab up`` the run id of the lab it left
  up);
* ``sys.stdout`` is replaced by a stream on the same descriptor whose
  failures are a :class:`StdoutError` (a :class:`~lab.errors.LabError`):
  inside a command's ``one_line_errors`` block it is its one line; anywhere
  else :func:`guarded` prints it. The output is flushed before the command
  is done, so a failure of the last line is one too; afterwards whatever is
  still buffered is dropped.

Likewise any other :class:`~lab.errors.LabError` that reaches the top (a
file that could not be written, raised where a command did not expect it)
is its one ``error:`` line and exit 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.safetext import escaped

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

EXIT_CODE = 1  # as every other error of a command; 2 stays for usage errors
STDIN, STDOUT, STDERR = 0, 1, 2


class StdoutError(LabError):
    """Standard output could not be written."""


def describe(exc: OSError) -> str:
    """What went wrong with standard output, in words."""
    if exc.errno == errno.EPIPE:
        why = "broken pipe (its reader stopped reading)"
    elif exc.errno == errno.EBADF:
        why = "closed"
    else:
        why = (exc.strerror or str(exc)).lower()
    return f"standard output: {why}"


class _Raw(io.RawIOBase):
    """Descriptor 1, its first write error raised as :class:`StdoutError` and kept in
    :attr:`failed`; from then on (and once :attr:`dropping`) what it is given is
    dropped: the failure is told once, the process is on its way out."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.failed: str | None = None
        self.dropping = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False

    def write(self, b: ReadableBuffer, /) -> int:
        if self.dropping or self.failed is not None:
            return memoryview(b).nbytes
        try:
            return os.write(self._fd, b)
        except OSError as exc:
            self.failed = describe(exc)
            raise StdoutError(self.failed) from None


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _reserve(fd: int) -> None:
    """Give a closed descriptor ``fd`` /dev/null."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    if null != fd:
        os.dup2(null, fd, inheritable=True)
        os.close(null)
    else:
        os.set_inheritable(fd, True)


def _say(message: str) -> None:
    """``error: message`` on stderr (nothing if stderr fails too)."""
    with contextlib.suppress(Exception):
        from lab.cli.output import note

        note("error", message, "red")
        return
    with contextlib.suppress(Exception):
        sys.stderr.write(f"error: {escaped(message)}\n")
        sys.stderr.flush()


def _install() -> _Raw:
    """``sys.stdout`` on descriptor 1 through a :class:`_Raw`; returns the raw stream."""
    old = sys.stdout
    raw = _Raw(STDOUT)
    stream = io.TextIOWrapper(io.BufferedWriter(raw),
                              encoding=getattr(old, "encoding", None) or "utf-8",
                              errors=getattr(old, "errors", None) or "strict",
                              line_buffering=raw.isatty())
    with contextlib.suppress(Exception):
        if old is not None:
            old.flush()
    sys.stdout = stream
    return raw


def guarded(main: Callable[[], object]) -> None:
    """Run ``main`` (the Typer app) with standard output failures as one error line."""
    stdout_closed = sys.stdout is None or _closed(STDOUT)
    for fd in (STDIN, STDOUT, STDERR):
        if _closed(fd):
            _reserve(fd)
    if stdout_closed:
        _say("standard output is closed: nothing the command prints could be shown "
             "(to discard it: >/dev/null)")
        raise SystemExit(EXIT_CODE)
    raw = _install()
    code: int | str | None = 0
    try:
        try:
            main()
        except SystemExit as exc:  # how a command ends: what is buffered goes out first
            code = exc.code
        except BaseException:  # an interrupt, a bug: that is the story, not stdout
            with contextlib.suppress(StdoutError):
                sys.stdout.flush()
            raise
        sys.stdout.flush()
    except LabError as exc:  # nobody told it (stdout, a file, outside one_line_errors)
        _say(str(exc))
        raise SystemExit(EXIT_CODE) from None
    finally:
        raw.dropping = True  # the interpreter's last flush cannot fail any more
    if raw.failed is not None and code in (0, None):  # caught and passed over on the way
        _say(raw.failed)
        code = EXIT_CODE
    raise SystemExit(code)
