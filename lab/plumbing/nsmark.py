"""Who holds a lab namespace, recorded in the namespace itself (its loopback's alias).

Namespaces are global: every user and every state directory
(``$DSRLAB_STATE_DIR``) sees all of ``/run/netns``, so what says whether a
namespace's run is still alive must live with the namespace, not in a file
of one state directory. The lab writes one line into the alias of ``lo``
(``IFLA_IFALIAS``, kept by the kernel as long as the namespace exists) when
it creates the namespace, and rewrites it when the lab is left up::

    dsrlab <run id> <state> <pid> <start time> <stop signal>

``state`` is ``run`` (the process ``pid`` drives the run; it is alive while
that PID still has that start time, ``/proc/PID/stat`` field 22), ``up``
(left up by ``dsrlab up``) or ``keep`` (left up by ``dsrlab run --keep``).
``stop signal`` is the signal that owner handles as "stop, you are being
cleaned" (``dsrlab clean --force``). Anyone reading the namespace, whatever
its state directory, sees the same truth.

Raw rtnetlink with the standard library only (one request, one answer): the
``dsrlab clean`` and ``list`` paths load no netlink library. The functions
work on a ``NETLINK_ROUTE`` socket that belongs to the namespace
(:func:`lab.plumbing.nsutil.socket_in`), or on one made in the calling
thread's namespace (``*_here``).
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from typing import Literal

from lab.plumbing import names

State = Literal["run", "up", "keep"]
STATES: tuple[State, ...] = ("run", "up", "keep")
LEFT_UP_BY: dict[str, str] = {"up": "dsrlab up", "keep": "dsrlab run --keep"}

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_NLATTR = struct.Struct("=HH")
_NLMSG_ERROR, _RTM_NEWLINK, _RTM_GETLINK = 2, 16, 18
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_IFLA_IFALIAS = 20
_LOOPBACK_INDEX = 1
_NETLINK_ROUTE = 0
_MAX_ALIAS = 255


class MarkError(OSError):
    """The namespace's record could not be written or read."""


@dataclass(frozen=True)
class Mark:
    """One namespace's record of its run."""

    run_id: str
    state: State
    pid: int
    start_time: int
    stop_signal: int

    def text(self) -> str:
        return (f"dsrlab {self.run_id} {self.state} {self.pid} {self.start_time} "
                f"{self.stop_signal}")

    @classmethod
    def parse(cls, text: str) -> Mark | None:
        """The record in ``text``; None for anything else (an alias someone else set)."""
        parts = text.split()
        if len(parts) != 6 or parts[0] != "dsrlab" or parts[2] not in STATES:
            return None
        try:
            run_id = names.check_run_id(parts[1])
            pid, start, sig = int(parts[3]), int(parts[4]), int(parts[5])
        except ValueError:
            return None
        if pid <= 0 or start < 0 or not 0 < sig < 65:
            return None
        state: State = next(s for s in STATES if s == parts[2])
        return cls(run_id, state, pid, start, sig)

    @property
    def left_up_by(self) -> str | None:
        """What left the lab up (``dsrlab up``, ``dsrlab run --keep``), None while it runs."""
        return LEFT_UP_BY.get(self.state)


def route_socket() -> socket.socket:
    """A ``NETLINK_ROUTE`` socket in the calling thread's namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         _NETLINK_ROUTE)


def _request(sock: socket.socket, kind: int, flags: int, attrs: bytes = b"") -> bytes:
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, _LOOPBACK_INDEX, 0, 0) + attrs
    sock.sendto(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, 1, 0) + body, (0, 0))
    data = sock.recv(65536)
    if len(data) < _NLMSGHDR.size:
        raise MarkError("short netlink answer")
    length, mtype, _, _, _ = _NLMSGHDR.unpack_from(data)
    if mtype == _NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", data, _NLMSGHDR.size)
        if err:
            raise MarkError(-err, f"netlink: {os.strerror(-err)}")
        return b""
    return data[_NLMSGHDR.size:length]


def write(sock: socket.socket, mark: Mark) -> None:
    """Set the record of the namespace ``sock`` belongs to."""
    text = mark.text().encode()[:_MAX_ALIAS]
    attr_len = _NLATTR.size + len(text)
    attr = _NLATTR.pack(attr_len, _IFLA_IFALIAS) + text + b"\0" * (-attr_len % 4)
    _request(sock, _RTM_NEWLINK, _NLM_F_REQUEST | _NLM_F_ACK, attr)


def read(sock: socket.socket) -> Mark | None:
    """The record of the namespace ``sock`` belongs to; None when it holds none."""
    payload = _request(sock, _RTM_GETLINK, _NLM_F_REQUEST)
    at = _IFINFOMSG.size
    while at + _NLATTR.size <= len(payload):
        length, kind = _NLATTR.unpack_from(payload, at)
        if length < _NLATTR.size:
            break
        if kind & 0x3FFF == _IFLA_IFALIAS:
            raw = payload[at + _NLATTR.size:at + length]
            return Mark.parse(raw.split(b"\0", 1)[0].decode(errors="replace"))
        at += (length + 3) & ~3
    return None


def write_here(mark: Mark) -> None:
    """:func:`write` in the calling thread's namespace (a new one, inside its creation)."""
    with route_socket() as sock:
        write(sock, mark)


def read_here() -> Mark | None:
    """:func:`read` in the calling thread's namespace."""
    with route_socket() as sock:
        return read(sock)


__all__ = ["LEFT_UP_BY", "STATES", "Mark", "MarkError", "State", "read", "read_here",
           "route_socket", "write", "write_here"]
