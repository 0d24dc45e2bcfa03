"""A scenario's traffic, step by step: requests, crafted packets, a replayed pcap,
UDP datagrams of a size, TCP transfers, faults.

Each kind of step is a module with a ``run(step, ctx)`` that returns a
:class:`StepOutcome`: what was sent, what came back, in words and figures.
:func:`run_steps` runs a scenario's steps in order within its deadline; a
step still running at the deadline is stopped (its processes are killed by
PID) and the outcome says so, so the captures so far are still checked.
"""

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


def run_steps(ctx: StepContext) -> list[StepOutcome]:
    """Every step of the scenario in order; stops at the deadline (the outcome of
    the step it stopped says so) and after a step that timed out."""
    # each step's tools load on use
    from lab.runner.steps import crafted  # noqa: PLC0415
    from lab.runner.steps.datagram import run as datagram  # noqa: PLC0415
    from lab.runner.steps.fault import run as fault  # noqa: PLC0415
    from lab.runner.steps.requests import run as requests  # noqa: PLC0415
    from lab.runner.steps.transfer import run as transfer  # noqa: PLC0415

    runners: dict[str, Callable[[Any, StepContext], StepOutcome]] = {
        "requests": requests, "send": crafted.run_send, "replay": crafted.run_replay,
        "datagram": datagram, "transfer": transfer, "fault": fault,
    }
    outcomes: list[StepOutcome] = []
    for i, step in enumerate(ctx.scenario.traffic_steps()):
        kind = step_kind(step)
        t = time.monotonic()
        try:
            ctx.left()
            out = runners[kind](getattr(step, kind), ctx)
        except StepTimeout:
            out = StepOutcome(kind, f"stopped at the scenario's deadline "
                              f"({ctx.scenario.deadline_s:g} s)", ok=False, timed_out=True)
        out.seconds = time.monotonic() - t
        outcomes.append(out)
        ctx.say(f"step {i + 1} ({kind}): {out.summary}")
        if out.timed_out:
            break
    return outcomes
