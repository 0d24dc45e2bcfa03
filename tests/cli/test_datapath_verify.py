"""``dsrlab datapath verify``: what this kernel's verifier says of the datapath, as a
user reads it (piped) or a script does (--json); a rejection is one error line
after the verifier's own words, exit 1, no traceback."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest

from tests.cli.helpers import dsrlab
from tests.datapath.broken import BROKEN_PROGRAM, VERIFIER_SAYS, broken_object

pytestmark = [pytest.mark.bpf,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF)")]


def test_piped_table_names_every_program_with_its_counts() -> None:
    res = dsrlab("datapath", "verify")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"the datapath under kernel {platform.release()}'s verifier"
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:]}
    assert set(rows) == {"dsr_from_netdev", "dsr_to_netdev"}
    for processed, share, loaded in rows.values():
        assert int(processed) >= int(loaded) > 0
        assert share.endswith("%")
        assert float(share[:-1]) < 100


def test_json_is_the_report() -> None:
    res = dsrlab("datapath", "verify", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["outcome"] == "pass"
    assert report["kernel"] == platform.release()
    assert {p["program"] for p in report["programs"]} == {"dsr_from_netdev", "dsr_to_netdev"}


def test_a_rejection_shows_the_log_tail_and_one_error_line(tmp_path: Path) -> None:
    broken_object(tmp_path)  # writes the broken sources there (and builds them)
    res = dsrlab("datapath", "verify", env={"DSRLAB_BPF_DIR": str(tmp_path)})
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert VERIFIER_SAYS in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: loading ")
    assert f"({BROKEN_PROGRAM} after " in last
    assert last.endswith(" insns processed)")
