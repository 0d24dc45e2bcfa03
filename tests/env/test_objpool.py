"""Loaded datapath objects serve the process's next lab (lab.env.netns.objpool).

A lab taken down gives its nodes' objects, off every link, to the pool; the
next lab of the same object and map sizes takes them back with every map as
a fresh load holds it, then configured for its own nodes. A lab left up, or
an object still on a link, never goes to the pool.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.datapath import DatapathObject
from lab.datapath.maps import BackendEntry
from lab.env import cleanup
from lab.env.netns import NetnsBackend, objpool
from lab.model.topology import Topology

pytestmark = pytest.mark.netns


def snapshot(dp: DatapathObject) -> dict[str, Any]:
    """Every map of ``dp``, entry by entry (what a lab's bring-up wrote), but its
    counters: the links' own traffic (IPv6 neighbour discovery) counts in them as soon
    as the programs are attached. (A reset object's counters are a fresh load's:
    tests/datapath/test_loading.py.)"""
    return {name: sorted(dp.map(name).items()) for name in sorted(dp._maps)
            if name != "dsr_counters"}


def test_a_lab_taken_down_hands_its_objects_to_the_next_lab(seed_topology: Topology) -> None:
    pool = objpool.POOL
    with NetnsBackend(servers=False).up(seed_topology) as first:
        objects = dict(first.datapath)
        fresh = {node: snapshot(dp) for node, dp in objects.items()}
        for dp in objects.values():  # what a run leaves: config, services, state
            dp.set_mtu(1280)
            dp.add_service(vip="10.99.0.1", port=99, proto="udp", dsr=True,
                           backends=[BackendEntry("10.244.9.9", 9)])
    assert pool.held() >= len(objects)
    reused_before = pool.reused
    with NetnsBackend(servers=False).up(seed_topology) as second:
        again = dict(second.datapath)
        assert {id(dp) for dp in again.values()} == {id(dp) for dp in objects.values()}
        assert pool.reused - reused_before == len(objects)
        for node, dp in again.items():  # as the first lab's were before they were used
            assert snapshot(dp) == fresh[node], node


def test_a_lab_left_up_gives_nothing_and_its_datapath_keeps_running(
        seed_topology: Topology) -> None:
    pool = objpool.POOL
    pool.close()  # nothing kept from earlier tests
    lab = NetnsBackend(servers=False).up(seed_topology)
    objects = list(lab.datapath.values())
    lab.detach(by="up")
    try:
        assert pool.held() == 0
        assert all(dp.closed for dp in objects)  # this process let go; the filters hold
        with NetnsBackend(servers=False).up(seed_topology) as other:  # loads its own
            assert not {id(dp) for dp in other.datapath.values()} & {id(o) for o in objects}
    finally:
        cleanup.tear_down(lab.run_id)


def test_an_object_that_may_still_be_on_a_link_is_closed(seed_topology: Topology) -> None:
    pool = objpool.POOL
    pool.close()
    with NetnsBackend(servers=False).up(seed_topology) as lab:
        dp = next(iter(lab.datapath.values()))
        node = next(n for n, d in lab.datapath.items() if d is dp)
        assert lab.datapaths is not None
        stuck = lab.datapaths._filters[node][0]  # type: ignore[attr-defined]
        stuck.detach = lambda: None  # as if its detach had failed: still attached
    assert dp.closed
    assert pool.held() == len(seed_topology.nodes) - 1


def test_an_object_whose_reset_fails_is_closed_not_handed_out() -> None:
    pool = objpool.ObjectPool()
    dp = DatapathObject.load(max_entries={"lb_maglev": 1})
    assert dp.path is not None
    kind = objpool.key(dp.path, {"lb_maglev": 1})

    def broken() -> None:
        raise OSError("map gone")

    dp.reset = broken  # type: ignore[method-assign]
    pool.give(kind, dp)
    assert pool.held() == 1
    assert pool.take(kind) is None
    assert dp.closed
    assert pool.held() == 0


def test_an_object_attached_anywhere_else_is_never_pooled(seed_topology: Topology) -> None:
    """The library lets a user attach a lab's object elsewhere too: that filter keeps it
    out of the pool, whatever the lab did with its own."""
    from lab.plumbing import nsutil  # noqa: PLC0415

    pool = objpool.POOL
    pool.close()
    with NetnsBackend(servers=False).up(seed_topology) as lab:
        node, dp = next(iter(lab.datapath.items()))
        with nsutil.in_netns(lab.netns(node)):
            dp.attach_tc(1, "ingress", "dsr_from_netdev")  # the node's loopback
    assert dp.closed
    assert pool.held() == len(seed_topology.nodes) - 1
