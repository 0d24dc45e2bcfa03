"""``manifest.json``: the typed record of a capture set, written and read by one model.

The live capture (:mod:`lab.capture.live`) writes it; the trace checker,
the report and ``dsrlab review`` read it through :class:`Manifest`. Facts
other than the capture points may be missing (captures brought from a real
cluster may not know the service's backends): they read as ``""`` or 0,
and whoever needs one says so. Fields the model does not know are kept, so
a trace may name any list the manifest holds (``one_of: backends``).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab.atomic import write_text
from lab.capture.layout import MANIFEST, CaptureError, Role
from lab.model.errors import validation_message
from lab.model.yamldoc import MAX_DEPTH, read_document, too_deep
from lab.wire.dsropt import OptionOrder


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ManifestService(_Part):
    """The service the client addressed."""

    ip: str = ""
    port: int = 0
    name: str = ""
    protocol: str = "TCP"

    @property
    def endpoint(self) -> str:
        """``ip:port``, ``[ip]:port`` for an IPv6 address."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def proto(self) -> str:
        """Lower case, as packets name it: ``tcp`` or ``udp``."""
        return self.protocol.lower()


class ManifestClient(_Part):
    ip: str = ""


class ManifestBackend(_Part):
    """One of the service's pods."""

    name: str = ""
    ip: str = ""
    port: int = 0
    node: str = ""


class ManifestDatapath(_Part):
    """Which datapath made the capture set: the lab's own model or Cilium's programs."""

    name: str = ""  # "lab" (bpf/dsr.c), "cilium"; "" = not said (the lab's, before 0.2)
    version: str = ""  # Cilium's tag, e.g. v1.13.0
    commit: str = ""
    source_sha256: str = ""  # of the Cilium bpf/ sources built

    def describe(self) -> str:
        if self.name != "cilium":
            return "the lab's datapath (bpf/dsr.c)"
        commit = f" ({self.commit[:12]})" if self.commit else ""
        return f"Cilium {self.version}{commit}"


class ManifestPoint(_Part):
    """One capture point: a host's interface, its role in the flow, its pcap file."""

    name: str
    host: str
    ifname: str
    role: Role
    file: str  # relative to the capture directory, inside it
    packets: int | None = None  # tcpdump's "captured" count, when it printed one
    received: int | None = None  # tcpdump's "received by filter": what the kernel gave it
    dropped: int | None = None  # tcpdump's "dropped by kernel": packets the pcap lacks

    @property
    def missing(self) -> int:
        """Packets that passed the filter but are not in the pcap: dropped by the kernel,
        or still unread when tcpdump was stopped."""
        unread = (self.received - self.packets) if (
            self.received is not None and self.packets is not None) else 0
        return (self.dropped or 0) + max(0, unread)

    @field_validator("file")
    @classmethod
    def _inside(cls, value: str) -> str:
        """A plain relative path: no absolute path, no ``..``, nothing empty.
        (Symbolic links leading out are :meth:`CaptureDir.load`'s to refuse.)"""
        p = PurePosixPath(value)
        if not value or value in (".",) or "\0" in value:
            raise ValueError("must name a file inside the capture directory")
        if p.is_absolute() or ".." in p.parts:
            raise ValueError("must be a path inside the capture directory "
                             "(no absolute path, no '..')")
        return value


class Manifest(_Part):
    """Everything a capture set's readers need to know about the run."""

    scenario: str = ""
    run_id: str = ""
    backend: str = ""
    topology: str = ""
    # the address family the client used: every address below is of it (the same
    # names in either, so one trace reads both)
    family: Literal["IPv4", "IPv6"] = "IPv4"
    service: ManifestService = ManifestService()
    client: ManifestClient = ManifestClient()
    option_byte_order: OptionOrder = "host"
    # how remote backends got the service port's traffic: dsr or snat ("" = not said,
    # a capture set from before the lab had modes: DSR)
    forwarding: Literal["", "dsr", "snat"] = ""
    lb_mode: str = ""  # the topology's loadBalancer.mode (snat, dsr, hybrid)
    settings: dict[str, Any] = {}  # the scenario's settings applied to the topology
    # the MTU the DSR option must fit in at the node addressed, and whether a packet
    # too big for it is answered with ICMP fragmentation-needed (None: not known)
    mtu: int | None = None
    dsr_icmp_errors: bool | None = None
    # whether a datagram's later fragments are translated with its first (None: not known)
    fragment_tracking: bool | None = None
    backends: list[ManifestBackend] = []
    datapath: ManifestDatapath = ManifestDatapath()
    points: list[ManifestPoint] = Field(default_factory=list)

    def named_list(self, name: str) -> list[dict[str, Any]] | None:
        """A list of records the manifest holds under ``name`` (known field or extra)."""
        value = self.model_dump(mode="json").get(name)
        if not isinstance(value, list):
            return None
        return [v for v in value if isinstance(v, dict)]

    def value(self, key: str) -> Any:
        """A top-level value by name (known field or extra), ``None`` when absent."""
        return self.model_dump(mode="json").get(key)

    # -- on disk -------------------------------------------------------------
    @classmethod
    def read(cls, directory: str | Path) -> Manifest:
        path = Path(directory) / MANIFEST
        text = read_document(path, CaptureError, "manifest")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            why = exc if isinstance(exc, ValueError) else "nested too deeply"
            raise CaptureError(f"{path}: cannot read manifest: {why}") from None
        if not isinstance(data, dict):
            got = "null" if data is None else type(data).__name__
            raise CaptureError(f"{path}: (top level): expected an object, got {got}")
        if too_deep(data):
            raise CaptureError(f"{path}: cannot read manifest: nested more than "
                               f"{MAX_DEPTH} levels deep")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise CaptureError(validation_message(path, exc, cls)) from None

    def write(self, directory: str | Path) -> Path:
        """Write ``manifest.json`` whole (a temporary file renamed over it)."""
        path = Path(directory) / MANIFEST
        return write_text(path, self.model_dump_json(indent=2) + "\n")
