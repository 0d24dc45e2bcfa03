"""Fragmented UDP through DSR, end to end (scenarios/mtu/udp-fragment*). A question
in fragments: ICMP for the full-size first piece, then every piece DNATed with the
option. A 4000-byte answer leaves the pod in three fragments. With fragment tracking every
fragment leaves the backend's node from the service address and the client's
socket gets the answer whole; off, the later fragments leave from the pod's own
address, the client gets nothing, and the diagnosis (live and in `dsrlab review`)
says why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.capture.capdir import CaptureDir
from lab.report.capset import load_view
from lab.report.ladder import find_flows
from lab.runner.scenario import run_scenario
from tests.cli.helpers import dsrlab
from tests.runner.mtu_scenarios import MTU, datagrams, with_setting

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

ANSWER = 4000


def _answer_pieces(cd: CaptureDir, role: str) -> list[tuple[str, int, bool]]:
    """(source, offset, more fragments) of the fragments to the client at a point."""
    (point,) = [p for p in cd.points if p.role == role and cd.packets(p)
                and any(q.is_fragment for q in cd.packets(p))]
    return [(p.src, p.frag_offset, p.more_fragments) for p in cd.packets(point)
            if p.dst == cd.client_ip and p.is_fragment]


def test_a_fragmented_answer_arrives_whole_with_fragment_tracking(captures_root: Path) -> None:
    run = run_scenario(MTU / "udp-fragmented-answer.yaml", captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    records = datagrams(run)
    assert [r["answer_bytes"] for r in records] == [ANSWER, ANSWER]
    assert all(str(r["answer"]).startswith("PodName: ") for r in records)
    cd = CaptureDir.load(run.capture_dir)
    assert cd.manifest.fragment_tracking is True
    service = cd.service.ip
    pieces = _answer_pieces(cd, "backend-node")
    assert pieces == [(service, 0, True), (service, 1480, True), (service, 2960, False)] * 2
    assert run.result is not None
    assert not run.result.diagnoses


def test_untracked_fragments_never_leave_the_node_and_the_diagnosis_says_so(
        captures_root: Path) -> None:
    """As Cilium without fragment tracking: the backend's node drops every fragment of
    the pod's answer (the first, with the ports, too); the drop counters name it."""
    run = run_scenario(MTU / "udp-fragments-untracked.yaml", captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    # each wait ended at the drop the datapath counted (lab.runner.steps.doom)
    errors = [str(r.get("error")) for r in datagrams(run)]
    assert len(errors) == 2
    assert all(e.startswith("stopped: ") and "counted frag_nosupport" in e for e in errors)
    cd = CaptureDir.load(run.capture_dir)
    assert cd.manifest.fragment_tracking is False
    pieces = [q for p in cd.points if p.role in ("backend-node", "client")
              for q in cd.packets(p) if q.is_fragment]
    assert pieces == []  # none of the answer's fragments left the pod's node
    (pod,) = [p for p in cd.points if p.role == "pod" and any(
        q.is_fragment for q in cd.packets(p))]
    assert len([q for q in cd.packets(pod) if q.is_fragment]) == 6  # 2 answers, 3 pieces
    assert run.result is not None
    (line,) = run.result.diagnoses
    m = re.fullmatch(r"dropped at (\S+) eth0: drop_frag_nosupport \(the lab's dsr\.c counted "
                     r"6 packets\)", line)
    assert m, line
    assert m[1] in {b.node for b in cd.manifest.backends}
    out = dsrlab("review", str(run.capture_dir))
    assert out.returncode == 1
    assert f"diagnosis: {run.capture_dir}: {line}\n" in out.stdout


def test_the_tracked_trace_fails_when_tracking_is_off(captures_root: Path,
                                                     tmp_path: Path) -> None:
    """The fragmented-answer trace can fail: the same scenario with tracking off."""
    sc = with_setting(tmp_path, "udp-fragmented-answer", "load_balancer.fragment_tracking: false",
                      replace=("timeout_s: 5", "timeout_s: 0.5"))
    run = run_scenario(sc, captures_root=captures_root)
    assert run.result is not None
    assert not run.passed
    failed = {c.name for c in run.result.claims if not c.passed}
    assert {"client", "backend-node"} <= failed


def test_a_fragmented_question_gets_icmp_then_goes_through_piece_by_piece(
        captures_root: Path) -> None:
    """3000 bytes from a socket left to Linux's default: the 1500-byte first fragment is
    answered with ICMP frag-needed (MTU 1492); the same datagram again, cut at 1492 by
    the client's kernel, is DNATed piece by piece with the option and answered. The
    ladder draws the whole exchange: the ICMP error and every piece in the flow."""
    run = run_scenario(MTU / "udp-fragmented-question.yaml", captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    first, again = datagrams(run)
    assert (first["error"], first["path_mtu"], again["retry"], again["size"]) == (
        "EMSGSIZE", 1492, True, 3000)
    assert str(again["answer"]).startswith("PodName: ")
    (step,) = run.steps
    assert step.ok
    cd = CaptureDir.load(run.capture_dir)
    (lb,) = [p for p in cd.points if p.role == "lb-node"]
    pods = {b.ip for b in cd.manifest.backends}
    sent_on = [p for p in cd.packets(lb)
               if p.src == cd.client_ip and p.dst in pods and p.proto == "udp"]
    # every piece 8 bytes longer, each with the option
    assert [(p.ip_len, p.frag_offset) for p in sent_on] == [(1500, 0), (1500, 1472), (92, 2944)]
    assert all(p.has_dsr_option for p in sent_on)
    (flow,), _ = find_flows(load_view(run.capture_dir))
    names = [t.name for t in flow.trails]
    # the first try's later pieces may cross the ICMP error on the wire; the second try
    # comes after it, and the answer last
    first_try = ["UDP frag 0+", "UDP frag 1480+", "UDP frag 2960"]
    assert sorted(names[:4]) == sorted([*first_try, "ICMP frag-needed mtu 1492"])
    assert names[0] == "UDP frag 0+"
    assert names[4:] == ["UDP frag 0+", "UDP frag 1472+", "UDP frag 2944", "UDP"]
    assert [t.hosts[0] for t in flow.trails[4:7]] == ["client"] * 3
