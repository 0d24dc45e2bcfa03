"""The diagnosis rules (lab.check.diagnose): a working run has none; each broken hop of
a real capture set (packets taken out of the seed's) is named in one sentence; after
the handshake, a download built segment by segment (tests/check/synth.py) that lost
segments, stalled at a chosen hop, reset, closed early or was refused, each in its
own words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap, wrpcap

from lab.capture.capdir import CaptureDir
from lab.check.diagnose import diagnose
from tests.check.synth import BreakAt, Download, download
from tests.seed import (
    CLIENT_IP,
    LB_NAME,
    NODE_PORT,
    POD_IP,
    POD_NAME,
    POD_NODE,
    POD_PORT,
    VIP,
)


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


# -- after the handshake: one download, segment by segment (tests/check/synth.py) -------

WHERE_POD, WHERE_NODE, WHERE_CLIENT = f"{POD_NAME} eth0", f"{POD_NODE} eth0", "client br-kind"
THE_POD, THE_CLIENT = f"the pod {POD_IP}:{POD_PORT}", f"the client {CLIENT_IP}:40000"


def _lines(tmp_path: Path, d: Download) -> list[tuple[str, str]]:
    return [(x.cause, x.text()) for x in diagnose(download(tmp_path, d))]


@pytest.mark.parametrize("fin_with_data", [False, True])
def test_a_download_that_completed_has_no_diagnosis(tmp_path: Path,
                                                    fin_with_data: bool) -> None:
    """The FIN alone, or on the last data segment (its bytes come before it)."""
    assert _lines(tmp_path, Download(fin_with_data=fin_with_data)) == []


def test_segments_lost_between_two_hops_and_sent_again_are_counted(tmp_path: Path) -> None:
    assert _lines(tmp_path, Download(lost=frozenset({3, 7}))) == [(
        "segments-lost",
        f"the transfer completed, but 2 of the 22 data segments from {THE_POD} seen at "
        f"{WHERE_POD} never reached {WHERE_NODE} and were sent again (9.1 %): lost between "
        f"{WHERE_POD} and {WHERE_NODE}")]


@pytest.mark.parametrize(("break_at", "went_on", "next_hop"), [
    ("pod-node", WHERE_POD, WHERE_NODE), ("node-client", WHERE_NODE, WHERE_CLIENT)])
def test_a_stalled_download_says_where_its_segments_were_last_seen(
        tmp_path: Path, break_at: BreakAt, went_on: str, next_hop: str) -> None:
    """8 of 20 segments through; then the sender goes on (one new segment, sent again
    twice) and the next hop sees none of it; the client gives up."""
    assert _lines(tmp_path, Download(stop=8, break_at=break_at, end="client-fin")) == [(
        "transfer-stalled",
        f"the transfer stopped after 8.0 kB of 20.0 kB: the last segment from {THE_POD} "
        f"seen at {next_hop} was at t=0.01 s; {went_on} saw 3 more after t=0.01 s (until "
        f"t=1.21 s, 2 of them retransmissions), none of which reached {next_hop}; then "
        f"{THE_CLIENT} closed the connection at t=1.71 s")]


def test_a_stall_whose_acknowledgements_were_lost(tmp_path: Path) -> None:
    """DSR's other path: the data keeps coming straight from the backend's node, the
    client's acknowledgements (through the node it addressed) stop."""
    assert _lines(tmp_path, Download(stop=8, break_at="acks", end="none")) == [(
        "transfer-stalled",
        f"the transfer stopped after 8.0 kB of 20.0 kB: segments from {THE_POD} kept "
        f"reaching {WHERE_CLIENT} (3 more after t=0.01 s), but the acknowledgements of "
        f"{THE_CLIENT} seen at {WHERE_CLIENT} after that (until t=1.21 s) never reached "
        f"{LB_NAME} eth0 (in)")]


