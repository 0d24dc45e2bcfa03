"""What a command imports before it answers: the fast commands load no more than they
use. Checked by the modules Python reports loading (``-X importtime``), not by a
stopwatch: the verdict does not depend on the machine's speed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.helpers import ENV, REPO

HEAVY = ("rich", "scapy", "pyroute2", "jinja2", "pydantic", "yaml")


def _imported(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages ``dsrlab ARGS`` imported, stdout and stderr piped."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "lab.cli", *args],
                         capture_output=True, text=True, cwd=REPO, env=ENV, timeout=60,
                         check=False)
    names = {line.rsplit("|", 1)[1].strip().split(".")[0]
             for line in out.stderr.splitlines() if line.startswith("import time:")}
    return names, out


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("down", "--help"),
                                  ("down", "abcdef"), ("clean", "--help")])
def test_piped_fast_commands_load_no_heavy_library(args: tuple[str, ...]) -> None:
    """``--help`` (piped: click's plain help) and ``down`` of a lab that is not up
    answer without Rich, scapy, pyroute2, Jinja2, pydantic or PyYAML."""
    names, out = _imported(*args)
    assert "typer" in names, out.stderr[-500:]  # the check looks at real imports
    assert sorted(set(HEAVY) & names) == [], " ".join(args)
    if args == ("down", "abcdef"):
        assert out.returncode == 1
        assert out.stderr.splitlines()[-1] == "error: no lab with run id abcdef is up"
