"""The seed's names, addresses and packets, all read from ``topologies/seed.yaml``.

Tests refer to the seed through these names, so one change of address in
the topology is one edit. Only tests that pin the write-up's documented
values on purpose spell them out (tests/wire/test_dsropt.py,
tests/model/test_topology.py).

Names: the client (CLIENT_IP, CLIENT_MAC, CLIENT_PORT), the service on the
LB node (VIP, NODE_PORT, SERVICE_ADDR, SERVICE_URL, LB_NAME, LB_MAC), the
two backends (POD_* is the first pod the topology lists away from the LB
node, POD2_* the other one; each with _NAME, _IP, _ADDR, _NODE, _CIDR), the
nodes (WORKER_IP/_MAC for POD's node, WORKER2_* for POD2's, NODE_NAMES,
NODE_MACS), the DSR option in either byte order (OPTION, OPTION_NETWORK)
and how the host-order bytes read the other way round (MISREAD_*).

The packets are the write-up's flow, built with scapy from the topology:
the client's SYN to the NodePort, the same SYN after the LB node (DNATed to
the remote pod, the DSR option appended), and the backend's SYN+ACK
answered from the service address.
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

# the two pods by name: POD is the remote pod above, POD2 the other backend
POD_NAME, POD_NODE = REMOTE_POD.name, REMOTE_POD.node  # cni-8zxj9 on cilium-dsr-worker
OTHER_POD = next(p for p in BACKENDS if p.name != REMOTE_POD.name)
POD2_NAME, POD2_IP, POD2_NODE = OTHER_POD.name, str(OTHER_POD.ip), OTHER_POD.node
POD_NAMES = frozenset(p.name for p in BACKENDS)
POD_IPS = (POD_IP, POD2_IP)
POD_CIDR, POD2_CIDR = str(REMOTE_NODE.pod_cidr), str(TOPOLOGY.node(POD2_NODE).pod_cidr)

# the nodes: names and addresses on the bridge
LB_NAME = LB_NODE.name  # cilium-dsr-control-plane
WORKER_IP = str(REMOTE_NODE.ip)  # the node of POD
WORKER2_IP = str(TOPOLOGY.node(POD2_NODE).ip)  # the node of POD2
NODE_NAMES = tuple(n.name for n in TOPOLOGY.nodes)

# MACs as the kind bridge (and the netns backend) give them: 02:42 + the address
CLIENT_MAC = docker_mac(CLIENT_IP)
LB_MAC = docker_mac(VIP)
WORKER_MAC = docker_mac(WORKER_IP)
WORKER2_MAC = docker_mac(WORKER2_IP)
NODE_MACS = {n.name: docker_mac(n.ip) for n in TOPOLOGY.nodes}

# the service as the tools print it, and where a request goes
SERVICE_ADDR = f"{VIP}:{NODE_PORT}"  # 172.18.0.2:32000
SERVICE_URL = f"http://{SERVICE_ADDR}/"
POD_ADDR, POD2_ADDR = f"{POD_IP}:{POD_PORT}", f"{POD2_IP}:{POD_PORT}"  # 10.0.2.123:80, ...
BACKEND_ADDRS = (POD_ADDR, POD2_ADDR)

OPTION = dsropt.encode(VIP, NODE_PORT)  # 9a 08 00 7d 02 00 12 ac for 172.18.0.2:32000
OPTION_NETWORK = dsropt.encode(VIP, NODE_PORT, "network")  # 9a 08 7d 00 ac 12 00 02
# the host-order option read the other way round: what a wrong byte order shows
MISREAD_IP, MISREAD_PORT = dsropt.decode(OPTION, "network")  # 2.0.18.172, 125
MISREAD_ADDR = f"{MISREAD_IP}:{MISREAD_PORT}"


def flow_id(sport: int = CLIENT_PORT) -> str:
    """A flow as results.json and the report name it: the client's address and port."""
    return f"{CLIENT_IP}:{sport}"


def client_syn(sport: int = CLIENT_PORT) -> Ether:
    """The client's SYN to the NodePort, as it leaves the client."""
    return (Ether(src=CLIENT_MAC, dst=LB_MAC)
            / IP(src=CLIENT_IP, dst=VIP, ttl=64)
            / TCP(sport=sport, dport=NODE_PORT, flags="S", seq=1000))


def dsr_syn(sport: int = CLIENT_PORT) -> Ether:
    """The same SYN after the LB node: to the remote pod, client kept, option appended."""
    return (Ether(src=LB_MAC, dst=WORKER_MAC)
            / IP(src=CLIENT_IP, dst=POD_IP, ttl=63, options=[OPTION])
            / TCP(sport=sport, dport=POD_PORT, flags="S", seq=1000))


def service_synack(sport: int = CLIENT_PORT) -> Ether:
    """The backend's SYN+ACK as the client sees it: from the service address."""
    return (Ether(src=WORKER_MAC, dst=CLIENT_MAC)
            / IP(src=VIP, dst=CLIENT_IP, ttl=63)
            / TCP(sport=NODE_PORT, dport=sport, flags="SA", seq=5000, ack=1001))


def pod_synack(sport: int = CLIENT_PORT) -> Ether:
    """A SYN+ACK that escaped unrewritten: from the pod's own address (DSR broken)."""
    return (Ether(src=WORKER_MAC, dst=CLIENT_MAC)
            / IP(src=POD_IP, dst=CLIENT_IP, ttl=63)
            / TCP(sport=POD_PORT, dport=sport, flags="SA", seq=5000, ack=1001))
