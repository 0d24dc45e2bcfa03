"""Running ``dsrlab`` as a user does: a real subprocess, its stdout a pipe or a terminal."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# a narrow width, as a CI runner's: what a pipe shows must not depend on it
ENV = {"COLUMNS": "80", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
DSRLAB = [sys.executable, "-m", "lab.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# a guard against a command that hangs, not a measure of speed: `review` of a few MB of
# captures took 52 s on the 2-core box under a load of 18 (scapy reading the packets)
HANG_S = 300.0


def dsrlab(*args: str, timeout: float = HANG_S, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    """``dsrlab ARGS`` with stdout and stderr pipes (not a terminal)."""
    return subprocess.run([*DSRLAB, *args], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=REPO, env={**ENV, **(env or {})})


def dsrlab_piped(args: list[str], into: list[str], timeout: float = HANG_S,
                 ) -> subprocess.CompletedProcess[str]:
    """``dsrlab ARGS | INTO...`` run by bash, as typed in a shell."""
    line = f"{shlex.join([*DSRLAB, *args])} | {shlex.join(into)}"
    return subprocess.run(["bash", "-o", "pipefail", "-c", line], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=REPO, env=ENV)


def dsrlab_on_terminal(*args: str, columns: int = 200, timeout: float = HANG_S,
                       ) -> subprocess.CompletedProcess[str]:
    """``dsrlab ARGS`` on a pseudo-terminal ``columns`` wide (util-linux ``script``).

    stdout holds what the terminal got (stdout and stderr together), with
    carriage returns dropped; :func:`plain` strips the colours.
    """
    line = f"stty cols {columns} rows 50; exec {shlex.join([*DSRLAB, *args])}"
    out = subprocess.run(["script", "-qec", line, "/dev/null"], capture_output=True,
                         text=True, timeout=timeout, check=False, cwd=REPO,
                         stdin=subprocess.DEVNULL, env={"PATH": ENV["PATH"], "TERM": "xterm"})
    out.stdout = out.stdout.replace("\r", "")
    return out


def plain(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return ANSI.sub("", text)
