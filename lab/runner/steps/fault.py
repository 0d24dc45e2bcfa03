"""The fault step: loss or delay on one host's interface, a link down, a pod's server
killed (:mod:`lab.env.faults`), applied for the rest of the scenario's traffic.

A fault step is not undone by the run: it lasts until the lab goes down, and a
lab kept with ``--keep`` keeps it, so the broken state can be looked at in
place (``dsrlab down RUN_ID`` removes it with the namespaces). A fault the
kernel cannot make (a delay without ``sch_netem``) stops the run with
:class:`~lab.env.faults.FaultUnavailable`, its reason in the message: the
scenario cannot mean anything here. The step applies its fault when the steps
before it have ended (no timer: a point in a transfer is ``during:`` a transfer,
the transfer step's, at the body bytes the client received, undone when it ends).
"""

from __future__ import annotations

from lab.env.faults import FaultUnavailable, describe, inject
from lab.model.scenario import Fault
from lab.runner.steps.context import StepContext, StepOutcome


def run(fault: Fault, ctx: StepContext) -> StepOutcome:
    what = describe(fault)
    ctx.say(f"fault: {what}")
    try:
        applied = inject(ctx.lab, fault)
    except FaultUnavailable as exc:
        raise FaultUnavailable(f"{what}: {exc}") from None
    applied.release()  # kept until the lab goes down
    return StepOutcome("fault", f"{applied.what}, for the rest of the run",
                       figures={"fault": what, "mechanism": applied.mechanism})
