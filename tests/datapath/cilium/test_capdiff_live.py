"""The lab's datapath and Cilium's, compared hop by hop on the seed (``dsrlab diff``,
``dsrlab run --datapath both``).

The differences that are really there must show, at the right capture point, as
expected (lab) / got (Cilium) TTLs: Cilium 1.13 forwards the DSR SYN with the TTL
the client sent (64) where the lab and 1.14+ lower it (63); on the backend node
Cilium (legacy host routing in the lab) lowers the TTL twice each way, so the pod
sees one less than with the lab's datapath on 1.16 and the client gets the
SYN+ACK at 62, not 63.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from lab.check.capdiff import CaptureDiff, Difference, diff_folders
from lab.datapath.cilium.source import ENV_VAR, CiliumSource, discover
from lab.env.netns import NetnsBackend
from lab.env.netns.cilium import CiliumDatapaths
from lab.pytest_plugin import require_root
from lab.runner.scenario import run_scenario
from tests.cli.helpers import DSRLAB, ENV, REPO
from tests.seed import SEED_SCENARIO_PATH

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]


def _first(d: CaptureDiff, role: str) -> Difference | None:
    return next(r for r in d.roles if r.role == role).difference


def _only_ttl(diff: Difference | None, flags: str, lab: int, cilium: int) -> None:
    """The first differing packet is a ``flags`` packet whose TTL alone differs."""
    assert diff is not None
    fields = {f.field: f for f in diff.fields}
    assert fields["flags"].expected == fields["flags"].got == flags, diff.message
    assert [(f.field, f.expected, f.got) for f in diff.fields if not f.ok] == [
        ("ttl", str(lab), str(cilium))], diff.message
    assert diff.flow == 1  # every flow differs so, the first shows it


def test_lab_and_cilium_differ_where_their_ttls_do(cilium_source: CiliumSource,
                                                  seed_capture: Path, tmp_path: Path) -> None:
    require_root()
    res = run_scenario(SEED_SCENARIO_PATH, captures_root=tmp_path,
                       backend=NetnsBackend(datapaths=CiliumDatapaths(cilium_source)))
    assert res.passed
    d = diff_folders(seed_capture, res.capture_dir)
    assert not d.same
    assert d.flows_same
    assert all(r.differing_flows == min(d.flows_a, d.flows_b) or r.same for r in d.roles)
    if cilium_source.version.at_least(1, 14):
        # the LB node forwards as the lab does; the backend node lowers the TTL twice
        assert _first(d, "lb-node") is None
        _only_ttl(_first(d, "pod"), "S", 62, 61)
        _only_ttl(_first(d, "backend-node"), "SA", 63, 62)
        _only_ttl(_first(d, "client"), "SA", 63, 62)
    else:
        # the forwarded SYN keeps the client's TTL: seen at the LB node, on the
        # client's bridge and where it arrives; the pod gets 62 either way
        _only_ttl(_first(d, "lb-node"), "S", 63, 64)
        _only_ttl(_first(d, "client"), "S", 63, 64)
        _only_ttl(_first(d, "backend-node"), "S", 63, 64)
        assert _first(d, "pod") is None
        lb = _first(d, "lb-node")
        assert lb is not None
        assert lb.packet == 2  # the SYN in is the same; the SYN out is not
        dsr = {f.field: f for f in lb.fields}["dsr_option"]
        assert dsr.expected == dsr.got == "$service:$service-port"


def test_run_both_on_two_cilium_versions(tmp_path: Path) -> None:
    """``dsrlab run seed --datapath both --cilium-src A --cilium-src B``: three runs,
    a column each, the agree column saying where they differ, each set's compared.json
    and its report's section; exit 1 (they differ)."""
    require_root()
    where = os.environ.get(ENV_VAR)
    sources = discover(where) if where else []
    if len(sources) < 2:
        pytest.skip(f"needs two Cilium sources in {ENV_VAR} (v1.13.0 and v1.16.0)")
    old, new = sources[0], sources[-1]
    captures = tmp_path / "captures"
    out = subprocess.run(
        [*DSRLAB, "run", "seed", "--datapath", "both", "--captures", str(captures),
         "--cilium-src", str(old.path), "--cilium-src", str(new.path), "--no-screenshot"],
        capture_output=True, text=True, timeout=900, check=False, cwd=REPO,
        env={**ENV, "COLUMNS": "250"})
    text = out.stdout
    assert out.returncode == 1, text + out.stderr
    for name in ("lab", f"cilium {old.version}", f"cilium {new.version}"):
        assert re.search(rf"^{re.escape(name)}: PASS: seed, 6 of 6 claims passed  \(",
                         text, re.M), text
    header = next(line for line in text.splitlines() if line.startswith("scenario "))
    assert re.match(rf"scenario\s+lab\s+cilium {re.escape(str(old.version))}\s+"
                    rf"cilium {re.escape(str(new.version))}\s+agree", header), header
    row = next(line for line in text.splitlines() if line.startswith("seed "))
    assert re.match(r"seed\s+pass\s+pass\s+pass\s+no \(", row), row
    assert f"{str(old.version).lstrip('v')}: " in row or f"{old.version}: " in row
    assert "lb-node" in row.split(f"{new.version}:")[0]  # 1.13's SYN TTL at the LB node
    assert "lb-node" not in row.split(f"{new.version}:")[1]  # 1.16 forwards as the lab
    assert text.rstrip().splitlines()[-1] == (
        "FAIL: 1 of 1 scenarios failed on a datapath or differ between them")
    sets = [p for p in (captures / "seed").iterdir() if p.name != "latest"]
    assert len(sets) == 3
    by_datapath = {json.loads((s / "manifest.json").read_text())["datapath"]["version"]
                   or "lab": s for s in sets}
    lab = by_datapath["lab"]
    comparisons = json.loads((lab / "compared.json").read_text())["comparisons"]
    assert [c["b"] for c in comparisons] == [str(by_datapath[str(v.version)])
                                            for v in (old, new)]
    assert not any(c["same"] for c in comparisons)
    for s in sets:
        assert (s / "compared.json").is_file()
        assert '<section id="compared">' in (s / "report.html").read_text()
        assert "Compared with " in (s / "report.md").read_text()
