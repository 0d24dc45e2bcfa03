"""Network namespaces without forking: create, enter per thread, remove.

Everything here works on namespaces by name under ``/run/netns`` (the
``ip netns`` convention, so ``ip netns exec`` and ``nsenter`` see them too).

Entering a namespace is per *thread* (``setns(2)`` with ``CLONE_NEWNET`` only
moves the calling thread); :func:`in_netns` always restores the thread's
previous namespace, even on error, and so does :func:`create`, which can run
a setup function inside the new namespace before it comes back (sockets made
there, sysctls written there: no second ``setns``). Sockets keep the
namespace they were created in, which is how :func:`open_iproute` and
:class:`lab.plumbing.rtnl.Rtnl` get netlink sockets that talk to the lab's
namespace and never to the root one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lab.errors import LabError
from lab.plumbing import interrupts, names, nsmark, owner

if TYPE_CHECKING:
    from pyroute2 import IPRoute

NETNS_RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
T = TypeVar("T")


class NetnsError(LabError, RuntimeError):
    """A namespace could not be created, entered, wired or removed."""


def netns_path(name: str) -> Path:
    return NETNS_RUN_DIR / name


def exists(name: str) -> bool:
    return netns_path(name).exists()


def list_netns() -> list[str]:
    """Names of all namespaces under /run/netns (the lab's and others')."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


@functools.cache
def _share_run_dir() -> None:
    """Make /run/netns a shared mount point, as ``ip netns add`` does (once per process)."""
    NETNS_RUN_DIR.mkdir(parents=True, exist_ok=True)
    d = str(NETNS_RUN_DIR).encode()
    if _libc.mount(b"none", d, None, _MS_SHARED | _MS_REC, None) == 0:
        return
    # not a mount point yet: bind it onto itself, then share it
    if (_libc.mount(d, d, b"none", _MS_BIND | _MS_REC, None) != 0
            or _libc.mount(b"none", d, None, _MS_SHARED | _MS_REC, None) != 0):
        raise NetnsError(f"cannot make {NETNS_RUN_DIR} a shared mount: "
                         f"{os.strerror(ctypes.get_errno())}")


def create(name: str, inside: Callable[[], T] | None = None) -> T | None:
    """Create the namespace ``name`` (fails if it exists already).

    ``inside``, when given, runs in the new namespace on the calling thread
    before it returns to its own namespace; its result is returned. Use it to
    make the sockets and write the sysctls a new host needs. If it (or
    anything else) fails, the namespace is removed again.

    An interrupt (:mod:`lab.plumbing.interrupts`) never splits it: it is held
    while the namespace is made, then raised with the namespace removed again,
    so ``create`` either returns or leaves nothing. A caller that records the
    namespace for its own undo does both in one :func:`interrupts.deferred`
    section (the interrupt is then raised once the namespace is recorded).
    """
    if exists(name):
        raise NetnsError(f"network namespace {name} already exists")
    made = False
    try:
        with interrupts.deferred():
            result = _create(name, inside)
            made = True
    except BaseException:
        if made:  # interrupted while it was made: undo it here
            with interrupts.deferred(), contextlib.suppress(OSError, NetnsError):
                remove(name)
        raise
    return result


def _create(name: str, inside: Callable[[], T] | None) -> T | None:
    lab_name = names.parse_netns_name(name)
    mark = None
    if lab_name is not None:
        owner.claim(lab_name.run_id)
        me = owner.Holder.this_process()
        mark = nsmark.Mark(lab_name.run_id, "run", me.pid, me.process.start_time,
                           me.stop_signal)
    _share_run_dir()
    path = netns_path(name)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    except FileExistsError:
        os.close(home)
        raise NetnsError(f"network namespace {name} already exists") from None
    except BaseException:
        os.close(home)
        raise
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise NetnsError(f"unshare for {name}: {os.strerror(ctypes.get_errno())}")
        try:
            if _libc.mount(b"/proc/thread-self/ns/net", str(path).encode(), b"none",
                           _MS_BIND, None) != 0:
                raise NetnsError(f"bind mount of {name}: {os.strerror(ctypes.get_errno())}")
            if mark is not None:  # who holds it, where every state directory sees it
                try:
                    nsmark.write_here(mark)
                except OSError as exc:
                    raise NetnsError(f"recording the owner of {name}: {exc}") from None
            return inside() if inside is not None else None
        finally:
            _setns(home)
    except BaseException:
        with contextlib.suppress(OSError, NetnsError):
            remove(name)
        raise
    finally:
        os.close(home)


