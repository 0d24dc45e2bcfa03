"""What every backend offers: a running lab of named hosts you can run things in.

The scenario runner, captures and traffic only use this interface, so the
same scenario runs on the embedded ``netns`` backend and on ``kind``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal, Protocol

from lab.topology import Topology

HostKind = Literal["client", "node", "pod"]


@dataclass(frozen=True)
class LabHost:
    """One host of a running lab and the interface it has on the lab network."""

    name: str
    kind: HostKind
    ip: IPv4Address
    ifname: str  # client: the bridge; node: eth0; pod: eth0
    netns: str  # the namespace (netns backend) or node container (kind)


class BackendError(RuntimeError):
    """A lab could not be brought up or torn down."""


class Lab(Protocol):
    """A running lab (the result of ``Backend.up``)."""

    backend: str
    run_id: str
    topology: Topology
    hosts: dict[str, LabHost]

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` wrapped so that it runs on ``host``."""
        ...

    def run(
        self, host: str, argv: list[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on ``host`` to completion, capturing text output."""
        ...

    def down(self) -> None:
        """Tear everything down that ``up`` created."""
        ...


class Backend(Protocol):
    name: str

    def up(self, topology: Topology, *, run_id: str | None = None) -> Lab: ...
