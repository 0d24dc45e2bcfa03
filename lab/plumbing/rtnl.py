"""A small batched rtnetlink client: wire a namespace in one round trip.

:class:`Rtnl` queues link, address and route requests and sends each batch
in one ``sendmsg``: the kernel handles the requests in order, inside that
call, and answers only failures (plus one acknowledgement for the batch),
so a namespace is wired in one round trip instead of one per request.

Why not pyroute2 here: the lab uses pyroute2 wherever netlink is not bulk
work (the root-namespace snapshot, :func:`lab.plumbing.nsutil.open_iproute`),
but bring-up sends every route of autoDirectNodeRoutes to every node (65,280
routes for 256 nodes), and pyroute2's encoder (``IPBatch``) takes ~300 us a
route message here, 60 times what packing the few fixed structs below takes.

Both families: an address, route or neighbour is IPv4 or IPv6 as its address is;
an IPv6 address is added with ``IFA_F_NODAD`` (usable at once, as the lab's
addresses are its own to give: no duplicate address detection to wait for).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from lab.plumbing.nsutil import NetnsError, in_netns

LOOPBACK_INDEX = 1  # lo is the first device of every network namespace

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, port id
_NLATTR = struct.Struct("=HH")  # len, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope,
#                                       type, flags
_NLMSG_ERROR = 2
_RTM_NEWLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 20, 24
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_NLM_F_ACK_TLVS = 0x200
_NLMSGERR_ATTR_MSG = 1
_SOL_NETLINK, _NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 270, 10, 11
_NETLINK_ROUTE = 0
_IFF_UP = 0x1
_IFF_NOARP = 0x80
_RTM_NEWNEIGH = 28
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_NDA_DST, _NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80
_RTA_PREFSRC = 7
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER = 1, 3, 4, 10
_IFLA_LINKINFO, _IFLA_NET_NS_FD = 18, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA = 1, 2
_VETH_INFO_PEER = 1
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_DST, _RTA_OIF, _RTA_GATEWAY = 1, 4, 5
_RT_TABLE_MAIN, _RTPROT_BOOT, _RTN_UNICAST = 254, 3, 1
SCOPE_UNIVERSE, SCOPE_LINK = 0, 253
IFA_F_NODAD = 0x02  # an IPv6 address usable at once (no duplicate address detection)

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


def _addr(value: Address | str) -> Address:
    return value if isinstance(value, IPv4Address | IPv6Address) else ip_address(value)


def _net(value: Network | str) -> Network:
    return value if isinstance(value, IPv4Network | IPv6Network) else ip_network(value)


def _family(value: Address | Network) -> int:
    return socket.AF_INET if value.version == 4 else socket.AF_INET6
_BATCH_BYTES = 32 * 1024  # one sendmsg carries at most this much (the socket buffer is ~200 KiB)


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


@dataclass(frozen=True)
class LinkSpec:
    """One end of a new link: name, index (chosen by the caller), MAC, MTU, state."""

    ifname: str
    index: int
    mac: str | None = None
    mtu: int | None = None
    up: bool = True
    netns_fd: int | None = None  # create it in that namespace (a veth peer)
    master: int | None = None  # enslave to this index (a bridge port)
    noarp: bool = False  # IFF_NOARP: no neighbour resolution (Cilium's cilium_host pair)

    def _attrs(self) -> bytes:
        out = _attr(_IFLA_IFNAME, self.ifname.encode() + b"\0")
        if self.mac is not None:
            out += _attr(_IFLA_ADDRESS, _mac(self.mac))
        if self.mtu is not None:
            out += _attr(_IFLA_MTU, _u32(self.mtu))
        if self.master is not None:
            out += _attr(_IFLA_MASTER, _u32(self.master))
        if self.netns_fd is not None:
            out += _attr(_IFLA_NET_NS_FD, _u32(self.netns_fd))
        return out

    def _ifinfo(self) -> bytes:
        flags = (_IFF_UP if self.up else 0) | (_IFF_NOARP if self.noarp else 0)
        change = (_IFF_UP if self.up else 0) | (_IFF_NOARP if self.noarp else 0)
        return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, self.index, flags, change)


class RtnlError(NetnsError):
    """Requests of a batch that the kernel refused (each with its reason)."""


class Rtnl:
    """A NETLINK_ROUTE socket of one namespace that sends its requests in batches.

    Requests are queued by :meth:`set_up`, :meth:`add_bridge`, :meth:`add_veth`,
    :meth:`add_address` and :meth:`add_route`, and sent by :meth:`commit`,
    which raises :class:`RtnlError` naming every request the kernel refused.
    New links get the ifindex the caller chooses, so nothing has to be looked
    up afterwards (indices are per namespace; the caller owns the namespace).
    """

    def __init__(self, sock: socket.socket, where: str = "") -> None:
        self.sock = sock
        self.where = where
        # type, flags, body, and what it is (text, or a function making the text: only a
        # refused request needs one, and a lab of 256 nodes queues 65,000 routes)
        self._queue: list[tuple[int, int, bytes, str | Callable[[], str]]] = []
        self._seq = 0

    @classmethod
    def here(cls, where: str = "") -> Rtnl:
        """A socket in the calling thread's namespace (e.g. inside :func:`create`)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             _NETLINK_ROUTE)
        try:
            sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
            with contextlib.suppress(OSError):  # error texts: nice to have
                sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        return cls(sock, where)

    @classmethod
    def open(cls, name: str) -> Rtnl:
        """A socket in namespace ``name``."""
        with in_netns(name):
            return cls.here(name)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------
    def _add(self, kind: int, flags: int, body: bytes, what: str | Callable[[], str]) -> None:
        self._queue.append((kind, flags, body, what))

    def set_up(self, index: int) -> None:
        self._add(_RTM_NEWLINK, 0,
                  _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, _IFF_UP, _IFF_UP),
                  f"set link {index} up")

    def add_bridge(self, link: LinkSpec) -> None:
        body = (link._ifinfo() + link._attrs()
                + _attr(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"bridge\0")))
        self._add(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body, f"add bridge {link.ifname}")

    def add_veth(self, link: LinkSpec, peer: LinkSpec) -> None:
        """A veth pair; ``peer.up`` is ignored: the kernel cannot open a peer before
        the pair is linked (ENOTCONN), so set it up from the peer's namespace."""
        peer_msg = replace(peer, up=False)._ifinfo() + peer._attrs()
        info = (_attr(_IFLA_INFO_KIND, b"veth\0")
                + _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_msg)))
        body = link._ifinfo() + link._attrs() + _attr(_IFLA_LINKINFO, info)
        self._add(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body,
                  f"add veth {link.ifname} (peer {peer.ifname})")

    def add_address(self, index: int, address: Address | str, prefixlen: int) -> None:
        """An address of either family; an IPv6 one without duplicate address detection
        (``nodad``: usable the moment the batch is in)."""
        addr = _addr(address)
        packed = addr.packed
        flags = IFA_F_NODAD if addr.version == 6 else 0
        body = (_IFADDRMSG.pack(_family(addr), prefixlen, flags, SCOPE_UNIVERSE, index)
                + _attr(_IFA_LOCAL, packed) + _attr(_IFA_ADDRESS, packed))
        self._add(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL, body,
                  f"add address {address}/{prefixlen} on link {index}")

    def add_route(self, dst: Network | str, oif: int, *,
                  gateway: Address | str | None = None,
                  scope: int = SCOPE_UNIVERSE, source: Address | str | None = None) -> None:
        """A route (IPv4 or IPv6, as ``dst``); ``source``: the preferred source address
        of what it carries."""
        body = _route_body(dst, oif, gateway, scope)
        if source is not None:
            body += _attr(_RTA_PREFSRC, _addr(source).packed)
        self._add(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL, body,
                  functools.partial(_route_text, dst, oif, gateway))

    def add_neighbour(self, index: int, address: Address | str, mac: str) -> None:
        """A permanent neighbour entry (an address resolved ahead, as Cilium's agent
        resolves the other nodes), IPv4 or IPv6."""
        addr = _addr(address)
        body = (_NDMSG.pack(_family(addr), index, NUD_PERMANENT, 0, 0)
                + _attr(_NDA_DST, addr.packed) + _attr(_NDA_LLADDR, _mac(mac)))
        self._add(_RTM_NEWNEIGH, _NLM_F_CREATE | _NLM_F_EXCL, body,
                  f"add neighbour {address} lladdr {mac} on link {index}")

    def add_routes(self, routes: Sequence[PreparedRoute]) -> None:
        """Routes packed once (:func:`prepare_route`), e.g. the same for every node."""
        self._queue += [(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL, r.body, r.describe)
                        for r in routes]

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- sending ---------------------------------------------------------------
    def commit(self) -> None:
        """Send every queued request (in order) and raise for any the kernel refused."""
        queue, self._queue = self._queue, []
        failures: list[str] = []
        start = 0
        while start < len(queue):
            end, size = start, 0
            while end < len(queue) and (end == start or size + len(queue[end][2])
                                        < _BATCH_BYTES):
                size += len(queue[end][2]) + _NLMSGHDR.size
                end += 1
            failures += self._send(queue[start:end])
            start = end
        if failures:
            where = f"{self.where}: " if self.where else ""
            raise RtnlError(where + "; ".join(failures))

    def _send(self, batch: list[tuple[int, int, bytes, str | Callable[[], str]]]) -> list[str]:
        by_seq: dict[int, str | Callable[[], str]] = {}
        parts: list[bytes] = []
        for i, (kind, flags, body, what) in enumerate(batch):
            self._seq += 1
            by_seq[self._seq] = what
            # only the last request asks for an acknowledgement: failures are always
            # answered, so that one ack marks the end of the batch's answers
            ack = _NLM_F_ACK if i == len(batch) - 1 else 0
            parts.append(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind,
                                        flags | _NLM_F_REQUEST | ack, self._seq, 0))
            parts.append(body)
        last = self._seq
        self.sock.sendall(b"".join(parts))
        failures: list[str] = []
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    break
                if kind == _NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + _NLMSGHDR.size)[0]
                    if err:
                        text = os.strerror(err)
                        msg = _ext_ack_message(data[off:off + length], flags)
                        if msg:
                            text += f" ({msg})"
                        what = by_seq.get(seq, f"request {seq}")
                        failures.append(f"{what if isinstance(what, str) else what()}: {text}")
                    if seq == last:
                        return failures
                off += (length + 3) & ~3


