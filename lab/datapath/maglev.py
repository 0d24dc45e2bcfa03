"""Maglev consistent-hashing lookup tables, built in user space for the BPF datapath.

As Cilium does, the table is computed by the control plane (here: the lab,
in Python; in Cilium: the agent) and the datapath only indexes it: a new
flow's backend is ``table[flow_hash % M]``. A backend set that changes by
one backend moves only about ``1/N`` of the flows (the removed backend's own
share, plus a little more), unlike ``flow_hash % N``, which remaps most flows.

The algorithm (Eisenbud et al., "Maglev: A Fast and Reliable Software
Network Load Balancer", NSDI 2016, section 3.4):

* ``M`` is prime. As Cilium does, only its sizes are allowed
  (:data:`MAGLEV_SIZES`: 251 ... 131071, default 16381, Cilium's
  ``--bpf-lb-maglev-table-size``); any other size is a ``ValueError``.
* Each backend is named by a stable string (``"10.0.2.123:80"``). Two
  independent 64-bit hashes of the name give ``offset = h1 % M`` and
  ``skip = h2 % (M - 1) + 1``; the backend's preference list (a permutation
  of ``0..M-1``, because ``M`` is prime and ``0 < skip < M``) is
  ``(offset + j * skip) % M`` for ``j = 0, 1, ...``.
* The table is filled round-robin over the backends: each in turn takes the
  next slot of its own permutation that is still empty, until all ``M``
  entries are filled. So every backend gets ``floor(M/N)`` or ``ceil(M/N)``
  entries (the first ``M % N`` backends of the round get one more).

The hashes: Cilium uses murmur3-128 seeded with 32 bits of
``--bpf-lb-maglev-hash-seed``, its two 64-bit halves being ``h1`` and
``h2``. This module uses BLAKE2b from :mod:`hashlib` instead (no extra
dependency): a 16-byte digest of the name's UTF-8 bytes, keyed with the
32-bit ``seed`` (4 bytes, big-endian) and personalised with ``dsrlab-maglev``;
``h1`` is its first 8 bytes and ``h2`` its last 8, both read big-endian. The
table is therefore deterministic across processes and machines (no
``PYTHONHASHSEED`` dependence), but it is *not* bit-for-bit Cilium's table.

Order independence: as Cilium does (it sorts the backend names before
building, since names are the same on every node while backend IDs are
node-local), :func:`build_table` sorts the names first. The returned
:class:`MaglevTable` states that order explicitly: ``backends`` is the
sorted tuple of names and ``entries[k]`` is an *index into that tuple*,
so ``backends[entries[k]]`` is the backend of table entry ``k``
(:meth:`MaglevTable.backend_for` and :meth:`MaglevTable.names` do that for
you). Indexes are u16 (``array('H')``), hence at most 65535 backends.

How the datapath uses it: the lab's ``lb_backends`` map holds a service's
backends in slots ``1..count`` (``bpf/dsr.h``). Load them in the order of
``MaglevTable.backends`` (slot ``i + 1`` holds ``backends[i]``) and store
:meth:`MaglevTable.slots` (``entries[k] + 1``, a u16 per entry) as the
service's table; a new flow then gets slot ``table[flow_hash % M]``.
Cilium stores its node-local backend IDs in the inner map of
``cilium_lb4_maglev`` instead of slot numbers; the lookup is the same.
Weights (Cilium's weighted Maglev) are not implemented.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from lab.model.topology import MAGLEV_SIZES  # the sizes Cilium accepts (all prime)

DEFAULT_SIZE = 16381
"""Cilium's default table size."""

MAX_BACKENDS = 0xFFFF
"""Entries are u16 and the datapath's slot is ``index + 1``: at most 65535 backends."""

_PERSON = b"dsrlab-maglev"
_MAX_SEED = 0xFFFFFFFF


def check_size(size: int) -> int:
    """``size`` if it is one of :data:`MAGLEV_SIZES`, else ``ValueError``."""
    if isinstance(size, bool) or size not in MAGLEV_SIZES:
        allowed = ", ".join(str(m) for m in MAGLEV_SIZES)
        raise ValueError(f"Maglev table size {size!r} is not allowed; use one of {allowed}")
    return size


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"Maglev hash seed {seed!r} is not a 32-bit unsigned integer")
    return seed


def offset_and_skip(name: str, size: int, seed: int = 0) -> tuple[int, int]:
    """Backend ``name``'s permutation start and step: ``(h1 % size, h2 % (size - 1) + 1)``."""
    digest = hashlib.blake2b(
        name.encode("utf-8"),
        digest_size=16,
        key=_check_seed(seed).to_bytes(4, "big"),
        person=_PERSON,
    ).digest()
    h1 = int.from_bytes(digest[:8], "big")
    h2 = int.from_bytes(digest[8:], "big")
    return h1 % size, h2 % (size - 1) + 1


