"""What DSR saves, measured (lab.runner.compare): directions counted from a capture,
a real comparison run (a scenario with compare_modes), and its report section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.report import build_report
from lab.report.model import load_comparison
from lab.runner.compare import count_directions
from lab.runner.scenario import run_scenario
from tests.seed import CLIENT_IP, NODE_PORT, POD_IP, VIP

MODES_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "modes"


def test_directions_are_told_apart_at_the_lb_node(tmp_path: Path) -> None:
    """Client to service and the LB node's forwarded copies are requests; backend
    replies (to the node under SNAT) and the node's replies to the client are not."""
    def pkt(src: str, dst: str, size: int) -> Ether:
        return Ether() / IP(src=src, dst=dst) / TCP(sport=1, dport=2) / Raw(bytes(size))

    frames = [pkt(CLIENT_IP, VIP, 10),  # in from the client
              pkt(CLIENT_IP, POD_IP, 10),  # forwarded, client kept (DSR)
              pkt(VIP, POD_IP, 10),  # forwarded, SNATed
              pkt(POD_IP, VIP, 1000),  # the backend's reply to the node (SNAT)
              pkt(VIP, CLIENT_IP, 1000)]  # the node's reply to the client
    pcap = tmp_path / "lb.pcap"
    wrpcap(str(pcap), frames, snaplen=64)
    assert count_directions(pcap, CLIENT_IP, VIP) == (3 * 50, 3, 2 * 1040, 2)


def test_an_unreadable_comparison_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "modes.json").write_text('{"modes": [{"mode": "dsr"}]}')
    cmp = load_comparison(tmp_path)
    assert cmp is not None
    assert cmp.error is not None
    assert cmp.error.startswith("modes.json: ")
    assert load_comparison(tmp_path / "nowhere") is None


@pytest.mark.netns
@pytest.mark.bpf
def test_a_comparison_scenario_measures_every_mode_and_the_report_shows_it(
        tmp_path: Path, captures_root: Path) -> None:
    data = yaml.safe_load((MODES_DIR / "compare-modes.yaml").read_text())
    data["topology"] = str((MODES_DIR / data["topology"]).resolve())
    data["trace"] = str((MODES_DIR / data["trace"]).resolve())
    data["compare_modes"] = {"modes": ["snat", "dsr"], "transfer_bytes": 2_000_000,
                             "requests": 20}
    path = tmp_path / "compare-modes.yaml"
    path.write_text(yaml.safe_dump(data))
    run = run_scenario(path, captures_root=captures_root)
    assert run.passed
    figures = {m["mode"]: m for m in json.loads((run.capture_dir / "modes.json")
                                                .read_text())["modes"]}
    snat, dsr = figures["snat"], figures["dsr"]
    assert snat["transfer_bytes"] == dsr["transfer_bytes"] == 2_000_000
    assert dsr["reply_bytes"] == 0  # the backend's node answers the client itself
    assert snat["reply_bytes"] > 2 * 2_000_000  # in from the backend, out to the client
    assert dsr["lb_bytes"] < 0.1 * snat["lb_bytes"]
    assert snat["requests"] == dsr["requests"] == 20
    assert 0 < snat["latency_p50_ms"] <= snat["latency_p99_ms"]
    assert (run.capture_dir / "modes.svg").read_text().lstrip().startswith("<?xml")
    build_report(run.capture_dir)
    html = (run.capture_dir / "report.html").read_text()
    assert '<section id="modes">' in html
    assert '<tr data-mode="dsr">' in html
    assert '<img class="modes-plot" src="modes.svg"' in html
    assert f"{VIP}:{NODE_PORT}" in html
