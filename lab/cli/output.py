"""How the ``dsrlab`` command prints: the consoles, the piped-output policy, one-line errors.

On a terminal the output is Rich: tables with borders and colours, spinners
while something runs. Not on a terminal (a pipe, a file, a CI log) every
value shows whole, so ``dsrlab review x.pcap | grep 172.18.0.2:32000`` finds
what it looks for: tables become plain text, one line per row, columns
aligned with spaces, a header line, no borders, no colours, nothing cut or
wrapped; no spinner or progress bar. Whether stdout is a terminal is asked
of stdout itself (``isatty``), not of ``FORCE_COLOR``/``TTY_COMPATIBLE``.

Lines are never wrapped or cut by Rich, on a terminal either (soft wrap:
the terminal wraps them, so a path or command copied from it stays whole).

Control characters in anything printed (a path, a name, a message quoting a
file) are shown escaped (``\x1b``, ``\u202e``; :func:`lab.safetext.escaped`),
on a terminal and piped: a value cannot retitle, clear or recolour the
terminal, nor turn a line around. Rich's own colours and cursor moves stay.

Nothing a user typed or a file held (paths, names, messages) is parsed as
Rich markup: pass such values as plain ``str`` table cells, in
:class:`~rich.text.Text` parts, or with ``markup=False``. Emoji codes
(``:smile:``) are never replaced either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeAlias, cast

import typer

from lab.errors import LabError
from lab.safetext import escaped

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

Cell: TypeAlias = "str | Text"
"""A table cell: a ``str`` is printed literally; a :class:`Text` may carry style."""

COLUMN_GAP = "  "


def _isatty(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


@functools.cache
def _escaping_class() -> type[Console]:
    from rich.console import Console
    from rich.segment import Segment

    class _EscapingConsole(Console):
        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            return super()._render_buffer(
                seg if seg.control else Segment(escaped(seg.text), seg.style, seg.control)
                for seg in buffer)

    return _EscapingConsole


def escaping_console(**options: Any) -> Console:
    """A Console whose text reaches the stream with control characters escaped; the
    control codes Rich makes itself (styles, cursor moves of a spinner) pass."""
    return _escaping_class()(**options)


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return escaping_console(stderr=stderr, highlight=False, emoji=False, soft_wrap=True,
                            force_terminal=_isatty(stream))


class _OnFirstUse:
    """A console made when first used: a command that prints nothing through Rich
    (``--help`` piped, ``down``) never imports it (~50 ms of start-up)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._made: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            self._made = _console(self._stderr)
        return getattr(self._made, name)

    def print(self, *objects: Any, **options: Any) -> None:
        """Plain strings printed without markup to a stream that is no terminal are
        written as Rich would write them (control characters escaped, one line),
        without Rich; anything else goes to the console."""
        stream = sys.stderr if self._stderr else sys.stdout
        if (options == {"markup": False} and all(isinstance(o, str) for o in objects)
                and self._made is None and not _isatty(stream)):
            stream.write(escaped(" ".join(objects)) + "\n")
            stream.flush()
            return
        self.__getattr__("print")(*objects, **options)


# stdout: results. stderr: errors, notes, progress. Each is "a terminal" when its
# stream is one, whatever FORCE_COLOR says: a pipe gets no ANSI codes.
console = cast("Console", _OnFirstUse(stderr=False))
err = cast("Console", _OnFirstUse(stderr=True))


def on_terminal() -> bool:
    """True when stdout is a terminal: Rich tables; else plain, whole values (the
    console's answer; before it is made, the same question asked of stdout)."""
    made = console._made if isinstance(console, _OnFirstUse) else console
    return made.is_terminal if made is not None else _isatty(sys.stdout)


def styled(text: str, style: str) -> Text:
    """``text`` (literal, never markup) in ``style`` (dropped when not on a terminal)."""
    from rich.text import Text
    return Text(text, style=style)


def _plain(cell: Cell) -> str:
    from rich.text import Text
    text = escaped(cell.plain if isinstance(cell, Text) else cell)
    return " ".join(text.splitlines()) if "\n" in text else text