def remove(name: str, *, release: bool = True) -> None:
    """Unmount and delete the namespace file (the kernel frees it when unused).

    Removing the last namespace of a lab run drops this process's claim on it
    (``release=False`` skips that look at the other namespaces: a caller
    removing many namespaces of one run calls :func:`release_if_done` once).
    """
    path = netns_path(name)
    _libc.umount2(str(path).encode(), _MNT_DETACH)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    if release:
        lab_name = names.parse_netns_name(name)
        if lab_name is not None:
            release_if_done(lab_name.run_id)


def remove_all(namespaces: Iterable[str]) -> list[str]:
    """:func:`remove` for many namespaces, in order, without the per-name look at the
    others; returns the errors (``name: reason``) instead of stopping at the first.
    The caller drops its run claims with :func:`release_if_done` afterwards."""
    errors: list[str] = []
    run_dir = str(NETNS_RUN_DIR) + "/"
    for name in namespaces:
        path = run_dir + name
        _libc.umount2(path.encode(), _MNT_DETACH)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            errors.append(f"{name}: {exc.strerror}")
    return errors


def release_if_done(run_id: str) -> None:
    """Drop this process's claim on run ``run_id`` once none of its namespaces is left."""
    prefix = f"{names.PREFIX}-{run_id}-"
    if not any(n.startswith(prefix) for n in list_netns()):
        owner.release(run_id)


ROOT_NETNS = "/proc/self/ns/net"  # the main thread's: the namespace the lab runs from


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the current thread into ``name`` (or a ``/proc/…/ns/net`` path) and back."""
    path = name if name.startswith("/proc/") else netns_path(name)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
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
            _setns(home)
    finally:
        os.close(home)


def read_mark(name: str) -> nsmark.Mark | None:
    """The record namespace ``name`` holds of its run (:mod:`lab.plumbing.nsmark`);
    None when it holds none, is gone, or is no namespace."""
    try:
        with in_netns(name):
            return nsmark.read_here()
    except (OSError, NetnsError):
        return None


def write_mark(name: str, mark: nsmark.Mark) -> None:
    """Set the record namespace ``name`` holds of its run."""
    try:
        with in_netns(name):
            nsmark.write_here(mark)
    except OSError as exc:
        raise NetnsError(f"recording the state of {name}: {exc}") from None


def socket_in(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace ``name`` (it stays bound to it)."""
    with in_netns(name):
        return socket.socket(family, kind, proto)


def open_iproute(name: str) -> IPRoute:
    """A pyroute2 IPRoute whose netlink socket lives in namespace ``name``.

    pyroute2 would otherwise open its socket lazily on its own event-loop
    thread (in whatever namespace that thread is in); handing it a socket
    made here pins every request to the lab's namespace.
    """
    from pyroute2 import IPRoute  # noqa: PLC0415  (heavy: loaded by its users only)

    sock = socket_in(name, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)  # NETLINK_ROUTE
    return IPRoute(use_socket=sock)


def _sysctl_path(key: str) -> str:
    if not key.startswith("net."):
        raise ValueError(f"only net.* sysctls are per namespace, not {key}")
    return "/proc/sys/" + key.replace(".", "/")


def write_sysctls_here(values: Mapping[str, str | int], *, optional: Iterable[str] = ()) -> None:
    """Set ``net.*`` sysctls in the calling thread's namespace (e.g. inside :func:`create`).

    Keys listed in ``optional`` may be missing (IPv6 off in the kernel, say).
    """
    skip = set(optional)
    for key, value in values.items():
        try:
            with open(_sysctl_path(key), "w") as f:
                f.write(str(value))
        except FileNotFoundError:
            if key not in skip:
                raise


