"""``--datapath both`` refused where it has no meaning: one error line, exit 2, no lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.datapath.cilium.source import ENV_VAR
from tests.cli.helpers import dsrlab


@pytest.mark.parametrize(("args", "why"), [
    (["up", "seed", "--datapath", "both"], "--datapath both goes with run"),
    (["run", "seed", "--cilium-src", "/a", "--cilium-src", "/b"],
     "--cilium-src is given once (several go with --datapath both)"),
    (["run", "seed", "--datapath", "lab", "--cilium-src", "/a"],
     "--cilium-src goes with --datapath cilium"),
    (["run", "seed", "--datapath", "both", "--keep"], "--keep names one lab"),
    (["run", "seed", "--datapath", "both", "--run-id", "abcdef"], "--run-id names one lab"),
    (["run", "seed", "--datapath", "both", "--backend", "kind"],
     "--datapath both runs on the netns backend"),
    (["run", "no-such-scenario", "--datapath", "both"], "no-such-scenario"),
    (["run", "seed", "--datapath", "both"], f"or {ENV_VAR}"),
    (["run", "seed", "--datapath", "both", "--cilium-src", "/nonexistent/cilium"],
     "/nonexistent/cilium"),
])
def test_both_refused_in_one_line(args: list[str], why: str, tmp_path: Path) -> None:
    extra = ["--captures", str(tmp_path / "caps")] if args[0] == "run" else []
    out = dsrlab(*args, *extra)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ")
    assert why in lines[0]
    assert not (tmp_path / "caps").exists()
