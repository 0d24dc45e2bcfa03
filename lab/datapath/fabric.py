"""The lab's fabric (``bpf/fabric.c``): what a cloud network does to frames between nodes.

:class:`FabricObject` loads ``fabric_from_node`` and sets, per bridge port
(the node side of the lab's bridge), whether frames the node sends have
their IPv4 options stripped (some clouds' fabrics do; the DSR option goes
with them), whether IPv6 frames carrying any extension header are dropped
(as many clouds' networks and middleboxes do, RFC 7872/9098: the DSR
Destination Options header goes with the packet), whether frames whose
source is not the node's address nor in its pod CIDR are dropped (AWS's
source/destination check), and what share of them is lost at random. The
netns backend attaches it at tc ingress of the ports the topology's
``fabric`` names; nothing else is changed.

The same object also runs on a lab host's own interface
(:meth:`FabricObject.attach_on_host`, the program ``fabric_on_host``): the
lab's faults (:mod:`lab.env.faults`) lose frames there when the kernel has
no ``sch_netem``. Ports are keyed by interface index, and indices are per
namespace (every node's and pod's ``eth0`` is 10): one object serves the
ports of one namespace only.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType

from lab.datapath import libbpf, tc
from lab.datapath.build import build_object
from lab.datapath.loader import BpfMap, object_map, object_program_fd, open_and_load

SOURCE = "fabric.c"
PROGRAM = "fabric_from_node"
HOST_PROGRAM = "fabric_on_host"
# on a host's hook, ahead of the host's own filter (a node's datapath: handle 1,
# priority 1): a new handle of a priority runs before the ones already there
HOST_HANDLE = 2
HOST_PRIORITY = 1
STRIP_OPTIONS = 1 << 0
SRC_DST_CHECK = 1 << 1
DROP_IPV6_EXT = 1 << 2
PORT_VAL = struct.Struct("=I4s4s4sI")  # flags, node_addr, pod_net, pod_mask, loss
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
EVENTS = {0: "passed", 1: "stripped", 2: "src_dst_dropped", 3: "strip_failed", 4: "lost",
          5: "ipv6_ext_dropped"}
U32_RANGE = 1 << 32


def loss_threshold(percent: float) -> int:
    """``percent`` as the program's threshold: a frame is lost when a random u32 falls
    below it (100 % loses every frame but one in 2^32)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a loss is 0..100 %, not {percent:g}")
    return min(U32_RANGE - 1, round(percent / 100 * U32_RANGE))


@dataclass(frozen=True)
class FabricPort:
    """What the fabric does to the frames one node sends into it."""

    ifindex: int  # the node's port on the bridge
    node_addr: str
    pod_cidr: str | None = None
    strip_options: bool = False
    source_dest_check: bool = False
    loss_percent: float = 0.0  # frames lost at random
    drop_ipv6_ext: bool = False  # IPv6 frames carrying any extension header dropped

    def value(self) -> bytes:
        flags = (STRIP_OPTIONS if self.strip_options else 0) | (
            SRC_DST_CHECK if self.source_dest_check else 0) | (
            DROP_IPV6_EXT if self.drop_ipv6_ext else 0)
        net = IPv4Network(self.pod_cidr) if self.pod_cidr else None
        return PORT_VAL.pack(flags, IPv4Address(self.node_addr).packed,
                             net.network_address.packed if net else bytes(4),
                             net.netmask.packed if net else bytes(4),
                             loss_threshold(self.loss_percent))


class FabricObject:
    """``bpf/fabric.c`` loaded through the verifier; a context manager."""

    def __init__(self, obj: int, log_buf: ctypes.Array[ctypes.c_char], prog_fd: int,
                 ports: BpfMap, counters: BpfMap, *, host_prog_fd: int = -1) -> None:
        self._obj: int | None = obj
        self._log_buf = log_buf  # libbpf keeps a pointer to it
        self.prog_fd = prog_fd
        self.host_prog_fd = host_prog_fd
        self.ports = ports
        self._counters = counters

    @classmethod
    def load(cls, path: Path | None = None) -> FabricObject:
        path = path or build_object(source=SOURCE)
        obj, log_buf = open_and_load(path)
        lib = libbpf.lib()
        try:
            prog_fd = object_program_fd(obj, path, PROGRAM)
            host_prog_fd = object_program_fd(obj, path, HOST_PROGRAM)
            ncpus = libbpf.check(lib.libbpf_num_possible_cpus(), "possible CPUs")
            ports = object_map(obj, path, "fabric_ports", (U32.size, PORT_VAL.size), ncpus)
            counters = object_map(obj, path, "fabric_counters", (U32.size, U64.size), ncpus,
                                  per_cpu=True)
        except BaseException:
            lib.bpf_object__close(obj)
            raise
        return cls(obj, log_buf, prog_fd, ports, counters, host_prog_fd=host_prog_fd)

    def set_port(self, port: FabricPort) -> None:
        self.ports.update(U32.pack(port.ifindex), port.value())

    def attach(self, ifindex: int) -> tc.TcAttachment:
        """At tc ingress of ``ifindex`` in this thread's network namespace."""
        return tc.attach(self.prog_fd, PROGRAM, ifindex, "ingress")

    def attach_on_host(self, ifindex: int,
                       direction: tc.TcHookPoint = "egress") -> tc.TcAttachment:
        """``fabric_on_host`` on a host's own interface ``ifindex`` (this thread's
        namespace), before the host's own filter on that hook, which still runs on
        every frame it lets through."""
        return tc.attach(self.host_prog_fd, HOST_PROGRAM, ifindex, direction,
                         handle=HOST_HANDLE, priority=HOST_PRIORITY)

    def counters(self) -> dict[str, int]:
        out = {}
        for idx, name in EVENTS.items():
            raw = self._counters.lookup(U32.pack(idx)) or b""
            out[name] = sum(v for (v,) in U64.iter_unpack(raw))
        return out

    def close(self) -> None:
        """Release the object (an attached program stays, held by its filter)."""
        if self._obj is not None:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> FabricObject:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
