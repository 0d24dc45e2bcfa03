"""Fixtures of the datapath tests: the built object, scratch namespaces, loaded objects.

* ``obj_path`` (session): ``bpf/dsr.c`` built once (clang, cached).
* ``fwd_ns`` (session): a namespace shaped like the seed's LB node: eth0 with
  the node's address and MAC, routes to both pod CIDRs, a permanent
  neighbour for the first pod's node and none for the second one's.
* ``bare_ns`` (session): a namespace with only lo, where every FIB lookup fails.
* ``loaded_dp`` (session): the object loaded once.
* ``dp`` (function): that object reset to its state at load (empty maps, zero
  counters, zero configuration): what a fresh load gives.
* ``node`` / ``bare_node`` (function): ``dp`` run as if on ``fwd_ns`` / ``bare_ns``.

The namespaces are only looked at (routes, neighbours, ifindex), never
changed by a test, so one of each serves the session; the root namespace
guard checks they are gone at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.datapath import DatapathObject, build_object
from lab.plumbing import nsutil
from lab.pytest_plugin import require_root
from tests.datapath.frames import NEIGH_PERMANENT, Node, scratch_name
from tests.seed import LB_MAC, POD2_CIDR, POD_CIDR, VIP, WORKER2_IP, WORKER_IP, WORKER_MAC


@pytest.fixture(scope="session")
def obj_path() -> Path:
    return build_object()


@pytest.fixture(scope="session")
def fwd_ns() -> Iterator[tuple[str, int]]:
    """The LB node: eth0 with the seed's node address, routes to the pod CIDRs, a
    permanent neighbour for the first pod's node and none for the second one's."""
    require_root()
    name = scratch_name("dp-fwd")
    with nsutil.scratch(name):
        nsutil.write_sysctl(name, "net.ipv4.ip_forward", 1)
        with nsutil.open_iproute(name) as ipr:
            ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": "peer0"})
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=idx, address=LB_MAC, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="peer0")[0], state="up")
            ipr.addr("add", index=idx, address=VIP, prefixlen=24)
            ipr.route("add", dst=POD_CIDR, gateway=WORKER_IP)
            ipr.route("add", dst=POD2_CIDR, gateway=WORKER2_IP)
            ipr.neigh("add", dst=WORKER_IP, lladdr=WORKER_MAC, ifindex=idx,
                      state=NEIGH_PERMANENT)
        yield name, idx


@pytest.fixture(scope="session")
def bare_ns() -> Iterator[str]:
    """A namespace with only lo: every FIB lookup fails there."""
    require_root()
    name = scratch_name("dp-bare")
    with nsutil.scratch(name):
        yield name


@pytest.fixture(scope="session")
def loaded_dp(obj_path: Path) -> Iterator[DatapathObject]:
    """The object loaded once: the verifier's time (seconds a load under TCG) is
    paid once a session, not once a test."""
    with DatapathObject.load(obj_path) as obj:
        yield obj


@pytest.fixture
def dp(loaded_dp: DatapathObject) -> DatapathObject:
    """The shared object with every map as at load (:meth:`DatapathObject.reset`)."""
    loaded_dp.reset()
    return loaded_dp


@pytest.fixture
def node(dp: DatapathObject, fwd_ns: tuple[str, int]) -> Node:
    return Node(dp, *fwd_ns)


@pytest.fixture
def bare_node(dp: DatapathObject, bare_ns: str) -> Node:
    return Node(dp, bare_ns, 0)
