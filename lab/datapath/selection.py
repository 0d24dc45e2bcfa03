"""The datapath's seeded backend selection, mirrored in Python.

By default ``dsr_from_netdev`` picks a new flow's backend with
``bpf_get_prandom_u32()`` (Cilium's ``random`` algorithm), which nothing can
seed. :meth:`DatapathObject.set_selection_seed` switches it to a hash of the
flow tuple seeded with a 32-bit value (``dsr_config``: ``CFG_F_SEEDED_SELECT``
and ``seed``): the same seed and flow always get the same backend, different
flows still spread over all backends. :func:`seeded_slot` is the same
computation, so tests can predict the choice.

The C side hashes the fields as the u32 values they load as from the packet
(network byte order in memory, read on this machine's byte order).
"""

from __future__ import annotations

import ipaddress
import sys
from typing import NamedTuple

MASK32 = 0xFFFFFFFF


def mix32(h: int) -> int:
    """lowbias32, as ``mix32()`` in bpf/dsr.c."""
    h &= MASK32
    h ^= h >> 16
    h = (h * 0x7FEB352D) & MASK32
    h ^= h >> 15
    h = (h * 0x846CA68B) & MASK32
    h ^= h >> 16
    return h


def _load32(raw: bytes) -> int:
    return int.from_bytes(raw, sys.byteorder)


def _addr32(ip: str) -> int:
    """An address as the C side hashes it: IPv4's u32, or IPv6's four u32 words XORed
    (``fold6()``)."""
    packed = ipaddress.ip_address(ip).packed
    out = 0
    for i in range(0, len(packed), 4):
        out ^= _load32(packed[i:i + 4])
    return out


class Flow(NamedTuple):
    """A flow as the LB sees it: client -> service."""

    src: str
    dst: str
    sport: int
    dport: int
    proto: int = 6  # IPPROTO_TCP; 17 for UDP


def flow_hash(seed: int, flow: Flow) -> int:
    """``select_hash()`` of bpf/dsr.c for ``flow`` with ``seed``."""
    saddr = _addr32(flow.src)
    daddr = _addr32(flow.dst)
    sport = int.from_bytes(flow.sport.to_bytes(2, "big"), sys.byteorder)
    dport = int.from_bytes(flow.dport.to_bytes(2, "big"), sys.byteorder)
    h = mix32(seed ^ saddr)
    h = mix32(h ^ daddr)
    h = mix32(h ^ (sport | (dport << 16)))
    return mix32(h ^ flow.proto)


def seeded_slot(seed: int, count: int, flow: Flow) -> int:
    """The 0-based index of the backend (of ``count``) a new ``flow`` gets with ``seed``."""
    if count < 1:
        raise ValueError("a service needs at least one backend to select from")
    return flow_hash(seed, flow) % count


def maglev_hash(seed: int, flow: Flow) -> int:
    """``maglev_hash()`` of bpf/dsr.c: source address and port, destination port and
    protocol (not the destination address: every node's NodePort agrees), seeded."""
    saddr = _addr32(flow.src)
    sport = int.from_bytes(flow.sport.to_bytes(2, "big"), sys.byteorder)
    dport = int.from_bytes(flow.dport.to_bytes(2, "big"), sys.byteorder)
    h = mix32(seed ^ saddr)
    h = mix32(h ^ (sport | (dport << 16)))
    return mix32(h ^ flow.proto)


def maglev_index(seed: int, size: int, flow: Flow) -> int:
    """The entry of a ``size``-entry Maglev table that ``flow`` reads."""
    return maglev_hash(seed, flow) % size
