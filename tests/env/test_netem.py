"""Delay, which only netem makes (lab.env.faults): the round trip grows by it, or,
on a kernel without ``sch_netem`` (this project's 6.18 host), the fault is refused
with that reason. The kernel matrix runs this module (and the delay scenario) under
its guests' kernels, which have netem, as the default group ``netem``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab.env.faults import NO_NETEM, Applied, FaultUnavailable, inject, probe_netem
from lab.env.netns import NetnsLab
from lab.model.scenario import Fault
from lab.plumbing import names, nsutil, owner
from tests.env.conftest import READY_S
from tests.seed import LB_NAME, POD_NODE

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


_CONNECT_TIME = """
import socket, sys, time
best = None
for _ in range(5):
    s = socket.socket()
    t = time.perf_counter()
    s.connect((sys.argv[1], int(sys.argv[2])))
    took = time.perf_counter() - t
    s.close()
    best = took if best is None else min(best, took)
print(best)
"""


def _connect_s(lab: NetnsLab) -> float:
    out = lab.run("client", [sys.executable, "-c", _CONNECT_TIME, str(lab.hosts[LB_NAME].ip),
                             "32000"], timeout=READY_S)
    return float(out.stdout)


def _try(lab: NetnsLab, fault: Fault) -> Applied | FaultUnavailable:
    """The fault applied, or the reason it cannot be (found by trying)."""
    try:
        return inject(lab, fault)
    except FaultUnavailable as exc:
        return exc


def _qdiscs(lab: NetnsLab, host: str) -> list[str]:
    shown = json.loads(lab.run(host, ["tc", "-j", "qdisc", "show", "dev",
                                      lab.hosts[host].ifname]).stdout)
    return [q["kind"] for q in shown if q["kind"] not in ("noqueue", "clsact")]


def test_a_delay_grows_the_round_trip(fault_lab: NetnsLab) -> None:
    """50 ms on the client's bridge: a TCP handshake through the service takes 50 ms
    more (netem), and as long as before once undone."""
    lab = fault_lab
    plain = _connect_s(lab)
    applied = _try(lab, Fault(host="client", delay_ms=50))
    if isinstance(applied, FaultUnavailable):
        pytest.skip(str(applied))
    try:
        assert applied.mechanism == "netem"
        assert _qdiscs(lab, "client") == ["netem"]
        assert _connect_s(lab) >= plain + 0.045
    finally:
        applied()
    assert _qdiscs(lab, "client") == []
    # shorter than any handshake the 50 ms could still hold back (best of 5: a loaded
    # machine's pause does not fall on all of them)
    assert _connect_s(lab) < plain + 0.045


@pytest.mark.parametrize("fault", [Fault(host="client", delay_ms=50),
                                   Fault(host=POD_NODE, loss_percent=10, delay_ms=5)],
                         ids=["delay", "loss-and-delay"])
def test_without_netem_a_delay_is_refused_with_the_reason(fault_lab: NetnsLab,
                                                         fault: Fault) -> None:
    """The fabric program can lose frames but not hold them back: without sch_netem a
    fault with a delay is refused whole (loss included), saying why, and leaves
    nothing behind."""
    lab = fault_lab
    applied = _try(lab, fault)
    if not isinstance(applied, FaultUnavailable):
        applied()
        pytest.skip("this kernel has sch_netem: delays are made")
    assert str(applied) == NO_NETEM
    assert _qdiscs(lab, fault.host) == []




def test_a_delay_on_the_lb_node_holds_the_syn_back(captures_root: Path) -> None:
    """scenarios/failures/delay-on-lb: 100 ms at the node addressed; the transfer
    completes, no diagnosis, and the capture shows the DNATed SYN leave 100 ms late."""
    from tests.runner.test_faults import _delayed_at_the_lb_node, _run  # noqa: PLC0415

    run = _run("delay-on-lb", captures_root)
    assert run.passed, run.result.summary() if run.result else "no result"
    assert run.result is not None
    assert run.result.diagnoses == ()
    assert all(e.ok for e in run.exchanges)
    _delayed_at_the_lb_node(run.capture_dir)


def test_the_probe_agrees_with_the_fault_and_leaves_nothing(fault_lab: NetnsLab) -> None:
    """What the runner asks before any lab (a netem qdisc on a scratch namespace's
    loopback) is what a fault on a lab host finds; the probe's namespace and claim go."""
    applied = _try(fault_lab, Fault(host="client", delay_ms=50))
    if not isinstance(applied, FaultUnavailable):
        applied()
    run_id = names.new_run_id()
    assert probe_netem(run_id) == (not isinstance(applied, FaultUnavailable))
    assert [n for n in nsutil.list_netns() if run_id in n] == []
    assert owner.run_files().get(run_id, []) == []
