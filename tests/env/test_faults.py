"""Faults on a real netns lab (lab.env.faults): each one observed doing what it says,
and undone.

* a link down: the service stops answering through that host, and answers again
  once the link is up, with the routes the kernel flushed put back;
* loss: of 200 UDP datagrams through the lossy interface about the share asked
  is lost (netem where the kernel has it, else the lab's fabric program at tc
  egress, which a node's own datapath still runs after);
* delay: in test_netem.py (its own module, so the kernel matrix can run it alone);
* a pod killed: it stops serving, the other pod goes on.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab.env.base import StopsPods
from lab.env.faults import NO_NETEM, FaultError, inject
from lab.env.kind.backend import KindLab
from lab.env.netns import NetnsLab
from lab.env.traffic import curl
from lab.model.scenario import Fault
from tests.env.conftest import READY_S
from tests.seed import LB_NAME, POD2_NAME, POD_IP, POD_NAME, POD_NODE, SERVICE_URL

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

DATAGRAMS = 200
WORKS_S = 10.0  # how long a request that must be answered may take
FAILS_S = 0.5  # how long to wait for one that must not be


@pytest.fixture
def lab(fault_lab: NetnsLab) -> NetnsLab:
    return fault_lab


def _routes(lab: NetnsLab, host: str) -> list[dict[str, object]]:
    out = json.loads(lab.run(host, ["ip", "-j", "-4", "route", "show"]).stdout)
    assert isinstance(out, list)
    return sorted(out, key=lambda r: str(r["dst"]))


def _serves(lab: NetnsLab, timeout_s: float = WORKS_S) -> bool:
    return curl(lab, "client", SERVICE_URL, timeout_s=timeout_s).ok


def _pod_serves(lab: NetnsLab, timeout_s: float) -> bool:
    """POD_NAME answers its node (which reaches it over its lxc veth)."""
    return curl(lab, POD_NODE, f"http://{POD_IP}/", timeout_s=timeout_s).pod == POD_NAME


@pytest.mark.parametrize("host", [LB_NAME, "client", POD_NAME])
def test_a_link_down_stops_the_traffic_and_its_undo_restores_it(lab: NetnsLab,
                                                                host: str) -> None:
    """The LB node's eth0 (every request crosses it), the client's bridge, a pod's eth0:
    down, then up with every route through it back as it was."""
    before = _routes(lab, host)
    assert _serves(lab)
    undo = inject(lab, Fault(host=host, link_down=True))
    assert undo.mechanism == "link"
    link = json.loads(lab.run(host, ["ip", "-j", "link", "show", lab.hosts[host].ifname]).stdout)
    assert "UP" not in link[0]["flags"]
    if host == POD_NAME:  # the other pod still answers: ask this one, from its node
        assert not _pod_serves(lab, FAILS_S)
    else:
        assert not _serves(lab, FAILS_S)
    undo()
    undo()  # a second undo does nothing
    assert _routes(lab, host) == before
    assert _serves(lab)
    if host == POD_NAME:
        assert _pod_serves(lab, WORKS_S)


# UDP datagrams, counted at the receiver until the sender's "end" (or, should every
# "end" be lost, a quiet spell long enough for any scheduling delay): it prints how
# many came
_RECEIVE = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# room for every datagram while this process waits for a CPU (a loaded machine): the
# default buffer holds fewer than are sent, and an overflow is not the loss measured
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE (root: past rmem_max)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(float(sys.argv[3]))
s.recv(2048)  # the sender's "start", sent until it comes
s.settimeout(float(sys.argv[4]))
n = 0
try:
    while (got := s.recv(2048)) != b"end":
        n += got != b"start"
except TimeoutError:
    pass
print(n, flush=True)
"""
_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):  # the start, said often enough to get through any loss
    s.sendto(b"start", (sys.argv[1], int(sys.argv[2])))
time.sleep(0.05)
for i in range(int(sys.argv[3])):
    s.sendto(b"%d" % i, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.0005)
for _ in range(20):  # the end, said often enough to get through any loss
    s.sendto(b"end", (sys.argv[1], int(sys.argv[2])))
