"""What a lab needs of the machine, worked out and checked before anything starts.

A netns lab costs kernel memory per namespace, per node's datapath (programs,
maps) and per capture point (tcpdump's kernel ring, allocated whole when it
starts, and the process), and open files in this process (a netlink socket
and a namespace handle per host while wiring, the pods' listening sockets, a
node's BPF objects, a capture's pipe). :func:`lab_needs` adds them up for a
topology; :func:`check` raises the soft limit on open files to the hard one
and refuses, with one line, a lab the machine cannot give what it needs
(nothing has been created then).

The memory figures per item were measured on this lab's own bring-ups (the
drop of ``MemAvailable`` over up to 300 nodes, see the README's "Resources"
section) and rounded up. ``DSRLAB_MEMORY_LIMIT`` caps the memory a lab may
take below what the machine has available (``2G``, ``512M``, plain bytes).
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.capture.layout import Role
from lab.capture.live import ring_memory, ring_sizes
from lab.env.base import BackendError
from lab.model.topology import Topology

MEMORY_LIMIT_ENV = "DSRLAB_MEMORY_LIMIT"
MEMINFO = Path("/proc/meminfo")
MIB = 1 << 20

# memory per item (bytes), measured and rounded up
HOST_BYTES = 1 * MIB  # a namespace with its links, addresses, routes, sysctls
NODE_DATAPATH_BYTES = 2 * MIB  # a node's loaded datapath: programs, maps (lab-sized), BTF
POD_SERVER_BYTES = 40 * MIB  # the one pod server process
POD_BYTES = 64 * 1024  # a pod's listening sockets in that server
TCPDUMP_BYTES = 2 * MIB  # a tcpdump process (and its nsenter start), besides its ring
BASE_BYTES = 128 * MIB  # this process, the clang build check, the report's headroom

# open files of this process
BASE_FILES = 64
FILES_PER_HOST = 3  # the namespace, its netlink socket, a socket while wiring
FILES_PER_POD = 2  # its listening sockets (TCP; UDP too for a UDP service) until handed over,
#                   in each family of a dual-stack lab
FILES_PER_NODE = 12  # its datapath object: programs, maps, BTF
FILES_PER_CAPTURE = 2  # tcpdump's stderr pipe, and the pcap while it is handed over

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ResourceError(BackendError):
    """The machine cannot give a lab what it needs (or a setting about it is wrong)."""


@dataclass(frozen=True)
class Needs:
    """What one lab needs: memory (bytes), open files, and what it is, for people."""

    memory: int
    open_files: int
    what: str


def lab_needs(topology: Topology, *, datapath: bool = True, servers: bool = True,
              captures: Sequence[Role] = ()) -> Needs:
    """A netns lab of ``topology`` (with its datapath and pod server, as asked) and
    tcpdump on capture points of these roles."""
    hosts = len(topology.host_names())
    nodes, pods = len(topology.nodes), len(topology.pods)
    rings = sum(ring_memory(kib) for kib in ring_sizes(list(captures)))
    memory = (BASE_BYTES + hosts * HOST_BYTES + rings + len(captures) * TCPDUMP_BYTES
              + (nodes * NODE_DATAPATH_BYTES if datapath else 0)
              + (POD_SERVER_BYTES + pods * POD_BYTES if servers and pods else 0))
    families = 2 if topology.dual_stack else 1
    files = (BASE_FILES + FILES_PER_HOST * hosts + FILES_PER_POD * families * pods
             + FILES_PER_NODE * nodes + FILES_PER_CAPTURE * len(captures))
    what = f"{nodes} node{'s' * (nodes != 1)} and {pods} pod{'s' * (pods != 1)}"
    if captures:
        what += f" with {len(captures)} capture point{'s' * (len(captures) != 1)}"
    return Needs(memory, files, what)


def parse_size(text: str) -> int:
    """``2G``, ``512M``, ``1.5GiB``, ``1048576``: bytes (binary units); ValueError else."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError("a size in bytes, or with K, M, G or T (e.g. 2G, 512M)")
    value = int(float(m[1]) * _UNITS[m[2].lower()])
    if value <= 0:
        raise ValueError("a size above 0")
    return value


def memory_limit(env: Mapping[str, str] | None = None) -> int | None:
    """``DSRLAB_MEMORY_LIMIT`` in bytes (None when unset or empty)."""
    raw = (os.environ if env is None else env).get(MEMORY_LIMIT_ENV, "")
    if not raw.strip():
        return None
    try:
        return parse_size(raw)
    except ValueError as exc:
        shown = raw[:20].encode("unicode_escape").decode("ascii")
        raise ResourceError(f"{MEMORY_LIMIT_ENV}={shown!r}: {exc}") from None


def memory_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where there is none)."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def raise_open_files() -> tuple[int, int]:
    """The soft limit on open files raised to the hard one; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # a hard limit above what the kernel allows (nr_open)
            pass
    return soft, hard


def human(n: int) -> str:
    """Bytes for people: ``1.4 GiB``, ``512 MiB``, ``64 KiB``, ``100 bytes``."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= MIB:
        return f"{round(n / MIB)} MiB"
    return f"{round(n / 1024)} KiB" if n >= 1024 else f"{n} bytes"


def check(needs: Needs) -> None:
    """Raise the soft limit on open files to the hard one; a :class:`ResourceError`
    (one line) when the limit or the memory (``MemAvailable``, and
    ``DSRLAB_MEMORY_LIMIT`` when set) is less than ``needs``."""
    soft, hard = raise_open_files()
    if soft != resource.RLIM_INFINITY and soft < needs.open_files:
        raise ResourceError(
            f"{needs.what} need about {needs.open_files:,} open files; this process may "
            f"open {soft:,} (ulimit -n; the hard limit is "
            f"{'unlimited' if hard == resource.RLIM_INFINITY else f'{hard:,}'}): raise it "
            f"(as root: ulimit -n {_round_up(needs.open_files)}) or use a smaller topology")
    limit = memory_limit()
    available = memory_available()
    have = min(x for x in (limit, available, 1 << 62) if x is not None)
    if needs.memory > have:
        source = (f"{MEMORY_LIMIT_ENV}={human(have)}" if limit is not None and limit == have
                  else "MemAvailable")
        raise ResourceError(
            f"{needs.what} need about {human(needs.memory)} of memory; "
            f"{human(have)} is available ({source}): free memory or use a smaller topology")


def _round_up(n: int) -> int:
    """A round figure at or above ``n`` (4096, 8192, ...)."""
    step = 1024
    while step < n:
        step *= 2
    return step


__all__ = ["MEMORY_LIMIT_ENV", "Needs", "ResourceError", "check", "human", "lab_needs",
           "memory_available", "memory_limit", "parse_size", "raise_open_files"]
