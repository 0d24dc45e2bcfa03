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
from typing import Any

from lab.runner.steps import crafted
from lab.runner.steps.context import (
    Progress,
    StepContext,
    StepOutcome,
    StepTimeout,
    step_kind,
)
from lab.runner.steps.datagram import run as datagram
from lab.runner.steps.fault import run as fault
from lab.runner.steps.requests import run as requests
from lab.runner.steps.transfer import run as transfer

__all__ = ["Progress", "StepContext", "StepOutcome", "StepTimeout", "run_steps", "step_kind"]


def run_steps(ctx: StepContext) -> list[StepOutcome]:
    """Every step of the scenario in order; stops at the deadline (the outcome of
    the step it stopped says so) and after a step that timed out."""
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
