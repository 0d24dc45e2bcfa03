"""Loaded datapath objects kept for the next lab of this process.

Loading ``dsr.o`` is the verifier's work: about 0.1 s a node on this
machine, seconds under a kernel in emulation, and most of a lab's bring-up.
A process that brings up one lab after another (``run --all``'s workers,
the test session) hands each object, once its lab has taken it off every
link, to this pool; the next lab of the same object file and map sizes
takes it back with every map reset (:meth:`DatapathObject.reset`: what a
fresh load holds) instead of loading again. An object that is still
attached somewhere (a lab left up) is never given; one whose reset fails
is closed. The pool holds a few objects per kind, and the process's exit
releases them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from lab.datapath import DatapathError, DatapathObject

Key = tuple[str, frozenset[tuple[str, int]]]

PER_KIND = 8  # objects kept per object file and map sizes (a lab has a few nodes)


def key(path: Path, sizes: Mapping[str, int]) -> Key:
    return str(path.resolve()), frozenset(sizes.items())


class ObjectPool:
    """Detached, loaded objects by object file and map sizes."""

    def __init__(self, per_kind: int = PER_KIND) -> None:
        self._lock = threading.Lock()
        self._kept: dict[Key, list[DatapathObject]] = {}
        self.per_kind = per_kind
        self.reused = 0  # how many takes found an object

    def take(self, kind: Key) -> DatapathObject | None:
        """A kept object of ``kind``, every map as at load; None when there is none."""
        while True:
            with self._lock:
                kept = self._kept.get(kind)
                if not kept:
                    return None
                dp = kept.pop()
            try:
                dp.reset()
            except (DatapathError, OSError):
                dp.close()  # not as a fresh load would be: never used again
                continue
            with self._lock:
                self.reused += 1
            return dp

    def give(self, kind: Key, dp: DatapathObject) -> None:
        """Keep ``dp`` for a later lab, or close it: if enough are kept, or if a filter it
        attached may still run one of its programs (:attr:`DatapathObject.on_a_link`)."""
        if dp.closed:
            return
        if dp.on_a_link:
            dp.close()
            return
        with self._lock:
            kept = self._kept.setdefault(kind, [])
            if len(kept) < self.per_kind:
                kept.append(dp)
                return
        dp.close()

    def held(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._kept.values())

    def close(self) -> None:
        """Close every kept object."""
        with self._lock:
            kept = [dp for v in self._kept.values() for dp in v]
            self._kept.clear()
        for dp in kept:
            dp.close()


POOL = ObjectPool()
