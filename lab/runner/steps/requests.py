"""The requests step: curl (TCP) or one datagram per flow (UDP) until every backend
the node can reach answered, within the scenario's bounds."""

from __future__ import annotations

import functools
from collections.abc import Callable

from lab.env.traffic import HttpExchange, curl, exchange_until, http_url, udp_exchange
from lab.model.scenario import Requests
from lab.runner.steps.context import StepContext, StepOutcome


def run(req: Requests, ctx: StepContext) -> StepOutcome:
    timeout = min(req.timeout_s, ctx.left())
    send: Callable[[], HttpExchange]
    if ctx.protocol == "UDP":
        what = f"UDP datagrams to {ctx.endpoint}"
        send = functools.partial(udp_exchange, ctx.lab, ctx.client, ctx.ip, ctx.port,
                                 timeout_s=timeout, watch=ctx.doom)
    else:
        url = http_url(ctx.ip, ctx.port)
        what = f"curl {'-6 ' if ctx.family == 'IPv6' else ''}{url}"
        send = functools.partial(curl, ctx.lab, ctx.client, url,
                                 timeout_s=timeout, watch=ctx.doom)
    ctx.say(f"{what} from {ctx.client}")
    sc, topo = ctx.scenario, ctx.topology
    # the pods that can answer: with externalTrafficPolicy=Local, the node's own
    reachable = {p.name for p in topo.backends_from(sc.target.service, sc.target.node)}
    want = reachable if req.until_every_backend else set()

    def bounded() -> HttpExchange:
        ctx.left()  # StepTimeout past the deadline
        if ctx.doom is not None:
            ctx.doom.arm()  # this request's signs only
        return send()

    exchanges = exchange_until(bounded, want_pods=want, min_requests=req.min,
                               max_requests=req.max)
    ok = [e for e in exchanges if e.ok]
    pods = sorted({e.pod for e in ok if e.pod})
    return StepOutcome("requests", f"{what}: {len(ok)}/{len(exchanges)} answered"
                       + (f" (by {', '.join(pods)})" if pods else ""),
                       ok=len(ok) == len(exchanges), exchanges=exchanges,
                       figures={"sent": len(exchanges), "answered": len(ok)})
