"""Namespaces and batched rtnetlink on real namespaces (never the root one)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from lab.plumbing import names, nsutil, rtnl

pytestmark = pytest.mark.netns


def _thread_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _ip(ns: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", "-n", ns, *args], capture_output=True, text=True,
                         check=True)
    data = json.loads(out.stdout)
    assert isinstance(data, list)
    return data


def test_create_runs_the_setup_inside_and_comes_back() -> None:
    home = _thread_netns()
    ns = names.netns_name(names.new_run_id(), "a")
    inside = nsutil.create(ns, _thread_netns)
    try:
        assert _thread_netns() == home
        assert inside == nsutil.netns_inode(ns) != home
    finally:
        nsutil.remove(ns)
    assert not nsutil.exists(ns)


def test_a_failing_setup_removes_the_namespace() -> None:
    home = _thread_netns()
    ns = names.netns_name(names.new_run_id(), "a")

    def boom() -> None:
        raise ValueError("setup failed")

    with pytest.raises(ValueError, match="setup failed"):
        nsutil.create(ns, boom)
    assert _thread_netns() == home
    assert not nsutil.exists(ns)


def test_one_batch_wires_a_veth_pair_and_failures_name_each_request() -> None:
    run = names.new_run_id()
    a, b = names.netns_name(run, "a"), names.netns_name(run, "b")
    with nsutil.scratch(a), nsutil.scratch(b), rtnl.Rtnl.open(a) as ra, \
            rtnl.Rtnl.open(b) as rb:
        fd = os.open(nsutil.netns_path(b), os.O_RDONLY)
        try:
            ra.add_veth(rtnl.LinkSpec("va", 20, mac="02:42:0a:00:00:01", mtu=1400),
                        rtnl.LinkSpec("vb", 30, mtu=1400, netns_fd=fd))
            ra.add_address(20, "192.0.2.1", 24)
            ra.commit()
        finally:
            os.close(fd)
        rb.set_up(30)
        rb.add_address(30, "192.0.2.2", 24)
        rb.add_route("198.51.100.0/24", 30, gateway="192.0.2.1")
        rb.add_route("203.0.113.1/32", 30, scope=rtnl.SCOPE_LINK)
        rb.add_route("0.0.0.0/0", 30, gateway="203.0.113.1")
        rb.commit()
        va = _ip(a, "link", "show", "va")[0]
        assert (va["ifindex"], va["address"], va["mtu"]) == (20, "02:42:0a:00:00:01", 1400)
        assert "UP" in va["flags"]  # type: ignore[operator]
        vb = _ip(b, "-4", "addr", "show", "vb")[0]
        assert vb["ifindex"] == 30
        assert [(x["local"], x["prefixlen"]) for x in vb["addr_info"]] == [  # type: ignore[attr-defined]
            ("192.0.2.2", 24)]
        routes = {r["dst"]: r for r in _ip(b, "-4", "route")}
        assert routes["198.51.100.0/24"]["gateway"] == "192.0.2.1"
        assert routes["203.0.113.1"]["scope"] == "link"
        assert routes["default"]["gateway"] == "203.0.113.1"
        # the kernel refuses two of three: both are named, the good one went in
        rb.add_route("198.51.100.0/24", 30, gateway="192.0.2.1")
        rb.add_address(99, "192.0.2.9", 32)
        rb.add_route("192.0.2.128/25", 30, gateway="192.0.2.1")
        with pytest.raises(rtnl.RtnlError) as err:
            rb.commit()
        text = str(err.value)
        assert "add route 198.51.100.0/24 via 192.0.2.1 dev 30: File exists" in text
        assert "add address 192.0.2.9/32 on link 99: No such device" in text
        assert "192.0.2.128/25" in {r["dst"] for r in _ip(b, "-4", "route")}


def test_cilium_style_wiring_noarp_a_source_route_and_permanent_neighbours() -> None:
    """The cilium_host pair without ARP, a pod CIDR routed on it with the router as
    source, and a node's address resolved ahead (as Cilium's agent wires a node)."""
    ns = names.netns_name(names.new_run_id(), "cil")
    with nsutil.scratch(ns), rtnl.Rtnl.open(ns) as rt:
        rt.add_veth(rtnl.LinkSpec("cilium_host", 11, mac="02:00:0a:00:02:01", noarp=True),
                    rtnl.LinkSpec("cilium_net", 12, noarp=True))
        rt.add_veth(rtnl.LinkSpec("eth0", 10), rtnl.LinkSpec("peer0", 50))
        rt.add_address(11, "10.0.2.1", 32)
        rt.add_address(10, "172.18.0.4", 16)
        rt.add_route("10.0.2.0/24", 11, scope=rtnl.SCOPE_LINK, source="10.0.2.1")
        rt.add_neighbour(10, "172.18.0.2", "02:42:ac:12:00:02")
        rt.commit()
        host = _ip(ns, "link", "show", "cilium_host")[0]
        assert "NOARP" in host["flags"]  # type: ignore[operator]
        assert "NOARP" not in _ip(ns, "link", "show", "eth0")[0]["flags"]  # type: ignore[operator]
        route = {r["dst"]: r for r in _ip(ns, "-4", "route")}["10.0.2.0/24"]
        assert (route["dev"], route["prefsrc"], route["scope"]) == (
            "cilium_host", "10.0.2.1", "link")
        neigh = _ip(ns, "neigh", "show", "dev", "eth0")[0]
        assert (neigh["dst"], neigh["lladdr"], neigh["state"]) == (
            "172.18.0.2", "02:42:ac:12:00:02", ["PERMANENT"])


def test_ipv6_addresses_routes_and_neighbours_in_one_batch() -> None:
    """IPv6 beside IPv4 in one batch: an address added nodad (never tentative), a
    route via a gateway, a default route, a permanent neighbour."""
    ns = names.netns_name(names.new_run_id(), "six")
    with nsutil.scratch(ns), rtnl.Rtnl.open(ns) as rt:
        rt.add_veth(rtnl.LinkSpec("eth0", 10), rtnl.LinkSpec("peer0", 50))
        rt.set_up(50)
        rt.add_address(10, "172.18.0.4", 16)
        rt.add_address(10, "fc00:f853:ccd:e793::4", 64)
        rt.add_route("fd00:10:244::/64", 10, gateway="fc00:f853:ccd:e793::3")
        rt.add_route("fd00:10:244:2::1/128", 10)
        rt.add_route("::/0", 10, gateway="fd00:10:244:2::1")
        rt.add_neighbour(10, "fc00:f853:ccd:e793::3", "02:42:ac:12:00:03")
        rt.commit()
        addrs = [a for a in _ip(ns, "-6", "addr", "show", "dev", "eth0", "scope", "global")[0][
            "addr_info"] if "local" in a]  # type: ignore[union-attr,operator]
        assert [(a["local"], a["prefixlen"], a.get("nodad"), a.get("tentative"))
                for a in addrs] == [("fc00:f853:ccd:e793::4", 64, True, None)]
        routes = {r["dst"]: r for r in _ip(ns, "-6", "route")}
        assert routes["fd00:10:244::/64"]["gateway"] == "fc00:f853:ccd:e793::3"
        assert routes["default"]["gateway"] == "fd00:10:244:2::1"
        neigh = _ip(ns, "-6", "neigh", "show", "dev", "eth0")[0]
        assert (neigh["dst"], neigh["lladdr"], neigh["state"]) == (
            "fc00:f853:ccd:e793::3", "02:42:ac:12:00:03", ["PERMANENT"])
    with pytest.raises(ValueError, match=r"gateway 10\.0\.0\.1 is of the other family"):
        rtnl.prepare_route("fd00::/64", 10, gateway="10.0.0.1")


def test_pids_in_each_finds_a_process_by_its_namespace() -> None:
    run = names.new_run_id()
    a, b = names.netns_name(run, "a"), names.netns_name(run, "b")
    with nsutil.scratch(a), nsutil.scratch(b):
        proc = subprocess.Popen(nsutil.exec_argv(a, ["sleep", "30"]))
        try:
            deadline = time.monotonic() + 5
            while not (found := nsutil.pids_in_each([a, b]))[a] and time.monotonic() < deadline:
                time.sleep(0.01)  # nsenter enters the namespace just after it starts
            assert found == {a: [proc.pid], b: []}
        finally:
            proc.kill()
            proc.wait()
    with pytest.raises(nsutil.NetnsError, match="not a namespace of its own"):
        nsutil.pids_in_each(["../../proc/self/ns/net"])
