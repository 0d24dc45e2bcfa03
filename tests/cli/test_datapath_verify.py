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


def test_cilium_gives_a_table_per_version_named_object_program() -> None:
    where = os.environ.get("DSRLAB_CILIUM_SRC")
    if not where:
        pytest.skip("no Cilium source: set DSRLAB_CILIUM_SRC")
    res = dsrlab("datapath", "verify", "--datapath", "cilium", "--json",
                 env={"DSRLAB_CILIUM_SRC": where})
    assert res.returncode == 0, res.stderr
    reports = json.loads(res.stdout)
    assert [r["datapath"] for r in reports] == sorted(r["datapath"] for r in reports)
    for r in reports:
        assert r["datapath"].startswith("cilium v")
        assert r["outcome"] == "pass"
        names = {p["program"] for p in r["programs"]}
        assert {"bpf_host/cil_from_netdev", "bpf_lxc/cil_from_container"} <= names
    res = dsrlab("datapath", "verify", "--datapath", "cilium", "--cilium-src", where)
    assert res.returncode == 0, res.stderr
    titles = [ln for ln in res.stdout.splitlines() if ln.startswith("cilium v")]
    assert titles == [f"{r['datapath']} under kernel {platform.release()}'s verifier"
                      for r in reports]


def test_cilium_without_a_source_or_lab_with_one_is_one_error_line() -> None:
    res = dsrlab("datapath", "verify", "--datapath", "cilium", env={"DSRLAB_CILIUM_SRC": ""})
    assert res.returncode == 2
    assert res.stderr.strip() == ("error: --datapath cilium needs a Cilium source: "
                                  "--cilium-src PATH or DSRLAB_CILIUM_SRC")
    res = dsrlab("datapath", "verify", "--cilium-src", "/nonexistent")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: --cilium-src is for --datapath cilium"
    res = dsrlab("datapath", "verify", "--datapath", "cilium", "--cilium-src", "/nonexistent")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "error: cilium: Cilium source /nonexistent: no such file or folder")
