"""The kind backend's tool calls: kind, helm and kubectl as
subprocesses, each with a deadline, its output kept in the run's folder.

A call that fails or passes its deadline is a :class:`~lab.env.base.BackendError`
saying what it was for, the command, and the last line it printed; the whole
output is in the log file it names (``NN-<what>.log``).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from lab.atomic import write_text
from lab.env.base import BackendError


class Tools:
    """Runs the plan's commands; ``log_dir`` keeps one log per call, numbered."""

    def __init__(self, log_dir: Path, say: Callable[[str], None] | None = None) -> None:
        self.log_dir = log_dir
        self.say = say  # progress: what each call is for, as it starts
        self.calls = 0
        log_dir.mkdir(parents=True, exist_ok=True)

    def run(self, what: str, argv: list[str], deadline_s: float, *, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        self.calls += 1
        slug = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")[:40]
        log = self.log_dir / f"{self.calls:02d}-{slug}.log"
        shown = shlex.join(argv)
        if self.say is not None:
            self.say(f"{what} ({argv[0]}, up to {deadline_s:g} s)")
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=deadline_s, check=False)
        except FileNotFoundError:
            raise BackendError(f"{what}: {argv[0]} is not installed (needed: kind, helm, "
                               "kubectl, docker)") from None
        except subprocess.TimeoutExpired as exc:
            write_text(log, f"$ {shown}\n(deadline {deadline_s:g} s passed)\n"
                           f"{_text(exc.stdout)}{_text(exc.stderr)}")
            raise BackendError(f"{what}: `{shown}` took longer than its {deadline_s:g} s "
                               f"(output in {log})") from None
        write_text(log, f"$ {shown}\n(exit {proc.returncode})\n--- stdout\n{proc.stdout}"
                       f"--- stderr\n{proc.stderr}")
        if check and proc.returncode != 0:
            last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()),
                        f"exit status {proc.returncode}")
            raise BackendError(f"{what}: `{shown}` failed: {last.strip()} (output in {log})")
        return proc


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
