"""Standard output that fails is an output error like any other (``lab.cli.stdout``).

Several commands, each with its standard output a pipe whose reader is
already gone (what ``| head -1`` becomes once head has its line),
``/dev/full`` (no space left on device) and closed (``>&-``): each time one
``error: standard output: ...`` line on stderr, exit 1, no traceback. A
closed standard output is refused before the command does anything: ``up``
brings no lab up.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from tests.cli.helpers import DSRLAB, ENV, REPO

TIMEOUT = 60


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stdout") / "one.pcap"
    wrpcap(str(path), [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="S")])
    return path


COMMANDS = {
    "list": ["list"],
    "plan": ["plan", "topologies/seed.yaml"],
    "plan --json": ["plan", "--json", "topologies/seed.yaml"],
    "--help": ["--help"],
    "datapath --help": ["datapath", "--help"],
    "review": ["review", "{pcap}"],
    "clean --dry-run": ["clean", "--dry-run"],  # its error path prints the error once
}
AS_ROOT = {"clean --dry-run"}


def _args(name: str, pcap: Path) -> list[str]:
    return [a.replace("{pcap}", str(pcap)) for a in COMMANDS[name]]


def _broken_pipe(args: list[str]) -> subprocess.CompletedProcess[str]:
    """stdout a pipe nobody reads any more (deterministic: closed before the start)."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.Popen([*DSRLAB, *args], stdout=w, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, cwd=REPO, env=ENV)
    finally:
        os.close(w)
    _, err = proc.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def _dev_full(args: list[str]) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run([*DSRLAB, *args], stdout=full, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, cwd=REPO, env=ENV,
                              timeout=TIMEOUT, check=False)


def _closed(args: list[str], env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", 'exec "$@" >&-', "bash", *DSRLAB, *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True, cwd=REPO,
                          env={**ENV, **(env or {})}, timeout=TIMEOUT, check=False)


WAYS = {
    "broken pipe": (_broken_pipe, "standard output: broken pipe (its reader stopped reading)"),
    "/dev/full": (_dev_full, "standard output: no space left on device"),
    "closed": (_closed, "standard output is closed: nothing the command prints could be "
                        "shown (to discard it: >/dev/null)"),
}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_failing_stdout_is_one_error_line(command: str, way: str, pcap: Path) -> None:
    if command in AS_ROOT and os.geteuid() != 0:
        pytest.skip("needs root")
    run, line = WAYS[way]
    out = run(_args(command, pcap))
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [f"error: {line}"], out.stderr
    assert out.returncode == 1


def test_a_command_that_prints_fine_still_does(pcap: Path) -> None:
    out = subprocess.run([*DSRLAB, *_args("review", pcap)], capture_output=True, text=True,
                         cwd=REPO, env=ENV, timeout=TIMEOUT, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout
    assert not out.stderr


@pytest.mark.netns
def test_up_with_stdout_closed_brings_no_lab_up(tmp_path: Path) -> None:
    """The run id of a lab left up would be printed nowhere: refused first."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state = tmp_path / "state"  # the first namespace's claim would make it
    out = _closed(["up", "topologies/seed.yaml"], env={"DSRLAB_STATE_DIR": str(state)})
    try:
        assert out.stderr.splitlines() == [f"error: {WAYS['closed'][1]}"], out.stderr
        assert out.returncode == 1
        assert not state.exists()
    finally:
        for f in state.glob("*.json") if state.is_dir() else ():  # old code: a lab left up
            subprocess.run([*DSRLAB, "down", f.stem], cwd=REPO, check=False,
                           env={**ENV, "DSRLAB_STATE_DIR": str(state)}, timeout=TIMEOUT,
                           capture_output=True)
