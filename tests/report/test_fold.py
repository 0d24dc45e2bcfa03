"""A long transfer's report stays small: the middle of its bulk data is folded on the
ladder (one band saying how many packets, segments and bytes), the pcaps keep every
packet, and what tells the story (handshake, teardown, checked packets) is drawn."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from lab.capture.capdir import CaptureDir
from lab.report.capset import load_view
from lab.report.ladder import find_flows
from lab.runner.scenario import run_scenario
from tests.seed import SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.scenario]

TRANSFER = 8_000_000  # an 8 MB download: a ~15 MB report.html before (30 MB: 58 MB)
MAX_HTML = 1_000_000


def _bulk_scenario(folder: Path) -> Path:
    """The seed's lab and trace (the request line a download's), one 8 MB download."""
    shutil.copy(SEED_TOPOLOGY_PATH, folder / "topology.yaml")
    trace = yaml.safe_load(SEED_TRACE_PATH.read_text())
    trace["scenario"] = "bulk-download"
    trace.pop("coverage", None)  # one flow reaches one backend
    text = yaml.safe_dump(trace, sort_keys=False).replace("GET / HTTP/1.1", "GET /bytes/")
    (folder / "bulk-download.trace.yaml").write_text(text)
    scenario = folder / "bulk-download.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "bulk-download", "topology": "topology.yaml",
        "target": {"service": "serversvc", "node": "cilium-dsr-control-plane"},
        "steps": [{"transfer": {"bytes": TRANSFER, "timeout_s": 60}}],
    }, sort_keys=False))
    return scenario


def test_an_8_mb_download_makes_a_small_report_that_says_what_it_folded(
        tmp_path: Path) -> None:
    run = run_scenario(_bulk_scenario(tmp_path), captures_root=tmp_path / "captures")
    assert run.passed, run.result
    assert run.report is not None
    html = run.report.html.read_text()
    md = run.report.markdown.read_text()
    assert run.report.html.stat().st_size < MAX_HTML, run.report.html.stat().st_size

    # the pcaps hold every packet; the ladder draws some and folds the rest, and the
    # two add up to the flow's packets
    (flow,), _ = find_flows(load_view(CaptureDir.load(run.capture_dir)))
    folds = re.findall(r'<g class="fold" data-folded="(\d+)" data-first="(\d+)" '
                       r'data-data="(\d+)" data-payload="(\d+)"', html)
    assert folds
    folded = sum(int(f[0]) for f in folds)
    drawn = {int(n) for n in re.findall(r'data-packet="(\d+)"', html)}
    assert len(drawn) + folded == len(flow.trails)
    assert drawn.isdisjoint(n for f in folds for n in range(int(f[1]), int(f[1]) + int(f[0])))
    # the folded data segments carried most of the download
    assert sum(int(f[3]) for f in folds) > TRANSFER * 0.8

    # the summary says how many: on the flow's line, in the ladder and in the Markdown
    assert f"{folded:,} folded" in html
    assert re.search(rf"{int(folds[0][0]):,} packets folded \(#[\d,]+ to #[\d,]+\): "
                     r"[\d,]+ data segments \([\d.]+ MB\) and [\d,]+ ACKs", html)
    assert "Bulk data folded on the ladders (the pcaps hold every packet):" in md
    assert f"- {flow.id}: {int(folds[0][0]):,} packets folded" in md

    # the story is drawn: handshake, request, teardown
    flags = set(re.findall(r'data-flags="([A-Z]+)"', html))
    assert {"S", "SA", "PA"} <= flags
    assert any("F" in f for f in flags)
