"""Where a kernel's time goes: the phases of one matrix cell, from timestamped marks.

A cell's time is cut at marks, each a name and a clock reading. The host
marks what it sees (preparation done, the VM started, the guest's first
line, the guest's last line, the VM gone); the guest's shell and its pytest
(the ``lab.pytest_phases`` plugin) mark their own steps on the guest's
clock, into ``phases.guest`` in the kernel's folder. A phase is the time
between two marks of the same clock, so the guest's clock never has to
agree with the host's. A mark that is missing (the guest stopped early)
leaves its phases out rather than guessing them.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

GUEST_MARKS = "phases.guest"  # "<name> <seconds since the epoch>" a line, the guest's clock

# (phase, from mark, to mark), in the order a cell runs them; the host's marks are
# prefixed "host-", the guest's are not
PHASES: tuple[tuple[str, str, str], ...] = (
    ("prepare", "host-start", "host-prepared"),
    ("boot", "host-vm-start", "host-guest-up"),
    ("set-up", "up", "modules"),
    ("start-up", "pytest-start", "session-start"),
    ("verifier", "session-start", "verifier-done"),
    ("collection", "verifier-done", "collected"),
    ("tests", "collected", "tests-done"),
    ("teardown", "tests-done", "pytest-exit"),
    ("shutdown", "host-guest-done", "host-vm-exit"),
)


class Phase(BaseModel):
    name: str
    seconds: float


def append_mark(path: Path, name: str) -> None:
    """``name`` and the clock's reading appended to the marks file at ``path``
    (appended: the guest's shell and its pytest mark the same file in turn)."""
    with path.open("a") as f:
        f.write(f"{name} {time.time():.3f}\n")


def read_marks(path: Path) -> dict[str, float]:
    """Marks from a ``name seconds`` file; unreadable lines are skipped (a guest
    killed mid-line), and a name marked twice keeps its last reading."""
    marks: dict[str, float] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return marks
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            marks[parts[0]] = float(parts[1])
        except ValueError:
            continue
    return marks


def phases_from(marks: dict[str, float]) -> list[Phase]:
    """The phases whose two marks are both there, in running order."""
    return [Phase(name=name, seconds=round(marks[end] - marks[start], 2))
            for name, start, end in PHASES if start in marks and end in marks]


def phase_line(phases: list[Phase], groups: dict[str, float] | None = None) -> str:
    """One line: ``prepare 2.5 s, boot 38.9 s, ..., tests 80.0 s (datapath 50.1 s, ...)``."""
    parts = []
    for p in phases:
        text = f"{p.name} {p.seconds:.1f} s"
        if p.name == "tests" and groups:
            text += " (" + ", ".join(f"{g} {s:.1f} s" for g, s in groups.items()) + ")"
        parts.append(text)
    return ", ".join(parts)