@pytest.mark.parametrize("end_after", [0.5, 0.05])
def test_a_stall_whose_acknowledgements_were_lost_however_soon_the_client_gave_up(
        tmp_path: Path, end_after: float) -> None:
    """The acknowledgements died at the node addressed, then the client closed: the
    capture shows where they stopped, whether the client's own time limit fired long
    after the last retransmission reached it or just after it (a loaded machine: the
    client's limit and the sender's retransmission timer race). The order of two timers
    is not what broke the flow (issue 17: "the client gave up" was said instead)."""
    (line,) = _lines(tmp_path, Download(stop=8, break_at="acks", end="client-fin",
                                        end_after=end_after))
    assert line[0] == "transfer-stalled"
    assert line[1].startswith(
        f"the transfer stopped after 8.0 kB of 20.0 kB: segments from {THE_POD} kept "
        f"reaching {WHERE_CLIENT} (3 more after t=0.01 s), but the acknowledgements of "
        f"{THE_CLIENT} seen at {WHERE_CLIENT} after that (until t=1.21 s) never reached "
        f"{LB_NAME} eth0 (in); then {THE_CLIENT} closed the connection at t="), line


def test_a_client_that_closed_a_flow_still_moving_at_its_own_pace_gave_up(
        tmp_path: Path) -> None:
    """A sender paused 0.4 s mid-way (a loaded machine starves a paced server) and came
    back; the client closed 0.3 s after the last segment: no longer than a pause the
    flow already had, so it closed a flow still moving, not one whose sender went quiet."""
    (line,) = _lines(tmp_path, Download(stop=8, more=0, break_at="silent", end="client-fin",
                                        end_after=0.3, pause=(4, 0.4)))
    assert line[0] == "receiver-gave-up", line
    assert line[1].startswith(f"{THE_CLIENT} closed the connection at t=0.71 s after 8.0 kB "
                              f"of 20.0 kB while {THE_POD} was still sending"), line
    # without the pause the same close 0.3 s later is a flow that had stopped
    (tmp_path / "steady").mkdir()
    (line,) = _lines(tmp_path / "steady", Download(stop=8, more=0, break_at="silent",
                                                   end="client-fin", end_after=0.3))
    assert line[0] == "transfer-stalled", line


def test_a_sender_gone_silent(tmp_path: Path) -> None:
    assert _lines(tmp_path, Download(stop=8, break_at="silent", end="none")) == [(
        "transfer-stalled",
        f"the transfer stopped after 8.0 kB of 20.0 kB: nothing more from {THE_POD} was "
        f"seen after t=0.01 s, though the acknowledgements of {THE_CLIENT} reached "
        f"{WHERE_POD}: {THE_POD} went silent")]


def test_a_reset_says_who_sent_the_rst(tmp_path: Path) -> None:
    assert _lines(tmp_path, Download(stop=8, more=0, end="rst")) == [(
        "connection-reset",
        f"{THE_POD} reset the connection after 8.0 kB of 20.0 kB: its RST left {WHERE_POD} "
        f"at t=0.51 s")]


def test_a_fin_before_the_announced_length(tmp_path: Path) -> None:
    assert _lines(tmp_path, Download(stop=8, more=0, end="fin")) == [(
        "closed-early",
        f"{THE_POD} closed the connection after 8.0 kB of the 20.0 kB its response announced "
        f"(Content-Length): its FIN left {WHERE_POD} at t=0.51 s")]


def test_a_syn_answered_with_an_rst(tmp_path: Path) -> None:
    assert _lines(tmp_path, Download(end="refused")) == [(
        "connection-refused",
        f"{POD_NODE} answered the SYN for {POD_IP}:{POD_PORT} with an RST: the pod refused "
        f"the connection (nothing listening on port {POD_PORT}?)")]


def test_the_rules_read_the_capture_set_only(tmp_path: Path) -> None:
    """A stall diagnosed from a capture directory copied elsewhere (what dsrlab review
    gets): the same line."""
    d = Download(stop=8, end="client-fin")
    (tmp_path / "a").mkdir()
    here = _lines(tmp_path / "a", d)
    assert here
    copy = tmp_path / "b"
    shutil.copytree(tmp_path / "a", copy)
    assert [(x.cause, x.text()) for x in diagnose(CaptureDir.load(copy))] == here
