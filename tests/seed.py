"""The seed's names, addresses and packets, all read from ``topologies/seed.yaml``.

Tests refer to the seed through these names, so one change of address in
the topology is one edit. The packets are the write-up's flow, built with
scapy from the topology: the client's SYN to the NodePort, the same SYN
after the LB node (DNATed to the remote pod, the DSR option appended),
and the backend's SYN+ACK answered from the service address.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from lab.model.scenario import load_scenario
from lab.plumbing.names import docker_mac
from lab.wire import dsropt

REPO = Path(__file__).resolve().parents[1]
SEED_TOPOLOGY_PATH = REPO / "topologies" / "seed.yaml"
SEED_SCENARIO_PATH = REPO / "scenarios" / "seed.yaml"
SEED_TRACE_PATH = REPO / "scenarios" / "seed.trace.yaml"

SCENARIO, TOPOLOGY = load_scenario(SEED_SCENARIO_PATH)
SERVICE = TOPOLOGY.service(SCENARIO.target.service)
LB_NODE = TOPOLOGY.node(SCENARIO.target.node)  # the node the client addresses
CLIENT_IP = str(TOPOLOGY.client.ip)
VIP = str(LB_NODE.ip)  # the NodePort service address, e.g. 172.18.0.2
NODE_PORT = SERVICE.node_port  # 32000
POD_PORT = SERVICE.target_port  # 80
BACKENDS = TOPOLOGY.backends(SERVICE.name)
REMOTE_POD = next(p for p in BACKENDS if p.node != LB_NODE.name)  # the DSR case
LOCAL_POD = next((p for p in BACKENDS if p.node == LB_NODE.name), None)
POD_IP = str(REMOTE_POD.ip)
REMOTE_NODE = TOPOLOGY.node(REMOTE_POD.node)
CLIENT_PORT = 40000

OPTION = dsropt.encode(VIP, NODE_PORT)  # 9a 08 00 7d 02 00 12 ac for 172.18.0.2:32000


def client_syn(sport: int = CLIENT_PORT) -> Ether:
    """The client's SYN to the NodePort, as it leaves the client."""
    return (Ether(src=docker_mac(CLIENT_IP), dst=docker_mac(VIP))
            / IP(src=CLIENT_IP, dst=VIP, ttl=64)
            / TCP(sport=sport, dport=NODE_PORT, flags="S", seq=1000))


def dsr_syn(sport: int = CLIENT_PORT) -> Ether:
    """The same SYN after the LB node: to the remote pod, client kept, option appended."""
    return (Ether(src=docker_mac(VIP), dst=docker_mac(REMOTE_NODE.ip))
            / IP(src=CLIENT_IP, dst=POD_IP, ttl=63, options=[OPTION])
            / TCP(sport=sport, dport=POD_PORT, flags="S", seq=1000))


def service_synack(sport: int = CLIENT_PORT) -> Ether:
    """The backend's SYN+ACK as the client sees it: from the service address."""
    return (Ether(src=docker_mac(REMOTE_NODE.ip), dst=docker_mac(CLIENT_IP))
            / IP(src=VIP, dst=CLIENT_IP, ttl=63)
            / TCP(sport=NODE_PORT, dport=sport, flags="SA", seq=5000, ack=1001))


def pod_synack(sport: int = CLIENT_PORT) -> Ether:
    """A SYN+ACK that escaped unrewritten: from the pod's own address (DSR broken)."""
    return (Ether(src=docker_mac(REMOTE_NODE.ip), dst=docker_mac(CLIENT_IP))
            / IP(src=POD_IP, dst=CLIENT_IP, ttl=63)
            / TCP(sport=POD_PORT, dport=sport, flags="SA", seq=5000, ack=1001))
