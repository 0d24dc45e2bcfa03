"""The load-balancer modes on a live lab, with real curl from the client: SNAT (the
pod's peer is the node, replies come back through it), hybrid, Maglev (a flow gets
the same backend whichever node's NodePort it reaches) and
externalTrafficPolicy=Local (a node without a local pod drops, one with serves it)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest

from lab.env.netns import NetnsLab, netns_lab
from lab.env.traffic import curl
from lab.model.topology import Topology
from tests.seed import LB_NAME, NODE_PORT, POD_NODE, TOPOLOGY

pytestmark = [pytest.mark.netns, pytest.mark.bpf]


def variant(mode: str = "dsr", algorithm: str = "random",
            policy: str = "Cluster") -> Topology:
    lb = TOPOLOGY.load_balancer.model_copy(update={"mode": mode, "algorithm": algorithm})
    svc = TOPOLOGY.services[0].model_copy(update={"external_traffic_policy": policy})
    return TOPOLOGY.model_copy(update={"load_balancer": lb, "services": [svc]})


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[NetnsLab]:
    with netns_lab(variant(**request.param)) as up:
        yield up


def url(node: str) -> str:
    return f"http://{TOPOLOGY.node(node).ip}:{NODE_PORT}/"


@pytest.mark.parametrize("lab", [{"mode": "snat"}], indirect=True)
def test_snat_serves_through_every_node_with_the_node_as_the_pods_peer(lab: NetnsLab) -> None:
    for node in (n.name for n in TOPOLOGY.nodes):
        for _ in range(4):
            ex = curl(lab, "client", url(node))
            assert ex.ok, (node, ex)
    lb = lab.datapath[LB_NAME]
    remote = [e for e in lb.snat_entries() if e.service_ip == str(TOPOLOGY.node(LB_NAME).ip)]
    assert remote, "the control-plane has no local pod: every flow it served was SNATed"
    assert all(e.client_ip == str(TOPOLOGY.client.ip) for e in remote)
    counters = lb.counters()
    assert counters["snat"] > 0
    assert counters["snat_reverse"] > 0  # the replies came back through it
    assert counters["opt_inserted"] == 0


@pytest.mark.parametrize("lab", [{"mode": "hybrid"}], indirect=True)
def test_hybrid_gives_tcp_the_option_and_no_snat(lab: NetnsLab) -> None:
    for _ in range(4):
        assert curl(lab, "client", url(LB_NAME)).ok
    counters = lab.datapath[LB_NAME].counters()
    assert counters["opt_inserted"] > 0
    assert counters["snat"] == 0


# one HTTP GET from a chosen source port, with SO_REUSEADDR: the port's last connection
# (to another node) may still be in TIME_WAIT, which curl's --local-port cannot bind over
GET_FROM_PORT = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(5)
s.bind(("", int(sys.argv[3])))
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.decode(errors="replace"))
"""


def pod_from_port(lab: NetnsLab, node: str, port: int) -> str | None:
    out = lab.run("client", [sys.executable, "-c", GET_FROM_PORT,
                             str(TOPOLOGY.node(node).ip), str(NODE_PORT), str(port)],
                  timeout=10, check=False).stdout
    m = re.search(r"PodName: (\S+)", out)
    return m[1] if m else None


@pytest.mark.parametrize("lab", [{"algorithm": "maglev"}], indirect=True)
def test_maglev_sends_a_flow_to_the_same_backend_from_every_node(lab: NetnsLab) -> None:
    """The same client address and port to each node's NodePort: one backend for all."""
    spread = set()
    for port in range(45000, 45012):
        pods = {pod_from_port(lab, n.name, port) for n in TOPOLOGY.nodes}
        assert None not in pods, (port, pods)
        assert len(pods) == 1, (port, pods)
        spread |= pods
    assert len(spread) == 2  # and the flows still spread over both pods


@pytest.mark.parametrize("lab", [{"algorithm": "random"}], indirect=True)
def test_random_selection_does_not_promise_that(lab: NetnsLab) -> None:
    """The control for the Maglev test: with random selection some source port gets
    different backends at different nodes (all 3 nodes agree on a port with odds 1/4, on
    all 12 ports with 2^-24: a false failure)."""
    differs = [port for port in range(45000, 45012)
               if len({pod_from_port(lab, n.name, port) for n in TOPOLOGY.nodes}) > 1]
    assert differs


@pytest.mark.parametrize("lab", [{"policy": "Local"}], indirect=True)
def test_local_policy_drops_without_a_local_pod_and_serves_with_one(lab: NetnsLab) -> None:
    refused = curl(lab, "client", url(LB_NAME), timeout_s=2)
    assert not refused.ok
    assert lab.datapath[LB_NAME].counters()["drop_no_local_backend"] >= 1
    local_pod = next(p.name for p in TOPOLOGY.pods if p.node == POD_NODE)
    for _ in range(6):
        ex = curl(lab, "client", url(POD_NODE))
        assert ex.ok, ex
        assert ex.pod == local_pod  # never the other node's pod