class SysctlPlan:
    """``net.*`` sysctls that every new namespace of a bring-up needs, written only
    where a new namespace does not start with the value already.

    What a new namespace starts with (copied from the initial namespace, or
    the kernel's defaults, as ``net.core.devconf_inherit_init_net`` says) is
    read once, in the first namespace :meth:`apply_here` runs in; the later
    ones, made by the same thread from the same namespace, start the same.
    """

    def __init__(self, values: Mapping[str, str | int], *, optional: Iterable[str] = ()) -> None:
        self.values = dict(values)
        self.optional = tuple(optional)
        self._needed: dict[str, str | int] | None = None

    def apply_here(self) -> None:
        """Apply in the calling thread's namespace (a fresh one, e.g. inside :func:`create`)."""
        if self._needed is None:
            needed: dict[str, str | int] = {}
            for key, value in self.values.items():
                try:
                    with open(_sysctl_path(key)) as f:
                        current = f.read().strip()
                except FileNotFoundError:
                    if key in self.optional:
                        continue
                    raise
                if current != str(value):
                    needed[key] = value
            self._needed = needed
        write_sysctls_here(self._needed, optional=self.optional)


def write_sysctl(name: str, key: str, value: str | int) -> None:
    """Set ``net.*`` sysctl ``key`` (dotted) inside namespace ``name``."""
    path = _sysctl_path(key)
    with in_netns(name), open(path, "w") as f:
        f.write(str(value))


def write_sysctls(name: str, values: Mapping[str, str | int]) -> None:
    """Set several ``net.*`` sysctls inside namespace ``name`` (one ``setns`` there and back)."""
    with in_netns(name):
        write_sysctls_here(values)


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
    return pids_in_each([name])[name]


def pids_in_each(namespaces: Iterable[str]) -> dict[str, list[int]]:
    """:func:`pids_in` for many namespaces with one pass over ``/proc``.

    Raises :class:`NetnsError` for a name that is not a namespace of its own;
    a namespace that has disappeared meanwhile has no processes.
    """
    root = _ns_id(ROOT_NETNS)
    targets: dict[tuple[int, int], str] = {}
    found: dict[str, list[int]] = {}
    for name in namespaces:
        found[name] = []
        try:
            ns_id = _ns_id(netns_path(name))
        except FileNotFoundError:
            continue
        if ns_id == root or ns_id[0] != root[0]:
            raise NetnsError(f"{name} is not a namespace of its own; refusing to match processes")
        targets[ns_id] = name
    if not targets:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = targets.get(_ns_id(f"/proc/{entry}/ns/net"))
        except OSError:
            continue
        if ns is not None:
            found[ns].append(int(entry))
    return found


@contextlib.contextmanager
def scratch(name: str) -> Iterator[str]:
    """A namespace that exists for the block only (for tests and test-runs)."""

    made = False
    try:
        with interrupts.deferred():
            create(name, _loopback_up)
            made = True
        yield name
    finally:
        if made:
            with interrupts.deferred():
                remove(name)


_SIOCETHTOOL = 0x8946
_ETHTOOL_STXCSUM = 0x17
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _loopback_up() -> None:
    """``lo`` up in the namespace this thread is in (an ioctl: no netlink needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS,
                                                    struct.pack("16s16x", b"lo")), 16)[0]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def set_tx_checksum(name: str, ifname: str, enabled: bool) -> None:
    """Turn transmit checksum offload on or off for ``ifname`` in namespace ``name``.

    With it off, the kernel fills in L4 checksums before a packet reaches the
    capture taps, so every pcap of the lab holds complete, checkable checksums
    (veth would otherwise carry CHECKSUM_PARTIAL packets with only the
    pseudo-header sum in the field).
    """
    with socket_in(name, socket.AF_INET, socket.SOCK_DGRAM) as s:
        set_tx_checksum_via(s, ifname, enabled, where=name)


def set_tx_checksum_via(sock: socket.socket, ifname: str, enabled: bool, *,
                        where: str = "") -> None:
    """:func:`set_tx_checksum` through a socket of the device's namespace (any kind)."""
    value = ctypes.create_string_buffer(struct.pack("II", _ETHTOOL_STXCSUM, int(enabled)))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    try:
        fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, ifreq)
    except OSError as exc:
        raise NetnsError(f"{where or 'netns'}: ethtool tx checksum on {ifname}: "
                         f"{exc.strerror}") from exc
