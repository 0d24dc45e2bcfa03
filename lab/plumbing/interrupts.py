"""Interrupts (SIGINT, SIGTERM, SIGHUP, SIGQUIT...) as exceptions, and short sections
they cannot split.

Python runs signal handlers in the main thread only, between two bytecodes,
so a ``KeyboardInterrupt`` can land between "the namespace exists" and "its
undo step is registered", or inside a ctypes callback (libbpf's print
callback during a long verifier load), where ctypes prints "Exception
ignored" and the interrupt is lost. :func:`deferred` closes both: inside it
an interrupt is held and raised when the outermost section ends (at once
when it is short, after the C call when it wraps one).

A program (the ``dsrlab`` command) calls :func:`install`: every signal of
:data:`SIGNALS` (the ones whose default action ends a process that a user, a
terminal, ``timeout``, ``kill`` or a CI runner sends: SIGINT, SIGTERM, SIGHUP,
SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU; each unless it was ignored when the
program started) then raises
:class:`Interrupted` (a ``KeyboardInterrupt``, so every ``with`` and
``except BaseException`` undoes what was started), and once one
has been raised, later ones are held: they cannot break the cleanup that the
first one started. :data:`STOP_BY_CLEAN` (SIGUSR2) is the same stop, asked for
by ``dsrlab clean --force`` (the run then says so). :func:`received` tells
which signal stopped the run. A library user that installs nothing keeps its
own handlers: :func:`deferred` then swaps a holding handler in for the
section (the default SIGINT handler raises ``KeyboardInterrupt`` at the
section's end).

Sections only defer what the main thread would get; on other threads they
are a no-op (no Python signal handler ever runs there).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                            signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGXCPU)
# ``dsrlab clean --force`` asks a live run to stop with this one: the run undoes what
# it started as for any interrupt, and says it was stopped by clean (exit 128 + 12)
STOP_BY_CLEAN = signal.SIGUSR2


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum`` (one of :data:`SIGNALS`)."""

    def __init__(self, signum: int) -> None:
        super().__init__("stopped by dsrlab clean" if signum == STOP_BY_CLEAN
                         else f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def by_clean(self) -> bool:
        """``dsrlab clean --force`` asked the run to stop (:data:`STOP_BY_CLEAN`)."""
        return self.signum == STOP_BY_CLEAN

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


Handler = Callable[[int, FrameType | None], Any] | int | None

class _State:
    """The main thread's interrupt state (handlers and sections run there only)."""

    def __init__(self) -> None:
        self.depth = 0  # nesting of deferred sections
        self.held: list[int] = []  # signals that arrived inside a section
        self.installed = False
        self.first: int | None = None  # the signal that was raised (after install)
        self.done = False  # the program finished: hold everything


_state = _State()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.depth > 0 or _state.first is not None or _state.done:
        _state.held.append(signum)
        return
    _state.first = signum
    raise Interrupted(signum)


def _hold(signum: int, frame: FrameType | None) -> None:
    _state.held.append(signum)


def install() -> None:
    """Every signal of :data:`SIGNALS` raises :class:`Interrupted` (main thread only).

    A signal this process was started with ignored stays ignored: ``nohup``
    ignores SIGHUP, and a shell ignores SIGINT for a job it runs in the
    background, and they mean it.
    """
    for sig in SIGNALS:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _on_signal)
    signal.signal(STOP_BY_CLEAN, _on_signal)  # sent by dsrlab clean --force only
    _state.installed = True


def stop_signal() -> int:
    """The signal that stops this process cleanly, recorded with the runs it owns:
    :data:`STOP_BY_CLEAN` once :func:`install` ran (the ``dsrlab`` command), else
    SIGINT (a library user such as pytest unwinds on ``KeyboardInterrupt``)."""
    return STOP_BY_CLEAN if _state.installed and not _state.done else signal.SIGINT


def finish() -> None:
    """The program's work is over: from now on these signals are ignored (also while
    the interpreter shuts down, which would otherwise restore their default action
    and let a late one kill a run that has finished)."""
    _state.done = True
    if _main_thread():
        for sig in (*SIGNALS, STOP_BY_CLEAN):
            signal.signal(sig, signal.SIG_IGN)


def received() -> int | None:
    """The signal that interrupted the program (after :func:`install`), or None."""
    return _state.first


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold the signals of :data:`SIGNALS` for the block; the first one held is raised
    at its end.

    Keep the block short (creating something and recording its undo), or a
    C call that must not be cut (a BPF load whose callbacks run Python).
    Nested sections raise at the end of the outermost.
    """
    if not _main_thread():
        yield
        return
    swapped: dict[int, Handler] = {}
    try:
        if _state.depth == 0 and not _state.installed:
            for sig in (*SIGNALS, STOP_BY_CLEAN):
                handler = signal.getsignal(sig)
                if callable(handler):
                    swapped[sig] = handler
                    signal.signal(sig, _hold)
        _state.depth += 1
        try:
            yield
        finally:
            _state.depth -= 1
    finally:
        for sig, handler in swapped.items():
            signal.signal(sig, handler)
        if _state.depth == 0 and _state.held:
            _raise_held(swapped)


def _raise_held(swapped: dict[int, Handler]) -> None:
    signum = _state.held[0]
    _state.held.clear()
    if _state.installed:
        if _state.first is None and not _state.done:
            _state.first = signum
            raise Interrupted(signum)
        return
    handler = swapped.get(signum)
    if callable(handler):
        handler(signum, None)  # e.g. the default SIGINT handler: KeyboardInterrupt


__all__ = ["SIGNALS", "STOP_BY_CLEAN", "Interrupted", "deferred", "finish", "install",
           "received", "stop_signal"]
