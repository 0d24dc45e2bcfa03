"""The embedded backend: every host of a topology is a network namespace.

The package, by concern:

* :mod:`~lab.env.netns.layout`: device names, interface indices, sysctls,
  and the topology's look-ups computed once per bring-up;
* :mod:`~lab.env.netns.wiring`: each host's namespace and its links,
  addresses and routes, all over netlink from this process (the client's
  bridge, the nodes' ``eth0`` and router pair, the pods behind their
  ``lxc`` veths, ``autoDirectNodeRoutes``), in IPv6 too for a dual-stack
  topology;
* :mod:`~lab.env.netns.datapath`: what runs on each node's ``eth0`` behind
  one contract (:class:`NodeDatapaths`); the lab's own DSR datapath
  (tc ingress + egress) is :class:`LabDatapaths`;
* :mod:`~lab.env.netns.servers`: the one process per lab that serves every
  pod's workload port (:mod:`lab.env.podserver`);
* :mod:`~lab.env.netns.lab`: the lab brought up (:class:`NetnsLab`) and the
  undo stack that takes it down;
* :mod:`~lab.env.netns.backend`: :class:`NetnsBackend`, the bring-up's steps.

Nothing is created in the root namespace: veth peers are created straight
into their target namespaces, and every netlink socket is opened inside the
namespace it configures. A start that fails half-way undoes what it did.

How it stays fast at scale: a namespace's sockets and sysctls are made
while the thread is in it for its creation (no second ``setns``); links get
the interface index the lab chooses, so nothing is looked up; each
namespace's links, addresses and routes go to the kernel as one netlink
batch (:class:`lab.plumbing.rtnl.Rtnl`); the nodes' datapath objects load
and fill their maps on worker threads while the network is wired; the pods'
sockets are made, bound and listening before the one server process starts,
so that start is not waited for.
"""

from __future__ import annotations

from lab.env.netns.backend import NetnsBackend, netns_lab
from lab.env.netns.datapath import LabDatapaths, NodeDatapaths
from lab.env.netns.lab import NetnsLab
from lab.env.netns.layout import (
    BRIDGE_INDEX,
    BRIDGE_PREFIX,
    DUAL_STACK_NODE_SYSCTLS,
    DUAL_STACK_SYSCTLS,
    HOST_SYSCTLS,
    LXC_FIRST_INDEX,
    NODE_ETH0_INDEX,
    NODE_IFNAME,
    NODE_SYSCTLS,
    OPTIONAL_SYSCTLS,
    POD_ETH0_INDEX,
    POD_IFNAME,
    ROUTER_IFNAME,
    ROUTER_INDEX,
    ROUTER_PEER_IFNAME,
    bridge_ifname,
    lxc_ifname,
)
from lab.env.netns.servers import PodServers
from lab.env.state import STATE_DIR, state_path

__all__ = [
    "BRIDGE_INDEX",
    "BRIDGE_PREFIX",
    "DUAL_STACK_NODE_SYSCTLS",
    "DUAL_STACK_SYSCTLS",
    "HOST_SYSCTLS",
    "LXC_FIRST_INDEX",
    "NODE_ETH0_INDEX",
    "NODE_IFNAME",
    "NODE_SYSCTLS",
    "OPTIONAL_SYSCTLS",
    "POD_ETH0_INDEX",
    "POD_IFNAME",
    "ROUTER_IFNAME",
    "ROUTER_INDEX",
    "ROUTER_PEER_IFNAME",
    "STATE_DIR",
    "LabDatapaths",
    "NetnsBackend",
    "NetnsLab",
    "NodeDatapaths",
    "PodServers",
    "bridge_ifname",
    "lxc_ifname",
    "netns_lab",
    "state_path",
]
