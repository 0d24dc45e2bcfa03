"""The datapath attached in a running seed lab: every node is a NodePort, the
local-backend case, the maps it fills, and malformed packets off the wire."""

from __future__ import annotations

import socket
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab.env.netns import NetnsLab
from lab.env.traffic import curl_until
from lab.plumbing import nsutil
from lab.plumbing.names import docker_mac
from tests.seed import (
    CLIENT_IP,
    LB_NAME,
    NODE_NAMES,
    NODE_PORT,
    POD_IP,
    POD_IPS,
    POD_NAMES,
    POD_NODE,
    POD_PORT,
    SERVICE_URL,
    TOPOLOGY,
    VIP,
)

pytestmark = [pytest.mark.netns, pytest.mark.bpf]

CLIENT = TOPOLOGY.client.name
PODS = set(POD_NAMES)


@pytest.mark.parametrize("node", NODE_NAMES)
def test_every_node_serves_the_nodeport_and_reaches_both_pods(seed_lab: NetnsLab,
                                                              node: str) -> None:
    """On a worker one backend is local (plain DNAT + reverse DNAT), one remote (DSR)."""
    ip = seed_lab.topology.node(node).ip
    exchanges = curl_until(seed_lab, CLIENT, f"http://{ip}:{NODE_PORT}/", want_pods=PODS,
                           min_requests=2, max_requests=40)
    assert all(ex.ok for ex in exchanges), [ex.error for ex in exchanges if not ex.ok]
    assert {ex.pod for ex in exchanges} == PODS


def test_lb_remembers_flows_and_backends_learn_the_service(seed_lab: NetnsLab) -> None:
    curl_until(seed_lab, CLIENT, SERVICE_URL, want_pods=PODS,
               min_requests=2, max_requests=40)
    ct = seed_lab.datapath[LB_NAME].ct_entries()
    assert {(e.service_ip, e.service_port, e.backend_port) for e in ct} >= {
        (VIP, NODE_PORT, POD_PORT)}
    assert {e.backend_ip for e in ct if e.service_ip == VIP} == set(POD_IPS)
    learned = seed_lab.datapath[POD_NODE].revnat_entries()
    dsr = [e for e in learned if (e.service_ip, e.service_port) == (VIP, NODE_PORT)]
    assert dsr, learned
    assert {(e.client_ip, e.backend_ip, e.backend_port) for e in dsr} == {
        (CLIENT_IP, POD_IP, POD_PORT)}


def _inject(lab: NetnsLab, frames: list[bytes]) -> None:
    """Send raw frames from the client's bridge (inside the lab only)."""
    sock = nsutil.socket_in(lab.netns(CLIENT), socket.AF_PACKET, socket.SOCK_RAW)
    with sock:
        sock.bind((lab.hosts[CLIENT].ifname, 0))
        for frame in frames:
            sock.send(frame)


def test_malformed_packets_off_the_wire_leave_the_datapath_working(seed_lab: NetnsLab) -> None:
    lb = seed_lab.topology.node(LB_NAME)
    eth = Ether(src=docker_mac(seed_lab.topology.client.ip), dst=docker_mac(lb.ip))
    syn = IP(src=CLIENT_IP, dst=str(lb.ip)) / TCP(sport=41000, dport=NODE_PORT, flags="S")
    good = bytes(eth / syn)
    ip_at = 14
    frames = [
        good[: ip_at + 10],  # truncated IP header
        good[:ip_at] + bytes([0x43]) + good[ip_at + 1:],  # IHL 3
        good[:ip_at] + bytes([0x4F]) + good[ip_at + 1:],  # IHL 15, beyond the packet
        bytes(eth / IP(src=CLIENT_IP, dst=str(lb.ip), len=1400)
              / TCP(sport=41001, dport=NODE_PORT, flags="S")),  # tot_len past the buffer
        bytes(eth / IP(src=CLIENT_IP, dst=str(lb.ip), frag=3, proto=6)
              / Raw(bytes(24))),  # a later fragment of a datagram never seen
        bytes(eth / IP(src=CLIENT_IP, dst=str(lb.ip), options=[IPOption(b"\x01" * 36)])
              / TCP(sport=41003, dport=NODE_PORT, flags="S")),  # 36 bytes of options: no room
        good[: ip_at + 20 + 6],  # TCP header cut short
        bytes(eth / IP(src=CLIENT_IP, dst=str(lb.ip)) / UDP(sport=41004, dport=NODE_PORT)
              / Raw(b"x")),  # UDP to a TCP-only NodePort
        bytes(Ether(src=eth.src, dst=eth.dst, type=0x86DD) / Raw(b"\x60" + b"\x00" * 60)),
    ]
    dp = seed_lab.datapath[LB_NAME]
    dp.reset_counters()
    _inject(seed_lab, frames)
    deadline = time.monotonic() + 5
    counters = dp.counters()
    while counters.get("drop_opt_too_long", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # the frames cross the veth in softirq context
        counters = dp.counters()
    assert counters.get("drop_opt_too_long", 0) >= 1, counters
    assert counters.get("drop_frag_not_found", 0) >= 1, counters  # as Cilium's
    # the next real request still goes through, over both backends
    exchanges = curl_until(seed_lab, CLIENT, f"http://{lb.ip}:{NODE_PORT}/", want_pods=PODS,
                           min_requests=2, max_requests=40)
    assert all(ex.ok for ex in exchanges)
    assert {ex.pod for ex in exchanges} == PODS
