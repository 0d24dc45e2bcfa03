"""Network namespaces without forking: create, enter per thread, remove.

Everything here works on namespaces by name under ``/run/netns`` (the
``ip netns`` convention, so ``ip netns exec`` and ``nsenter`` see them too).

Entering a namespace is per *thread* (``setns(2)`` with ``CLONE_NEWNET`` only
moves the calling thread); :func:`in_netns` always restores the thread's
previous namespace, even on error. Sockets keep the namespace they were
created in, which is how :func:`open_iproute` gets a netlink socket that
talks to the lab's namespace and never to the root one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from lab.plumbing import names, owner

NETNS_RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


class NetnsError(RuntimeError):
    """A namespace could not be created, entered or removed."""


def netns_path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def exists(name: str) -> bool:
    return netns_path(name).exists()


def list_netns() -> list[str]:
    """Names of all namespaces under /run/netns (the lab's and others')."""
    try:
        return sorted(p.name for p in NETNS_RUN_DIR.iterdir())
    except FileNotFoundError:
        return []


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a short-lived thread and return its result or raise its error.

    Used for anything that unshares: the thread dies afterwards, so whatever
    namespace it ended up in can never leak into the caller's thread.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name="dsrlab-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def create(name: str) -> None:
    """Create the namespace ``name``; fails if it exists already."""
    if exists(name):
        raise NetnsError(f"network namespace {name} already exists")
    lab_name = names.parse_netns_name(name)
    if lab_name is not None:
        owner.claim(lab_name.run_id)

    def make() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise NetnsError(f"unshare for {name}: {os.strerror(ctypes.get_errno())}")
        pr_netns.attach(name, "thread-self")

    try:
        _in_thread(make)
    except FileExistsError:
        raise NetnsError(f"network namespace {name} already exists") from None
    except BaseException:
        with contextlib.suppress(OSError):
            remove(name)
        raise


def remove(name: str) -> None:
    """Unmount and delete the namespace file (the kernel frees it when unused).

    Removing the last namespace of a lab run drops this process's claim on it.
    """
    path = netns_path(name)
    # MNT_DETACH = 2
    _libc.umount2(str(path).encode(), 2)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    lab_name = names.parse_netns_name(name)
    if lab_name is not None and not any(
            (n := names.parse_netns_name(other)) and n.run_id == lab_name.run_id
            for other in list_netns()):
        owner.release(lab_name.run_id)


ROOT_NETNS = "/proc/self/ns/net"  # the main thread's: the namespace the lab runs from


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the current thread into ``name`` (or a ``/proc/…/ns/net`` path) and back."""
    path = name if name.startswith("/proc/") else netns_path(name)
    with open("/proc/thread-self/ns/net", "rb") as home:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise NetnsError(f"network namespace {name} does not exist") from exc
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home.fileno())


def socket_in(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace ``name`` (it stays bound to it)."""
    with in_netns(name):
        return socket.socket(family, kind, proto)


def open_iproute(name: str) -> IPRoute:
    """An IPRoute whose netlink socket lives in namespace ``name``.

    pyroute2 would otherwise open its socket lazily on its own event-loop
    thread (in whatever namespace that thread is in); handing it a socket
    made here pins every request to the lab's namespace.
    """
    sock = socket_in(name, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)  # NETLINK_ROUTE
    return IPRoute(use_socket=sock)


def write_sysctl(name: str, key: str, value: str | int) -> None:
    """Set ``net.*`` sysctl ``key`` (dotted) inside namespace ``name``."""
    if not key.startswith("net."):
        raise ValueError(f"only net.* sysctls are per namespace, not {key}")
    path = "/proc/sys/" + key.replace(".", "/")
    with in_netns(name), open(path, "w") as f:
        f.write(str(value))


def read_sysctl(name: str, key: str) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    with in_netns(name), open(path) as f:
        return f.read().strip()


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """``argv`` prefixed so that it runs inside namespace ``name`` (network only)."""
    return ["nsenter", f"--net={netns_path(name)}", "--", *argv]


def netns_inode(name: str) -> int:
    return os.stat(netns_path(name)).st_ino


def _ns_id(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def pids_in(name: str) -> list[int]:
    """PIDs of processes whose network namespace is ``name`` (device and inode).

    Refuses a name that is not a namespace of its own (a plain file, or a
    bind of the namespace this process runs in): cleanup must never match
    the machine's own processes.
    """
    target = _ns_id(netns_path(name))
    root = _ns_id(ROOT_NETNS)
    if target == root or target[0] != root[0]:
        raise NetnsError(f"{name} is not a namespace of its own; refusing to match processes")
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if _ns_id(f"/proc/{entry}/ns/net") == target:
                found.append(int(entry))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def scratch(name: str) -> Iterator[str]:
    """A namespace that exists for the block only (for tests and test-runs)."""
    create(name)
    try:
        with open_iproute(name) as ipr:
            lo = ipr.link_lookup(ifname="lo")
            ipr.link("set", index=lo[0], state="up")
        yield name
    finally:
        remove(name)


_SIOCETHTOOL = 0x8946
_ETHTOOL_STXCSUM = 0x17


def set_tx_checksum(name: str, ifname: str, enabled: bool) -> None:
    """Turn transmit checksum offload on or off for ``ifname`` in namespace ``name``.

    With it off, the kernel fills in L4 checksums before a packet reaches the
    capture taps, so every pcap of the lab holds complete, checkable checksums
    (veth would otherwise carry CHECKSUM_PARTIAL packets with only the
    pseudo-header sum in the field).
    """
    value = ctypes.create_string_buffer(struct.pack("II", _ETHTOOL_STXCSUM, int(enabled)))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    with socket_in(name, socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), _SIOCETHTOOL, ifreq)
        except OSError as exc:
            raise NetnsError(f"{name}: ethtool tx checksum on {ifname}: {exc.strerror}") from exc
