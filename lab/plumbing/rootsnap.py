"""A snapshot of the machine's own (root) network namespace, to prove the lab left it alone.

Links, addresses, routes of every table, policy rules, tc qdiscs and tc
filters (root, clsact ingress and egress of every link) and the forwarding
sysctls, read over netlink from a socket opened in the namespace this
process runs in (its main thread's: the machine's own for a lab run as
root). Two snapshots compare equal when nothing the lab could have touched
changed; :func:`diff` says what did.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from lab.plumbing import nsutil

# where tc filters hang: the root qdisc, and clsact's ingress and egress hooks
_FILTER_PARENTS = (0, 0xFFFFFFF2, 0xFFFFFFF3)
FORWARDING_SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv6.conf.default.forwarding",
)


@dataclass(frozen=True)
class RootSnapshot:
    links: frozenset[tuple[Any, ...]]
    addresses: frozenset[tuple[Any, ...]]
    routes: frozenset[tuple[Any, ...]]
    rules: frozenset[tuple[Any, ...]]
    qdiscs: frozenset[tuple[Any, ...]]
    filters: frozenset[tuple[Any, ...]]
    sysctls: tuple[tuple[str, str], ...]


def _iproute(netns: str) -> IPRoute:
    sock = nsutil.socket_in(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    return IPRoute(use_socket=sock)


def _sysctl(netns: str, key: str) -> str:
    try:
        return nsutil.read_sysctl(netns, key)
    except FileNotFoundError:
        return "(absent)"


def take(netns: str = nsutil.ROOT_NETNS) -> RootSnapshot:
    """Snapshot the root namespace (or, for testing the guard, another one)."""
    with _iproute(netns) as ipr:
        names = {}
        links = set()
        for link in ipr.get_links():
            idx = link["index"]
            name = link.get("ifname")
            names[idx] = name
            info = link.get("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info else None
            links.add((name, kind, link.get("mtu"), bool(link["flags"] & 1),
                       link.get("master"), link.get("address")))
        addresses = {(names.get(a["index"]), a["family"], a.get("address"), a["prefixlen"])
                     for a in ipr.get_addr()}
        routes = set()
        for r in ipr.route("dump"):  # every table, both families
            routes.add((r["family"], r.get("table"), r.get("dst"), r["dst_len"],
                        r.get("gateway"), names.get(r.get("oif")), r["type"], r["scope"],
                        r["proto"]))
        rules = {(r["family"], r.get("priority"), r.get("table"), r["action"],
                  r.get("src"), r.get("dst"), r.get("fwmark")) for r in ipr.get_rules()}
        qdiscs = {(names.get(q["index"]), q.get("kind"), q["handle"], q["parent"])
                  for q in ipr.get_qdiscs()}
        filters = {(names[idx], parent, f.get("kind"), f["info"], f.get_attr("TCA_CHAIN"))
                   for idx in names for parent in _FILTER_PARENTS
                   for f in ipr.get_filters(index=idx, parent=parent)}
    sysctls = tuple((k, _sysctl(netns, k)) for k in FORWARDING_SYSCTLS)
    return RootSnapshot(frozenset(links), frozenset(addresses), frozenset(routes),
                        frozenset(rules), frozenset(qdiscs), frozenset(filters), sysctls)


def diff(before: RootSnapshot, after: RootSnapshot) -> list[str]:
    """Human-readable differences; empty when the root namespace is unchanged."""
    out: list[str] = []
    for name in ("links", "addresses", "routes", "rules", "qdiscs", "filters"):
        b, a = getattr(before, name), getattr(after, name)
        out += [f"{name}: added {item}" for item in sorted(a - b, key=repr)]
        out += [f"{name}: removed {item}" for item in sorted(b - a, key=repr)]
    for (k, vb), (_, va) in zip(before.sysctls, after.sysctls, strict=True):
        if vb != va:
            out.append(f"sysctl {k}: {vb} -> {va}")
    return out
