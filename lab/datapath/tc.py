"""tc clsact attachment of a loaded program (direct-action BPF filter).

:func:`attach` runs in the calling thread's current network namespace
(enter the lab's namespace first with ``lab.plumbing.nsutil.in_netns``). The
returned :class:`TcAttachment` detaches as a context manager; otherwise the
filter (and so the program and its maps) outlives the Python process, which
is how a lab is left running. Detaching must happen in the namespace of the
attach; the handle remembers that namespace's inode and refuses otherwise.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from lab.datapath import libbpf
from lab.datapath.errors import DatapathError

TcHookPoint = Literal["ingress", "egress"]
_ATTACH_POINTS: dict[str, int] = {"ingress": libbpf.BPF_TC_INGRESS, "egress": libbpf.BPF_TC_EGRESS}
DEFAULT_HANDLE = 1
DEFAULT_PRIORITY = 1
# no such filter / interface; EINVAL is the kernel's "Cannot find specified
# filter chain" once the hook's last filter is gone
_GONE = (errno.ENOENT, errno.ENODEV, errno.EINVAL)


def current_netns_inode() -> int:
    """Inode of the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def _hook(ifindex: int, direction: TcHookPoint) -> libbpf.BpfTcHook:
    try:
        point = _ATTACH_POINTS[direction]
    except KeyError:
        raise ValueError(f"direction must be ingress or egress, not {direction!r}") from None
    hook = libbpf.new_opts(libbpf.BpfTcHook)
    hook.ifindex = ifindex
    hook.attach_point = point
    return hook


@dataclass
class TcAttachment:
    """One BPF filter on a clsact hook; ``detach()`` (or leaving ``with``) removes it."""

    ifindex: int
    direction: TcHookPoint
    program: str
    prog_id: int
    handle: int
    priority: int
    netns_inode: int
    attached: bool = field(default=True)

    def detach(self) -> None:
        """Remove the filter; a vanished filter or interface counts as detached."""
        if not self.attached:
            return
        if current_netns_inode() != self.netns_inode:
            raise DatapathError(
                f"detach {self.program} from ifindex {self.ifindex}: the calling thread is not "
                "in the network namespace it was attached in"
            )
        hook = _hook(self.ifindex, self.direction)
        opts = libbpf.new_opts(libbpf.BpfTcOpts)
        opts.handle = self.handle
        opts.priority = self.priority
        rc = libbpf.lib().bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
        if rc < 0 and -rc not in _GONE:
            libbpf.check(rc, f"bpf_tc_detach({self.program}, ifindex {self.ifindex})")
        self.attached = False

    def query_prog_id(self) -> int | None:
        """The id of the program now on this hook/handle/priority, or None."""
        return query(self.ifindex, self.direction, handle=self.handle, priority=self.priority)

    def __enter__(self) -> TcAttachment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()


def attach(
    prog_fd: int,
    program: str,
    ifindex: int,
    direction: TcHookPoint,
    *,
    handle: int = DEFAULT_HANDLE,
    priority: int = DEFAULT_PRIORITY,
    replace: bool = True,
) -> TcAttachment:
    """Create the clsact qdisc if needed and attach ``prog_fd`` as a da filter.

    With ``replace`` (default) a filter already at ``handle``/``priority`` is
    replaced, so attaching again is idempotent. If the attach fails and this
    call created the qdisc, the qdisc is removed again.
    """
    lib = libbpf.lib()
    inode = current_netns_inode()
    hook = _hook(ifindex, direction)
    with libbpf.capture_messages() as messages:
        rc = lib.bpf_tc_hook_create(ctypes.byref(hook))
        created = rc == 0
        if rc < 0 and -rc != errno.EEXIST:
            libbpf.check(rc, f"bpf_tc_hook_create(clsact on ifindex {ifindex})", messages)

        opts = libbpf.new_opts(libbpf.BpfTcOpts)
        opts.prog_fd = prog_fd
        opts.handle = handle
        opts.priority = priority
        opts.flags = libbpf.BPF_TC_F_REPLACE if replace else 0
        rc = lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
        if rc < 0:
            if created:
                whole = _hook(ifindex, direction)
                whole.attach_point = libbpf.BPF_TC_INGRESS | libbpf.BPF_TC_EGRESS
                lib.bpf_tc_hook_destroy(ctypes.byref(whole))
            libbpf.check(rc, f"bpf_tc_attach({program} on ifindex {ifindex} {direction})", messages)
    return TcAttachment(
        ifindex=ifindex,
        direction=direction,
        program=program,
        prog_id=int(opts.prog_id),
        handle=int(opts.handle),
        priority=int(opts.priority),
        netns_inode=inode,
    )


def query(
    ifindex: int,
    direction: TcHookPoint,
    *,
    handle: int = DEFAULT_HANDLE,
    priority: int = DEFAULT_PRIORITY,
) -> int | None:
    """Id of the BPF program at ``handle``/``priority`` on the hook, or None (this netns)."""
    hook = _hook(ifindex, direction)
    opts = libbpf.new_opts(libbpf.BpfTcOpts)
    opts.handle = handle
    opts.priority = priority
    rc = libbpf.lib().bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
    if rc < 0:
        if -rc in _GONE:
            return None
        libbpf.check(rc, f"bpf_tc_query(ifindex {ifindex} {direction})")
    return int(opts.prog_id)


def find(
    ifindex: int,
    direction: TcHookPoint,
    program: str,
    *,
    handle: int = DEFAULT_HANDLE,
    priority: int = DEFAULT_PRIORITY,
) -> TcAttachment | None:
    """A handle for a filter attached earlier (maybe by another process), or None.

    Runs in the calling thread's namespace; the handle can detach it later.
    """
    prog_id = query(ifindex, direction, handle=handle, priority=priority)
    if prog_id is None:
        return None
    return TcAttachment(
        ifindex=ifindex,
        direction=direction,
        program=program,
        prog_id=prog_id,
        handle=handle,
        priority=priority,
        netns_inode=current_netns_inode(),
    )
