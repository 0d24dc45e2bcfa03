"""The root-namespace guard can see a change: proven on a scratch namespace
(the root namespace itself is never changed, not even to test the guard)."""

from __future__ import annotations

import pytest

from lab.datapath import DatapathObject
from lab.plumbing import names, nsutil, rootsnap

pytestmark = pytest.mark.netns


def test_the_snapshot_sees_links_addresses_routes_filters_and_sysctls() -> None:
    ns = names.netns_name(names.new_run_id(), "rootsnap")
    with nsutil.scratch(ns):
        before = rootsnap.take(ns)
        assert rootsnap.diff(before, rootsnap.take(ns)) == []
        with nsutil.open_iproute(ns) as ipr:
            ipr.link("add", ifname="a", kind="veth", peer={"ifname": "b"})
            idx = ipr.link_lookup(ifname="a")[0]
            ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=idx, address="192.0.2.1", prefixlen=24)
            ipr.route("add", dst="198.51.100.0/24", gateway="192.0.2.254")
        nsutil.write_sysctl(ns, "net.ipv4.ip_forward", 1)
        with DatapathObject.load() as dp, nsutil.in_netns(ns):
            dp.attach_tc(idx, "ingress", "dsr_from_netdev")
            changes = rootsnap.diff(before, rootsnap.take(ns))
    kinds = {c.split(":", 1)[0] for c in changes}
    assert {"links", "addresses", "routes", "qdiscs", "filters",
            "sysctl net.ipv4.ip_forward"} <= kinds, changes
