"""The fault step: loss or delay on one host's interface, a link down, a pod's server
killed (:mod:`lab.env.faults`), applied for the rest of the scenario's traffic.

A fault step is not undone by the run: it lasts until the lab goes down, and a
lab kept with ``--keep`` keeps it, so the broken state can be looked at in
place (``dsrlab down RUN_ID`` removes it with the namespaces). A fault the
kernel cannot make (a delay without ``sch_netem``) stops the run with
:class:`~lab.env.faults.FaultUnavailable`, its reason in the message: the
scenario cannot mean anything here. Faults within a transfer (``during:``) are
the transfer step's, undone when it ends.
"""

from __future__ import annotations

import time

from lab.env.faults import FaultUnavailable, describe, inject
from lab.model.scenario import Fault
from lab.runner.steps import StepContext, StepOutcome, StepTimeout


def run(fault: Fault, ctx: StepContext) -> StepOutcome:
    if fault.after_s:
        if fault.after_s >= ctx.left():
            raise StepTimeout
        time.sleep(fault.after_s)
    what = describe(fault)
    ctx.say(f"fault: {what}")
    try:
        applied = inject(ctx.lab, fault)
    except FaultUnavailable as exc:
        raise FaultUnavailable(f"{what}: {exc}") from None
    applied.release()  # kept until the lab goes down
    return StepOutcome("fault", f"{applied.what}, for the rest of the run",
                       figures={"fault": what, "mechanism": applied.mechanism,
                                "after_s": fault.after_s})