@functools.lru_cache(maxsize=16384)
@dataclass(frozen=True)
class PreparedRoute:
    """An RTM_NEWROUTE request packed once, to send in many namespaces."""

    body: bytes
    dst: Network
    oif: int
    gateway: Address | None

    def describe(self) -> str:
        return _route_text(self.dst, self.oif, self.gateway)


def prepare_route(dst: Network | str, oif: int, *,
                  gateway: Address | str | None = None,
                  scope: int = SCOPE_UNIVERSE) -> PreparedRoute:
    """A route to add with :meth:`Rtnl.add_routes` (packed here, once)."""
    net = _net(dst)
    gw = None if gateway is None else _addr(gateway)
    return PreparedRoute(_route_body(net, oif, gw, scope), net, oif, gw)


def _route_body(dst: Network | str, oif: int, gateway: Address | str | None,
                scope: int) -> bytes:
    """An RTM_NEWROUTE body (cached: every node of a lab routes the same pod CIDRs);
    the family is the destination's, and a gateway must be of the same one."""
    net = _net(dst)
    body = _RTMSG.pack(_family(net), net.prefixlen, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT,
                       scope, _RTN_UNICAST, 0)
    if net.prefixlen:
        body += _attr(_RTA_DST, net.network_address.packed)
    if gateway is not None:
        gw = _addr(gateway)
        if gw.version != net.version:
            raise ValueError(f"route {net}: gateway {gw} is of the other family")
        body += _attr(_RTA_GATEWAY, gw.packed)
    return body + _attr(_RTA_OIF, _u32(oif))


def _route_text(dst: Network | str, oif: int, gateway: Address | str | None) -> str:
    via = f" via {gateway}" if gateway is not None else ""
    return f"add route {_net(dst)}{via} dev {oif}"


def _ext_ack_message(msg: bytes, flags: int) -> str:
    """The kernel's error text of an extended ack (NETLINK_CAP_ACK: no request copy)."""
    if not flags & _NLM_F_ACK_TLVS:
        return ""
    off = _NLMSGHDR.size + 4 + _NLMSGHDR.size  # header, error, the request's header
    while off + _NLATTR.size <= len(msg):
        length, kind = _NLATTR.unpack_from(msg, off)
        if length < _NLATTR.size:
            break
        if kind & 0x3FFF == _NLMSGERR_ATTR_MSG:
            return msg[off + _NLATTR.size:off + length].rstrip(b"\0").decode(errors="replace")
        off += (length + 3) & ~3
    return ""