@dataclass(frozen=True, eq=False)
class MaglevTable:
    """A built table: ``backends[entries[k]]`` is the backend of entry ``k``.

    ``backends`` is sorted by name (code point order); ``entries`` has
    ``size`` u16 indexes into it. Two tables compare equal when their size,
    seed, backends and entries are all equal. Treat ``entries`` as read-only
    (the table is hashable by value); copy it to change it.
    """

    backends: tuple[str, ...]
    entries: array[int] = field(repr=False)
    size: int
    seed: int

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaglevTable):
            return NotImplemented
        return (self.size, self.seed, self.backends, self.entries) == (
            other.size, other.seed, other.backends, other.entries)

    def __hash__(self) -> int:
        return hash((self.size, self.seed, self.backends, self.entries.tobytes()))

    def backend_for(self, hash32: int) -> str:
        """The backend of a flow whose hash is ``hash32``: ``entries[hash32 % size]``."""
        return self.backends[self.entries[hash32 % self.size]]

    def names(self) -> list[str]:
        """The backend name of every entry, in table order."""
        backends = self.backends
        return [backends[i] for i in self.entries]

    def slots(self) -> array[int]:
        """The table as the datapath stores it: ``entries[k] + 1`` (u16), the ``lb_backends``
        slot of ``backends[entries[k]]`` when the backends are loaded in this table's order."""
        return array("H", [i + 1 for i in self.entries])

    def counts(self) -> dict[str, int]:
        """Entries per backend name (every backend present, possibly with 0 when N > M)."""
        tally = [0] * len(self.backends)
        for i in self.entries:
            tally[i] += 1
        return dict(zip(self.backends, tally, strict=True))

    def digest(self) -> str:
        """A SHA-256 hex digest of (size, seed, backends, entries): equal tables, equal digests."""
        h = hashlib.sha256()
        h.update(f"{self.size}/{self.seed}/".encode())
        h.update("\n".join(self.backends).encode("utf-8"))
        h.update(b"\0")
        entries = array("H", self.entries)
        if sys.byteorder == "little":
            entries.byteswap()  # big-endian u16s: the same digest on every machine
        h.update(entries.tobytes())
        return h.hexdigest()


def build_table(backends: Sequence[str], size: int = DEFAULT_SIZE, seed: int = 0) -> MaglevTable:
    """Build the Maglev table of ``size`` entries for the named ``backends``.

    The order of ``backends`` does not matter (they are sorted by name first).
    ``ValueError`` for: a size not in :data:`MAGLEV_SIZES`, a seed outside
    ``0..2**32-1``, no backends, more than 65535, or a name given twice.
    """
    if isinstance(backends, str):
        raise TypeError("backends must be a sequence of names, not a single str")
    m = check_size(size)
    _check_seed(seed)
    names = tuple(sorted(backends))
    n = len(names)
    if n == 0:
        raise ValueError("a Maglev table needs at least one backend")
    if n > MAX_BACKENDS:
        raise ValueError(f"{n} backends: a Maglev table holds at most {MAX_BACKENDS}")
    dupes = sorted({a for a, b in pairwise(names) if a == b})
    if dupes:
        raise ValueError(f"duplicate backend names: {', '.join(dupes)}")

    nxt: list[int] = []  # each backend's next candidate slot in its permutation
    skips: list[int] = []
    for name in names:
        offset, skip = offset_and_skip(name, m, seed)
        nxt.append(offset)
        skips.append(skip)

    empty = n  # never a valid index: marks an unfilled entry
    table = [empty] * m
    filled = 0
    while True:
        for i in range(n):
            c = nxt[i]
            s = skips[i]
            while table[c] != empty:
                c += s
                if c >= m:
                    c -= m
            table[c] = i
            c += s
            nxt[i] = c - m if c >= m else c
            filled += 1
            if filled == m:
                return MaglevTable(names, array("H", table), m, seed)


def moved_share(old: MaglevTable, new: MaglevTable) -> float:
    """The share of entries whose backend *name* differs between ``old`` and ``new``.

    Compared by name, not index: the index of a backend shifts when another
    one is added or removed before it in sorted order. Both tables must have
    the same size.
    """
    if old.size != new.size:
        raise ValueError(f"tables of different sizes ({old.size}, {new.size}) cannot be compared")
    ob, nb = old.backends, new.backends
    moved = sum(1 for a, b in zip(old.entries, new.entries, strict=True) if ob[a] != nb[b])
    return moved / old.size
