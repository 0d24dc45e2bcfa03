"""(being written)"""

from __future__ import annotations

from typing import Any

from lab.runner.steps import StepContext, StepOutcome


def run(step: Any, ctx: StepContext) -> StepOutcome:
    raise NotImplementedError("datagram")
