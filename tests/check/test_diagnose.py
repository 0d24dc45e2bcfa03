"""The diagnosis rules (lab.check.diagnose): a working run has none; each broken hop of
a real capture set (packets taken out of the seed's) is named in one sentence."""

from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap, wrpcap

from lab.capture.capdir import CaptureDir
from lab.check.diagnose import diagnose
from tests.seed import CLIENT_IP, LB_NAME, NODE_PORT, VIP


def _point_file(capdir: Path, host: str) -> Path:
    manifest = json.loads((capdir / "manifest.json").read_text())
    (point,) = [p for p in manifest["points"] if p["host"] == host]
    return capdir / point["file"]


def _drop(pcap: Path, keep: object) -> None:
    frames = [f for f in rdpcap(str(pcap)) if keep(f)]  # type: ignore[operator]
    wrpcap(str(pcap), frames)


def test_a_working_run_has_no_diagnosis(seed_capture: Path) -> None:
    assert diagnose(CaptureDir.load(seed_capture)) == []


def test_a_syn_that_never_reached_the_node(seed_capture_copy: Path) -> None:
    _drop(_point_file(seed_capture_copy, LB_NAME),
          lambda f: not (TCP in f and f[IP].src == CLIENT_IP and f[IP].dst == VIP))
    found = diagnose(CaptureDir.load(seed_capture_copy))
    assert [d.cause for d in found] == ["syn-lost"]
    assert found[0].text().startswith(f"the client's SYN to {VIP}:{NODE_PORT} never reached "
                                      f"{LB_NAME}: lost between the client and the node")


def test_a_syn_the_node_kept(seed_capture_copy: Path) -> None:
    """The node saw the SYN and sent nothing on, and the client never got an answer."""
    _drop(_point_file(seed_capture_copy, LB_NAME),
          lambda f: not (TCP in f and f[IP].src == CLIENT_IP and f[IP].dst != VIP))
    _drop(_point_file(seed_capture_copy, "client"),
          lambda f: not (TCP in f and f[IP].src == VIP))
    found = diagnose(CaptureDir.load(seed_capture_copy))
    assert [d.cause for d in found] == ["dropped-at-lb"]
    assert found[0].line == (f"{LB_NAME} received the SYN to {VIP}:{NODE_PORT} and sent "
                             "nothing on: it dropped it there (no backend it may use?)")
    assert len(found[0].flows) >= 2
    assert found[0].text().endswith(f"({len(found[0].flows)} connections)")
