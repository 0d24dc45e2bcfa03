"""A long transfer's middle folded into one line of its ladder.

A 100 MB download is tens of thousands of data segments and ACKs; drawn one
arrow each, the report grows to hundreds of megabytes and says nothing more.
A *bulk* packet is a TCP data segment or ACK (flags ``A`` or ``PA``) sent
once (no retransmission of it in the flow) that no check names. (One seen on
a single host counts too: offloads split and merge segments between hops, so
a long transfer has thousands of those.) A run of more than :data:`FOLD_OVER`
consecutive bulk packets keeps :data:`KEEP` at each end and folds the middle
into a :class:`Fold`: how many packets, how many carried data, how many
bytes, over which time. Everything else (handshake, teardown, resets,
retransmissions and the packets they stand for, anything a check matched)
is always drawn. The pcaps hold every packet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from lab.report.ladder import Key, Trail

KEEP = 16  # bulk packets drawn at each end of a folded run
FOLD_OVER = 3 * KEEP  # a run of bulk packets longer than this is folded
BULK_FLAGS = frozenset({"A", "PA"})


@dataclass(frozen=True)
class Fold:
    """Packets of a flow not drawn: the middle of a run of bulk packets."""

    first: int  # the first folded packet's number in the flow (1-based, as the ladder's #n)
    packets: int  # packets folded (each maybe seen at several hops)
    data: int  # of them, segments that carried data
    payload: int  # bytes of data they carried
    start: float  # capture time of the first folded packet
    end: float  # and of the last

    @property
    def last(self) -> int:
        return self.first + self.packets - 1

    @property
    def acks(self) -> int:
        return self.packets - self.data

    def text(self) -> str:
        """One line, e.g. ``12,345 packets folded (#17 to #12,361): 8,230 data segments
        (11.9 MB) and 4,115 ACKs; ...``."""
        return (f"{self.packets:,} packets folded (#{self.first:,} to #{self.last:,}): "
                f"{self.data:,} data segment{'s' * (self.data != 1)} "
                f"({_bytes(self.payload)}) and {self.acks:,} ACK{'s' * (self.acks != 1)}; "
                "the pcaps hold every packet")


def _bytes(n: int) -> str:
    for div, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def is_bulk(trail: Trail, sent: Counter[Key],
            checked: Callable[[Trail], bool]) -> bool:
    """A data segment or ACK, sent once, that no check names."""
    p = trail.first.pkt
    return (p.proto == "tcp" and p.flags in BULK_FLAGS and not p.is_fragment
            and sent[trail.key] == 1 and not checked(trail))


def fold_trails(trails: list[Trail], checked: Callable[[Trail], bool]) -> list[Trail | Fold]:
    """``trails`` in order, each run of more than :data:`FOLD_OVER` bulk packets with
    its middle replaced by one :class:`Fold`."""
    sent = Counter(t.key for t in trails)
    out: list[Trail | Fold] = []
    run: list[tuple[int, Trail]] = []

    def flush() -> None:
        if len(run) > FOLD_OVER:
            middle = [t for _, t in run[KEEP:-KEEP]]
            out.extend(t for _, t in run[:KEEP])
            out.append(Fold(
                first=run[KEEP][0] + 1, packets=len(middle),
                data=sum(1 for t in middle if t.payload_len > 0),
                payload=sum(t.payload_len for t in middle),
                start=middle[0].time, end=middle[-1].time))
            out.extend(t for _, t in run[-KEEP:])
        else:
            out.extend(t for _, t in run)
        run.clear()

    for i, trail in enumerate(trails):
        if is_bulk(trail, sent, checked):
            run.append((i, trail))
            continue
        flush()
        out.append(trail)
    flush()
    return out


__all__ = ["FOLD_OVER", "KEEP", "Fold", "fold_trails", "is_bulk"]
