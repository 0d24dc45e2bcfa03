"""What a review reports: :class:`DsrFlow`, :class:`Finding`, :class:`ReviewResult`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from lab.capture.layout import Role
from lab.errors import LabError
from lab.wire.dsropt import Dispatch, OptionOrder
from lab.wire.endpoint import Endpoint

Severity = Literal["error", "warning", "info"]
FindingKind = Literal[
    "not-rewritten", "pod-side-reply", "no-reply", "option-not-syn", "option-not-first",
    "option-bad-length", "syn-without-option",
]
FlowStatus = Literal["rewritten", "not-rewritten", "pod-side", "lb-node", "no-reply"]
# "carrier": the IPv6 option and the Geneve option have one byte order (network)
OrderBasis = Literal["forced", "replies", "frontend", "file", "plausible", "carrier"]
Proto = Literal["tcp", "udp"]

SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


class ReviewError(LabError, ValueError):
    """An input that cannot be reviewed (not a pcap, a directory without a manifest)."""


@dataclass(slots=True)
class DsrFlow:
    """One DSR flow: client -> backend, carrying an option naming ``service``."""

    proto: Proto
    client: Endpoint
    backend: Endpoint  # the option-carrying packet's destination (after the DNAT)
    service: Endpoint  # the option, read in ``order``
    order: OptionOrder
    order_basis: OrderBasis
    other_reading: Endpoint  # the option read in the other byte order
    option_hex: str
    first_frame: int  # 1-based, as Wireshark numbers frames
    first_time: float
    option_packets: int  # packets of the flow carrying the option
    to_backend_packets: int  # client -> backend packets, with or without the option
    frontend_packets: int  # client -> service packets (the LB node's side)
    rewritten_replies: int  # service -> client
    unrewritten_replies: int  # backend -> client
    first_unrewritten_frame: int | None
    first_unrewritten_ttl: int | None
    status: FlowStatus
    note: str
    family: int = 4  # the service's: 4 or 6
    dispatch: Dispatch = "opt"  # opt: an IP option (0x9a, IPv6 0x1b); geneve: Geneve's

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        for k in ("client", "backend", "service", "other_reading"):
            e = d[k]
            d[k] = {"ip": e.ip, "port": e.port}
        return d


@dataclass(slots=True)
class Finding:
    kind: FindingKind
    severity: Severity
    frame: int
    message: str
    flow: int | None = None  # index into ReviewResult.flows


@dataclass(frozen=True)
class ReviewResult:
    path: str
    format: str
    linktypes: list[str]
    role: Role | None
    point: str | None  # the capture point's name when a manifest names the file
    packets: int
    ipv4_packets: int
    # packets carrying a DSR carrier (any protocol): the first IPv4 option 0x9a length 8,
    # the IPv6 destination option 0x1b, the Geneve option (class 0x014b type 0x81)
    option_packets: int
    flows: list[DsrFlow]
    findings: list[Finding]
    skipped_linktypes: dict[str, int]  # packets of link types not decoded
    truncated_at: int | None  # byte offset where a truncated file ended (partial=True)
    seconds: float
    ipv6_packets: int = 0

    @property
    def services(self) -> dict[str, list[DsrFlow]]:
        """Flows by service ``ip:port``."""
        out: dict[str, list[DsrFlow]] = {}
        for f in self.flows:
            out.setdefault(f"{f.proto}/{f.service}", []).append(f)
        return out

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (endpoints as {"ip", "port"}); built by hand, it is fast."""
        statuses: dict[str, int] = {}
        for f in self.flows:
            statuses[f.status] = statuses.get(f.status, 0) + 1
        return {
            "path": self.path, "format": self.format, "linktypes": self.linktypes,
            "role": self.role, "point": self.point, "packets": self.packets,
            "ipv4_packets": self.ipv4_packets, "ipv6_packets": self.ipv6_packets,
            "option_packets": self.option_packets,
            "counts": {s: self.count(s) for s in ("error", "warning", "info")},
            "statuses": statuses,
            "flows": [f.to_dict() for f in self.flows],
            "findings": [{"kind": x.kind, "severity": x.severity, "frame": x.frame,
                          "message": x.message, "flow": x.flow} for x in self.findings],
            "skipped_linktypes": self.skipped_linktypes, "truncated_at": self.truncated_at,
            "seconds": self.seconds,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
