"""What every traffic step gets and gives: :class:`StepContext` (the lab, the
scenario, the address called, the deadline) and :class:`StepOutcome` (what it did).
A module of its own so the step modules and :func:`lab.runner.steps.run_steps`,
which imports them, import these without a cycle."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.env import Lab
from lab.env.traffic import HttpExchange, hostport
from lab.model.scenario import Scenario, Step
from lab.model.topology import Topology
from lab.runner.addresses import Family, host_address
from lab.runner.steps.doom import Doom

Progress = Callable[[str], None]


class StepTimeout(Exception):
    """The scenario's deadline passed while a step ran."""


@dataclass
class StepContext:
    """What every step needs: the lab, the scenario, the address the client calls
    (in the scenario's family: ``ip`` is an IPv6 address in an IPv6 run)."""

    lab: Lab
    scenario: Scenario
    topology: Topology
    ip: str  # the node address the client calls
    port: int  # the node port
    protocol: str  # TCP or UDP
    deadline: float  # time.monotonic() by which traffic must end
    say: Progress
    family: Family = "IPv4"
    # stops a request at the first sign that it cannot succeed (None: at its time limit)
    doom: Doom | None = None
    # the same for one datagram of a datagram step: any drop is its end (none resends it)
    datagram_doom: Doom | None = None

    @property
    def client(self) -> str:
        return self.scenario.client

    @property
    def client_ip(self) -> str:
        return host_address(self.lab, self.client, self.family)

    @property
    def endpoint(self) -> str:
        """``ip:port`` the client calls, ``[ip]:port`` in IPv6."""
        return hostport(self.ip, self.port)

    def left(self) -> float:
        """Seconds until the deadline; :class:`StepTimeout` once it passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StepTimeout
        return left


@dataclass
class StepOutcome:
    """What one step did, for the run's output, ``steps.json`` and the report."""

    kind: str
    summary: str  # one line: what was sent and what came of it
    ok: bool = True  # the traffic did what it was asked (a failure scenario may expect not)
    exchanges: list[HttpExchange] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    timed_out: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary, "ok": self.ok,
                "timed_out": self.timed_out, "seconds": round(self.seconds, 3),
                "figures": self.figures,
                "exchanges": [{"ok": e.ok, "local_port": e.local_port, "pod": e.pod,
                               "http_code": e.http_code, "error": e.error}
                              for e in self.exchanges]}


def step_kind(step: Step) -> str:
    return next(iter(step.model_dump()))
