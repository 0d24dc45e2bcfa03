"""What a command imports before it answers: the fast commands load no more than they
use. Checked by the modules loaded when the command exits, not by a stopwatch: the
verdict does not depend on the machine's speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import ENV, REPO

HEAVY = ("rich", "scapy", "pyroute2", "jinja2", "pydantic", "yaml")


_RUN = ("import atexit, json, sys\n"
        "out = sys.argv.pop(1)\n"
        "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "from lab.cli import main\n"
        "main()\n")


def _modules(*args: str, tmp: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Every module ``dsrlab ARGS`` had loaded when it exited (``sys.modules``, which
    sees ``importlib.import_module`` too), stdout and stderr piped."""
    listing = tmp / "modules.json"
    out = subprocess.run([sys.executable, "-c", _RUN, str(listing), *args],
                         capture_output=True, text=True, cwd=REPO, env=ENV, timeout=60,
                         check=False)
    return set(json.loads(listing.read_text())), out


def _imported(*args: str, tmp: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages ``dsrlab ARGS`` imported."""
    names, out = _modules(*args, tmp=tmp)
    return {n.split(".")[0] for n in names}, out


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("down", "--help"),
                                  ("down", "abcdef"), ("clean", "--help")])
def test_piped_fast_commands_load_no_heavy_library(args: tuple[str, ...],
                                                   tmp_path: Path) -> None:
    """``--help`` (piped: click's plain help) and ``down`` of a lab that is not up
    answer without Rich, scapy, pyroute2, Jinja2, pydantic or PyYAML."""
    names, out = _imported(*args, tmp=tmp_path)
    assert "typer" in names, out.stderr[-500:]  # the check looks at real imports
    assert sorted(set(HEAVY) & names) == [], " ".join(args)
    if args == ("down", "abcdef"):
        # run ids and temporary names come from os.urandom: no secrets (hashlib, hmac)
        assert "secrets" not in names
        assert out.returncode == 1
        assert out.stderr.splitlines()[-1] == "error: no lab with run id abcdef is up"


def test_a_command_loads_only_its_own_module_of_the_cli(tmp_path: Path) -> None:
    """``dsrlab down``: Typer builds the one command named (its parameters read from
    its signature), not the others; ``dsrlab --help`` still lists them all."""
    names, out = _modules("down", "--help", tmp=tmp_path)
    assert out.returncode == 0
    cli = sorted(n for n in names if n.startswith("lab.cli."))
    assert "lab.cli.labs" in cli
    assert [n for n in cli if n.split(".")[2] in {"run", "review", "matrix", "diff",
                                                  "wireshark", "plan", "datapath"}] == []
    names, out = _modules("--help", tmp=tmp_path)
    listed = {line.split()[0] for line in out.stdout.splitlines()
              if line.startswith("  ") and line.split()}
    assert {"up", "down", "run", "plan", "clean", "list", "datapath", "review", "diff",
            "wireshark", "matrix"} <= listed, out.stdout


@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("argv", [[], ["--help"], ["--help", "down"], ["nosuch"]])
def test_the_groups_help_from_listed_commands_is_the_full_apps(
        monkeypatch: pytest.MonkeyPatch, argv: list[str], terminal: bool) -> None:
    """``dsrlab`` and ``dsrlab --help`` build each command from its help text alone
    (Typer reads no command's parameters); what they print is what the app with every
    command built prints, plain and on a terminal (Rich)."""
    from typer.testing import CliRunner  # noqa: PLC0415

    from lab.cli import make_app, output  # noqa: PLC0415

    monkeypatch.setattr(output, "on_terminal", lambda: terminal)
    full = CliRunner().invoke(make_app(), argv)
    listed = CliRunner().invoke(make_app(listing=True), argv)
    assert (listed.exit_code, listed.output) == (full.exit_code, full.output)
    if argv != ["nosuch"]:
        assert "review" in listed.output
        assert "datapath" in listed.output
