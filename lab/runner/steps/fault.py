"""Faults on purpose: loss or delay on one host's interface, a link down, a pod's
server killed."""

from __future__ import annotations

from lab.model.scenario import Fault
from lab.runner.steps import StepContext, StepOutcome


def run(fault: Fault, ctx: StepContext) -> StepOutcome:
    raise NotImplementedError("fault")
