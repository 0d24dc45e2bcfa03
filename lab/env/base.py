"""The backend contract: what the scenario runner, captures and traffic use of a lab.

A :class:`Backend` brings a :class:`~lab.model.topology.Topology` up and
returns a running :class:`Lab`: named hosts (client, nodes, pods), each
with the interface to capture on; a way to run a command on a host to
completion (``run``) or to start one that keeps running (``start``, e.g.
tcpdump writing a pcap to its stdout); and teardown (``down``, or leave it
up with ``detach``). ``netns`` implements it; ``kind`` implements the same,
so a scenario runs unchanged on either.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Literal, Protocol, runtime_checkable

from lab.errors import LabError

if TYPE_CHECKING:  # annotations only: `dsrlab down`/`clean` need not load pydantic models
    from lab.capture.dpevents import DatapathEvents
    from lab.model.topology import Topology

HostKind = Literal["client", "node", "pod"]
LeftBy = Literal["up", "keep"]  # what left a lab up: dsrlab up, dsrlab run --keep


@dataclass(frozen=True)
class LabHost:
    """One host of a running lab and the interface it has on the lab network."""

    name: str
    kind: HostKind
    ip: IPv4Address
    ifname: str  # where to capture: client: the bridge; node: eth0; pod: eth0
    netns: str  # the namespace (netns backend) or node container (kind)


class BackendError(LabError, RuntimeError):
    """A lab could not be brought up or torn down."""


@runtime_checkable
class Lab(Protocol):
    """A running lab (what ``Backend.up`` returns); a context manager that tears it down."""

    backend: str
    run_id: str
    topology: Topology
    hosts: dict[str, LabHost]

    def run(self, host: str, argv: list[str], *, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on ``host`` to completion, capturing text output."""
        ...

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int) -> subprocess.Popen[bytes]:
        """Start ``argv`` on ``host`` and return at once (stdin is closed)."""
        ...

    def datapath_record(self) -> dict[str, str]:
        """Which datapath the nodes run, for the manifest (``name``: ``lab`` or
        ``cilium``; ``version``, ``commit``, ``source_sha256`` where known)."""
        ...

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Return once the pods answer (``up`` may return before their servers do);
        traffic waits for it, so no request's timeout counts a server's start."""
        ...

    def down(self) -> None:
        """Tear everything down that ``up`` created."""
        ...

    def detach(self, *, by: LeftBy = "up") -> Path:
        """Leave the lab running for ``dsrlab down RUN_ID``; returns its state file.
        ``by`` says what left it up (``up``: ``dsrlab up``; ``keep``: ``run --keep``)."""
        ...

    def __enter__(self) -> Lab: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


@runtime_checkable
class StopsPods(Protocol):
    """A lab that can stop one pod's server while the others go on (a fault: the
    serving pod killed mid-transfer). ``netns`` can; a lab that cannot is not one."""

    def stop_pod_server(self, pod: str) -> None:
        """Stop serving ``pod``: it stops listening and its connections drop."""
        ...


@runtime_checkable
class ReportsDatapathEvents(Protocol):
    """A lab whose nodes' datapath says what it dropped (and, for Cilium, traced):
    the run keeps it in the capture set (``datapath-events.json``). ``netns`` does;
    a kind cluster's agent has its own (``cilium monitor``)."""

    def open_datapath_events(self) -> None:
        """Keep what the datapath says from now on."""
        ...

    def datapath_events(self) -> DatapathEvents | None:
        """What it said since :meth:`open_datapath_events` (None: nothing to say)."""
        ...


class Backend(Protocol):
    """Brings topologies up as running labs."""

    name: str

    def up(self, topology: Topology, *, run_id: str | None = None) -> Lab: ...
