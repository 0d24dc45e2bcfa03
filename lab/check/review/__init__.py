"""Review any capture for DSR flows and broken DSR replies.

:func:`review` walks a pcap or pcapng file once (see :mod:`lab.wire.pcapread`;
no scapy) and returns a :class:`ReviewResult`:

* the DSR flows: a TCP SYN or a UDP datagram whose FIRST IPv4 option is the
  DSR option (type 0x9a, length 8), in either byte order; or that carries the
  IPv6 DSR Destination Option (0x1b, length 20); or that travels Geneve
  encapsulated (UDP 6081) with Cilium's DSR option (class 0x014b, type 0x81),
  the flow then being the inner packet's; the flow is (client ip:port ->
  backend ip:port), the service is what the carrier names;
* per flow, the replies seen: from the service address (rewritten, as DSR
  wants), or from the backend's own address to the client (not rewritten:
  the classic broken-DSR symptom), and the client's packets to the service
  itself (the LB node's side, before the DNAT);
* findings: a reply not rewritten, a flow with no reply in the file, the
  option on a TCP packet without SYN, the option present but not first (a
  Cilium backend only reads the first option), a 0x9a option of the wrong
  length, a SYN on a DSR flow's 4-tuple without the option (Cilium clears
  the flow's DSR state).

Only what can matter is decoded: IPv4 packets with options, and TCP/UDP
packets to or from a DSR client's address (looked up by 4-tuple). Link
types: Ethernet (VLAN tags skipped), Linux cooked SLL and SLL2 (``tcpdump
-i any``), raw IP and BSD loopback.

Which byte order a flow's option is in is decided by evidence when the
file has any (replies from, or client packets to, one reading's ip:port),
else by the other flows of the file, else by :func:`plausible_order`; the
other reading is always kept (``other_reading``).

Where the capture was taken changes what is expected: at a pod, replies
leave with the pod's address (the node rewrites them later); at the LB
node, no reply passes. Pass ``role`` (the manifest's roles are used by
:func:`review_paths`); without it the file itself is used as evidence (a
reply's TTL still at 64/128/255 was not routed yet: pod side; client
packets to the service: the LB node's side).

The stages: :mod:`.walk` (the one pass over the file), :mod:`.decide`
(byte order, status and findings per flow), :mod:`.model` (the records),
:mod:`.order` (plausibility), :mod:`.inputs` (files and capture sets).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from lab.capture.layout import ROLES, Role
from lab.check.review.decide import INITIAL_TTLS, flows_and_findings
from lab.check.review.inputs import Target, targets
from lab.check.review.model import (
    DsrFlow,
    Finding,
    FindingKind,
    FlowStatus,
    OrderBasis,
    Proto,
    ReviewError,
    ReviewResult,
    Severity,
)
from lab.check.review.order import plausibility, plausible_order
from lab.check.review.walk import PROGRESS_EVERY, WalkState, walk_capture
from lab.wire import dsropt
from lab.wire.dsropt import OptionOrder
from lab.wire.endpoint import Endpoint
from lab.wire.pcapread import LINKTYPE_NAMES, CaptureFile, PcapError

__all__ = [
    "INITIAL_TTLS",
    "PROGRESS_EVERY",
    "DsrFlow",
    "Endpoint",
    "Finding",
    "FindingKind",
    "FlowStatus",
    "OrderBasis",
    "PcapError",
    "Proto",
    "ReviewError",
    "ReviewResult",
    "Severity",
    "Target",
    "plausibility",
    "plausible_order",
    "review",
    "review_paths",
    "targets",
]


def review(path: str | Path, *, order: OptionOrder | None = None, role: Role | None = None,
           point: str | None = None, partial: bool = False,
           progress: Callable[[int, int], None] | None = None) -> ReviewResult:
    """Review one pcap/pcapng file for DSR flows and broken DSR replies.

    ``order`` forces the option's byte order (default: decided per flow,
    see the module doc). ``role`` says where the capture was taken (it
    changes what is expected, see the module doc). ``partial`` reviews the
    packets before a truncated end instead of raising. ``progress`` is
    called now and then with (bytes done, file size).

    Raises :class:`~lab.wire.pcapread.PcapError` (file and byte offset in the
    message) for anything that is not a readable capture.
    """
    if order is not None and order not in dsropt.ORDERS:
        raise ValueError(f"order must be one of {dsropt.ORDERS}, not {order!r}")
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    t0 = time.perf_counter()
    # the walk allocates many small acyclic objects (keys, flows): the cyclic GC
    # would only rescan them over and over
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _review(path, t0, order=order, role=role, point=point, partial=partial,
                       progress=progress)
    finally:
        if gc_was_enabled:
            gc.enable()


def _review(path: str | Path, t0: float, *, order: OptionOrder | None,
            role: Role | None, point: str | None, partial: bool,
            progress: Callable[[int, int], None] | None) -> ReviewResult:
    w = WalkState()
    truncated_at: int | None = None
    with CaptureFile(path) as cap:
        size = cap.size
        cb = None if progress is None else (lambda done: progress(done, size))
        try:
            walk_capture(cap, w, cb)
        except PcapError as exc:
            if not (partial and exc.truncated):
                raise
            truncated_at = exc.offset
        flows, findings = flows_and_findings(w, cap, order, role)
        if progress is not None:
            progress(size, size)
        return ReviewResult(
            path=str(path),
            format=cap.format,
            linktypes=sorted(_linktype_name(lt) for lt in cap.linktypes),
            role=role,
            point=point,
            packets=w.packets,
            ipv4_packets=w.ipv4,
            option_packets=w.option_packets,
            flows=flows,
            findings=findings,
            skipped_linktypes={_linktype_name(k): v for k, v in sorted(w.skipped.items())},
            truncated_at=truncated_at,
            seconds=time.perf_counter() - t0,
            ipv6_packets=w.ipv6,
        )


def _linktype_name(lt: int) -> str:
    return LINKTYPE_NAMES.get(lt, f"linktype {lt}")


def review_paths(paths: Iterable[str | Path], *, order: OptionOrder | None = None,
                 role: Role | None = None, partial: bool = False,
                 ) -> list[ReviewResult | PcapError]:
    """:func:`review` for files and capture directories; a bad file gives its error.

    ``role`` applies to files whose role no manifest gives.
    """
    results: list[ReviewResult | PcapError] = []
    for t in targets(paths):
        try:
            results.append(review(t.path, order=order, role=t.role or role, point=t.point,
                                  partial=partial))
        except PcapError as exc:
            results.append(exc)
    return results
