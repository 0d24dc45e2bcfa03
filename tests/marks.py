"""Every process a test started, found by a mark in its environment.

A test puts ``DSRLAB_TEST_MARK=<token>`` in the environment of the command it
starts, and starts it in a session of its own; everything that command starts
inherits the mark (or stays in its session: Chromium's renderers write their
titles over their environment). :func:`marked` lists those still running,
whatever the code under test tagged them with, so the same check holds for old
and new code.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lab.plumbing import procs

MARK = "DSRLAB_TEST_MARK"


def new_mark() -> str:
    return secrets.token_hex(8)


def marked(mark: str) -> list[int]:
    """Running processes whose environment carries ``mark``, and the members of their
    sessions (zombies are gone)."""
    entry = f"{MARK}={mark}".encode()
    found, sessions = set(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            sessions[pid] = os.getsid(pid)
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if entry in env.split(b"\0"):
            found.add(pid)
    ours = {sessions[p] for p in found if p in sessions}
    found |= {p for p, sid in sessions.items() if sid in ours}
    return sorted(p for p in found if procs.running(p))


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