def plain_table(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> list[str]:
    """The table as lines of text: a header line, one line per row, columns space-aligned.

    Every value whole, whatever its length; trailing spaces dropped.
    """
    from rich.cells import cell_len

    grid = [list(columns), *([_plain(c) for c in row] for row in rows)]
    widths = [max(cell_len(r[i]) for r in grid) for i in range(len(columns))]
    return [COLUMN_GAP.join(c + " " * (w - cell_len(c)) for c, w in zip(r, widths, strict=True))
            .rstrip() for r in grid]


def table(columns: Sequence[str], rows: Iterable[Sequence[Cell]], *,
          title: Cell | None = None, leave_out: Sequence[str] = ()) -> None:
    """Print a table: Rich on a terminal, :func:`plain_table` otherwise.

    ``title`` and cells follow :data:`Cell`. On a terminal a cell too wide
    for its column wraps between words, never inside one: an address, an id
    or a path stays whole on one line (:func:`fit_columns`); when even that
    does not fit, columns are left out (those named in ``leave_out`` first, in that
    order, then from the right) and a line says which.
    """
    from rich.text import Text
    rows = [list(r) for r in rows]
    if not on_terminal():
        lines = plain_table(columns, rows)
        if title is not None:
            lines.insert(0, _plain(title))
        console.file.write("\n".join(lines) + "\n")
        console.file.flush()
        return
    from rich.table import Table

    plain = [list(columns), *([_plain(c) for c in row] for row in rows)]
    order = [columns.index(c) for c in leave_out if c in columns]
    widths = fit_columns(plain, console.width, order)
    kept = [i for i, w in enumerate(widths) if w is not None]
    t = Table(title=Text(title) if isinstance(title, str) else title, title_justify="left")
    for i in kept:
        t.add_column(columns[i], width=widths[i], overflow="fold")
    for row in rows:
        t.add_row(*(c if isinstance(c, Text) else Text(escaped(c)) for c in (row[i] for i in kept)))
    # wider than the terminal only when one column's longest word is: then the line
    # runs on (the terminal wraps it) rather than cut that word
    console.print(t, width=max(console.width, table_width([widths[i] or 0 for i in kept])))
    left_out = [columns[i] for i, w in enumerate(widths) if w is None]
    if left_out:
        console.print(Text(f"  columns left out at this width: {', '.join(left_out)} "
                           "(a wider terminal, or piped output, shows every column)",
                           style="dim"))


def table_width(widths: Sequence[int]) -> int:
    """A Rich table's width for these column widths: a space either side of each
    column's text and a border line around and between them."""
    return sum(widths) + 3 * len(widths) + 1


def _words(text: str) -> list[str]:
    return text.split() or [""]


def fit_columns(grid: Sequence[Sequence[str]], width: int,
                leave_out: Sequence[int] = ()) -> list[int | None]:
    """Column widths (text only) for the table ``grid`` (the header row first, plain
    text) in ``width`` cells, so that no word (a run of characters without a space:
    an address, an id, a path) is ever split: each column is at least as wide as its
    longest word. What is left is shared by the columns that would wrap, the widest
    needs first; when the columns' longest words alone do not fit, columns are left
    out (``None``): those in ``leave_out`` first, then from the right, the first column
    always kept.
    """
    from rich.cells import cell_len

    n = len(grid[0]) if grid else 0
    lines = [[line for cell in col for line in cell.splitlines() or [""]]
             for col in ([r[i] for r in grid] for i in range(n))]
    longest = [max(cell_len(line) for line in col) for col in lines]
    word = [max(cell_len(w) for line in col for w in _words(line)) for col in lines]
    kept = list(range(n))
    order = [i for i in leave_out if 0 < i < n]
    order += [i for i in reversed(range(1, n)) if i not in order]
    while order and table_width([word[i] for i in kept]) > width:
        kept.remove(order.pop(0))
    if table_width([longest[i] for i in kept]) <= width:
        return [longest[i] if i in kept else None for i in range(n)]
    widths = {i: word[i] for i in kept}
    spare = width - table_width(list(widths.values()))
    while spare > 0:
        short = [i for i in kept if widths[i] < longest[i]]
        if not short:
            break
        i = max(short, key=lambda k: longest[k] - widths[k])
        widths[i] += 1
        spare -= 1
    return [widths.get(i) for i in range(n)]


@contextlib.contextmanager
def status(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner with ``message`` on a terminal; yields a function that changes it.

    Not on a terminal nothing is shown (no spinner frames in a pipe or log).
    """
    from rich.text import Text
    if not on_terminal():
        yield lambda _msg: None
        return
    with console.status(Text(message)) as spinner:
        yield lambda msg: spinner.update(Text(msg))


def note(label: str, message: str, style: str = "yellow") -> None:
    """``label: message`` on stderr, one line; the message literal."""
    if not _isatty(sys.stderr):  # the same line, without Rich's start-up
        err.print(f"{label}: {message}", markup=False)
        return
    from rich.text import Text
    err.print(Text.assemble((f"{label}:", style), " ", message))


def fail(message: str, code: int = 1) -> NoReturn:
    """``error: message`` on stderr as one line (the message literal), then exit ``code``."""
    note("error", message, "red")
    raise typer.Exit(code) from None


@contextlib.contextmanager
def one_line_errors(*also: type[Exception], code: int = 1) -> Iterator[None]:
    """Inside, a :class:`~lab.errors.LabError` (or one of ``also``) becomes one
    ``error: ...`` line and exit ``code``; anything else is a bug and keeps its traceback."""
    try:
        yield
    except (typer.Exit, BrokenPipeError):  # a closed pipe (| head): Click exits quietly
        raise
    except Exception as exc:
        if isinstance(exc, (*also, LabError)):
            fail(str(exc), code)
        raise


def need_root(what: str = "dsrlab needs root (network namespaces, BPF, tcpdump)",
              code: int = 2) -> None:
    """Exit ``code`` with ``what`` unless running as root."""
    if os.geteuid() != 0:
        fail(what, code)
