"""A snapshot of the machine's own (root) network namespace, to prove the lab left it alone.

Links, addresses, routes of every table, tc qdiscs and the forwarding
sysctls, read over netlink from a socket opened inside the init process's
namespace. Two snapshots compare equal when nothing the lab could have
touched changed; :func:`diff` says what did.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from lab.backends import nsutil

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
    qdiscs: frozenset[tuple[Any, ...]]
    sysctls: tuple[tuple[str, str], ...]


def _root_iproute() -> IPRoute:
    sock = nsutil.socket_in(nsutil.ROOT_NETNS, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    return IPRoute(use_socket=sock)


def _sysctl(key: str) -> str:
    try:
        return nsutil.read_sysctl(nsutil.ROOT_NETNS, key)
    except FileNotFoundError:
        return "(absent)"


def take() -> RootSnapshot:
    with _root_iproute() as ipr:
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
        qdiscs = {(names.get(q["index"]), q.get("kind"), q["handle"], q["parent"])
                  for q in ipr.get_qdiscs()}
    sysctls = tuple((k, _sysctl(k)) for k in FORWARDING_SYSCTLS)
    return RootSnapshot(frozenset(links), frozenset(addresses), frozenset(routes),
                        frozenset(qdiscs), sysctls)


def diff(before: RootSnapshot, after: RootSnapshot) -> list[str]:
    """Human-readable differences; empty when the root namespace is unchanged."""
    out: list[str] = []
    for name in ("links", "addresses", "routes", "qdiscs"):
        b, a = getattr(before, name), getattr(after, name)
        out += [f"{name}: added {item}" for item in sorted(a - b, key=repr)]
        out += [f"{name}: removed {item}" for item in sorted(b - a, key=repr)]
    for (k, vb), (_, va) in zip(before.sysctls, after.sysctls, strict=True):
        if vb != va:
            out.append(f"sysctl {k}: {vb} -> {va}")
    return out
