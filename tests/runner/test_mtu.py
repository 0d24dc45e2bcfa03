"""The MTU and the 8-byte option, end to end (scenarios/mtu/): DSR ICMP errors on,
the client's kernel learns the path MTU from the ICMP fragmentation-needed and its
UDP and TCP traffic adapts; off, the packet vanishes and the diagnosis says why.
And TCP Fast Open through DSR (scenarios/tfo/): what the captures show of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.capture.capdir import CaptureDir
from lab.check.tfo import TfoConnection, cookie_rule_holds, tfo_connections
from lab.model.scenario import SCENARIO_DIR
from lab.runner.scenario import run_scenario
from tests.cli.helpers import dsrlab
from tests.runner.mtu_scenarios import MTU, datagrams, with_setting
from tests.seed import LB_NAME

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


def test_udp_too_big_gets_icmp_and_the_path_mtu_adapts(captures_root: Path) -> None:
    run = run_scenario(MTU / "udp-frag-needed.yaml", captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    assert run.result is not None
    assert run.result.diagnoses == ()
    first, retry = datagrams(run)
    # the client's kernel took MTU 1492 from the ICMP error: the socket says EMSGSIZE
    assert (first["ip_len"], first["error"], first["path_mtu"]) == (1500, "EMSGSIZE", 1492)
    assert (retry["ip_len"], retry["retry"], retry["path_mtu"]) == (1492, True, 1492)
    assert str(retry["answer"]).startswith("PodName: ")


def test_udp_too_big_without_icmp_errors_is_a_black_hole(captures_root: Path) -> None:
    run = run_scenario(MTU / "udp-too-big-silent.yaml", captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    # each wait ended at the LB node's drop, which the datapath counted (no ICMP came)
    assert [(d["error"], d["path_mtu"]) for d in datagrams(run)] == [
        ("stopped: cilium-dsr-control-plane's datapath counted frag_needed (1)", 1500)] * 2
    assert run.result is not None
    line, counted = run.result.diagnoses
    # the datapath's counters say the same in its words (both datagrams)
    assert counted == (f"dropped at {LB_NAME} eth0: drop_frag_needed (the lab's dsr.c "
                       "counted 2 packets)")
    assert line == (
        f"{LB_NAME} did not forward a 1500-byte datagram from the client: with the 8-byte "
        "DSR option it would be 1508 bytes, over the MTU 1500; DSR ICMP errors are off, so "
        "the client is never told and every datagram of that size is lost (turn them on, "
        "or lower the MTU the client uses)")
    out = dsrlab("review", str(run.capture_dir))
    assert out.returncode == 1
    assert f"diagnosis: {run.capture_dir}: {line}\n" in out.stdout


def test_the_icmp_trace_fails_when_the_errors_are_off(captures_root: Path,
                                                      tmp_path: Path) -> None:
    """The frag-needed trace can fail: the same scenario with the errors off."""
    # (no answer can come: the wait for one need not be the 5 s an answer may take)
    sc = with_setting(tmp_path, "udp-frag-needed", "load_balancer.dsr_icmp_errors: false",
                      replace=("timeout_s: 5", "timeout_s: 1"))
    run = run_scenario(sc, captures_root=captures_root)
    assert run.result is not None
    assert not run.passed
    failed = {c.name for c in run.result.claims if not c.passed}
    assert {"client", "lb-node"} <= failed


def test_tcp_fast_open_syn_too_big_adapts_and_the_transfer_completes(
        captures_root: Path) -> None:
    run = run_scenario(MTU / "tcp-frag-needed.yaml", captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    assert run.result is not None
    assert run.result.diagnoses == ()
    assert [s.kind for s in run.steps] == ["transfer", "transfer"]
    assert all(s.ok for s in run.steps), [s.summary for s in run.steps]
    big = run.steps[1].figures["transfers"][0]
    assert big["uploaded"] == 300000
    # the report says what the traffic did, step by step
    assert run.report is not None
    html = run.report.html.read_text()
    assert html.count('class="step ok" data-kind="transfer"') == 2
    assert "2. transfer: upload of 300000 bytes: 1/1 completed" in run.report.markdown.read_text()


def test_tcp_fast_open_through_dsr(captures_root: Path) -> None:
    run = run_scenario(SCENARIO_DIR / "tfo" / "tcp-fast-open.yaml",
                       captures_root=captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    conns = tfo_connections(CaptureDir.load(run.capture_dir))
    assert len(conns) == 24
    assert conns[0].outcome == "asked for a cookie"
    assert conns[0].data_len == 0
    assert conns[0].cookie_issued  # the first pod's cookie
    later = conns[1:]
    assert all(c.cookie_sent and c.data_len > 0 for c in later)  # every one with data
    assert all(c.backend for c in conns)
    # the pods' kernels: data accepted exactly when the SYN reached the cookie's pod
    assert cookie_rule_holds(conns) == []
    # random selection: with 23 SYNs, none on the cookie's pod has odds 2^-23 (with
    # 11 it was 2^-11: one run in 2048 failed for nothing)
    assert any(c.data_acked for c in later)
    assert re.match(r"upload of 1000 bytes with TCP Fast Open: 24/24 completed",
                    run.steps[0].summary)


def test_the_cookie_rule_catches_what_breaks_it() -> None:
    a, b, cookie = "10.0.2.123", "10.0.0.216", b"\x01" * 8
    asked = TfoConnection(1000, 1, 0, b"", backend=a, data_acked=False, cookie_issued=cookie)
    refused_by_its_own = TfoConnection(1001, 5, 100, cookie, backend=a, data_acked=False)
    accepted_elsewhere = TfoConnection(1002, 9, 100, cookie, backend=b, data_acked=True)
    assert cookie_rule_holds([asked]) == []
    assert len(cookie_rule_holds([asked, refused_by_its_own, accepted_elsewhere])) == 2


def test_an_unreadable_steps_file_is_said_not_fatal(tmp_path: Path) -> None:
    from lab.report.model import load_steps  # noqa: PLC0415

    assert load_steps(tmp_path) is None  # a capture set without steps
    (tmp_path / "steps.json").write_text("[{\"kind\": \"send\"}]")
    got = load_steps(tmp_path)
    assert got is not None
    assert got.rows == []
    assert got.error is not None
    assert got.error.startswith("steps.json: ")
