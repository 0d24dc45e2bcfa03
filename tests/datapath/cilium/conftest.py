"""Fixtures of the Cilium datapath tests.

* ``cilium_sources`` (session): every source ``DSRLAB_CILIUM_SRC`` names (a
  checkout, a ``bpf/`` tarball, or a folder of tarballs such as
  ``shared/cilium/``); the tests that need one skip with the reason when the
  variable is unset.
* ``cilium_source`` (session, parametrized by version): one of them.
* ``seed_lb_ns`` (session): a namespace wired as the seed's LB node, with the
  device indices and MACs Cilium's headers name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lab.datapath.cilium import plan
from lab.datapath.cilium.source import ENV_VAR, CiliumSource, discover
from lab.model.topology import load_topology
from lab.plumbing import nsutil, rtnl
from lab.pytest_plugin import require_root
from tests.datapath.frames import NEIGH_PERMANENT, scratch_name
from tests.seed import SEED_TOPOLOGY_PATH


def _sources() -> list[CiliumSource]:
    where = os.environ.get(ENV_VAR)
    if not where:
        return []
    return discover(where)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cilium_source" in metafunc.fixturenames:
        where = os.environ.get(ENV_VAR)
        found = _sources() if where else []
        if found:
            metafunc.parametrize("cilium_source", found, ids=[str(s.version) for s in found],
                                 scope="session")
        else:
            metafunc.parametrize("cilium_source", [pytest.param(None, marks=pytest.mark.skip(
                reason=f"no Cilium source: set {ENV_VAR} to a Cilium checkout or a folder of "
                       "cilium-<tag>-bpf.tar.gz (make test points it at ../shared/cilium)"))],
                ids=["no-source"], scope="session")


@pytest.fixture(scope="session")
def seed_lb_ns() -> Iterator[str]:
    """The seed's LB node (cilium-dsr-control-plane) as Cilium's headers describe it:
    eth0 at index 10 with 172.18.0.2/16 and Docker's MAC, cilium_host/cilium_net at
    11/12 with the router address, routes to the other nodes' pod CIDRs and a
    permanent neighbour for each other node (the agent pre-resolves them)."""
    yield from _lb_namespace("cil-lb", routes=True)


@pytest.fixture(scope="session")
def unrouted_lb_ns() -> Iterator[str]:
    """The same node with no route to the other nodes' pod CIDRs: a FIB lookup for a
    backend fails there."""
    yield from _lb_namespace("cil-lbnr", routes=False)


def _lb_namespace(tag: str, *, routes: bool) -> Iterator[str]:
    require_root()
    t = load_topology(SEED_TOPOLOGY_PATH)
    me = t.node("cilium-dsr-control-plane")
    name = scratch_name(tag)
    with nsutil.scratch(name):
        nsutil.write_sysctl(name, "net.ipv4.ip_forward", 1)
        with rtnl.Rtnl.open(name) as rt:
            rt.set_up(rtnl.LOOPBACK_INDEX)
            rt.add_veth(rtnl.LinkSpec("eth0", plan.ETH0_INDEX, mac=_mac(plan.eth0_mac(me.ip))),
                        rtnl.LinkSpec("peer0", 50))
            rt.add_veth(
                rtnl.LinkSpec("cilium_host", plan.CILIUM_HOST_INDEX,
                              mac=_mac(plan.cilium_host_mac(me.router_ip))),
                rtnl.LinkSpec("cilium_net", plan.CILIUM_NET_INDEX,
                              mac=_mac(plan.cilium_net_mac(me.router_ip))))
            rt.add_address(plan.ETH0_INDEX, me.ip, t.network.subnet.prefixlen)
            rt.add_address(plan.CILIUM_HOST_INDEX, me.router_ip, 32)
            rt.commit()
        with nsutil.open_iproute(name) as ipr:
            for other in t.nodes:
                if other.name == me.name or not routes:
                    continue
                ipr.route("add", dst=str(other.pod_cidr), gateway=str(other.ip))
                ipr.neigh("add", dst=str(other.ip), lladdr=_mac(plan.eth0_mac(other.ip)),
                          ifindex=plan.ETH0_INDEX, state=NEIGH_PERMANENT)
        yield name


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)