"""


def _datagrams_through(lab: NetnsLab, sender: str, receiver: str, port: int = 9999) -> int:
    """How many of DATAGRAMS UDP datagrams from ``sender`` reach ``receiver``."""
    to = str(lab.hosts[receiver].ip)
    proc = lab.start(receiver, [sys.executable, "-c", _RECEIVE, to, str(port),
                                f"{READY_S:g}", "10"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        lab.run(sender, [sys.executable, "-c", _SEND, to, str(port), str(DATAGRAMS)],
                timeout=READY_S)
        out, _ = proc.communicate(timeout=READY_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return int(out.split()[-1])


@pytest.mark.parametrize("host", ["client", POD_NODE])
def test_loss_drops_about_the_share_asked(lab: NetnsLab, host: str) -> None:
    """25 % loss at the sender's interface: of 200 datagrams 50 +- 30 are lost (5
    standard deviations)."""
    receiver = POD_NODE if host == "client" else "client"
    assert _datagrams_through(lab, host, receiver) == DATAGRAMS  # (and the neighbours known)
    applied = inject(lab, Fault(host=host, loss_percent=25))
    try:
        got = _datagrams_through(lab, host, receiver)
        lost = DATAGRAMS - got
        assert 20 <= lost <= 80, f"{lost} of {DATAGRAMS} lost ({applied.what})"
        if applied.mechanism == "fabric":
            assert NO_NETEM in applied.what
            assert applied.counters is not None
            assert applied.counters()["lost"] >= lost
    finally:
        applied()
    assert _datagrams_through(lab, host, receiver) == DATAGRAMS


def test_a_nodes_datapath_still_runs_behind_the_loss(lab: NetnsLab) -> None:
    """The loss program goes ahead of the node's own filter on eth0's egress and hands
    on what it keeps: the pod's replies still leave translated (DSR), or the client
    would never get an answer from the service."""
    applied = inject(lab, Fault(host=POD_NODE, loss_percent=1))
    try:
        answers: list[str | None] = []
        while POD_NAME not in answers and len(answers) < 20:
            ex = curl(lab, "client", SERVICE_URL, timeout_s=WORKS_S)
            assert ex.ok, ex.error
            answers.append(ex.pod)
        assert POD_NAME in answers
        if applied.counters is not None:  # the fabric program (no netem)
            assert applied.counters()["passed"] > 0
    finally:
        applied()


def test_a_killed_pod_stops_serving_and_the_other_goes_on(lab: NetnsLab) -> None:
    applied = inject(lab, Fault(host=POD_NAME, kill_pod=True))
    assert applied.mechanism == "pod-server"
    assert lab.servers is not None
    assert lab.servers.serving() == [POD2_NAME]
    refused = lab.run(POD_NODE, ["curl", "-sS", "--max-time", f"{WORKS_S:g}",
                                 f"http://{POD_IP}/"], check=False)
    assert refused.returncode == 7, refused.stderr  # couldn't connect: nothing listens
    # random selection still picks the dead pod half the time (the client sees its
    # refusal); ask until the live one answers: 40 misses in a row has odds 2^-40
    answers: list[str | None] = []
    while POD2_NAME not in answers and len(answers) < 40:
        answers.append(curl(lab, "client", SERVICE_URL, timeout_s=WORKS_S).pod)
    assert POD2_NAME in answers
    assert set(answers) <= {POD2_NAME, None}  # the killed pod never answered
    applied()  # nothing to undo: a killed pod stays down
    assert lab.servers.serving() == [POD2_NAME]


def test_faults_on_what_is_not_there_are_refused(lab: NetnsLab) -> None:
    with pytest.raises(FaultError, match="no host 'nowhere'"):
        inject(lab, Fault(host="nowhere", link_down=True))
    with pytest.raises(FaultError, match=f"kill_pod: {LB_NAME} is a node, not a pod"):
        inject(lab, Fault(host=LB_NAME, kill_pod=True))


def test_only_a_lab_that_can_stop_one_pod_says_so() -> None:
    """kill_pod asks the lab through the StopsPods contract: the netns lab stops a
    pod's server; a kind cluster's DaemonSet would start the pod again, so it is not one."""
    assert issubclass(NetnsLab, StopsPods)
    assert not issubclass(KindLab, StopsPods)
