"""Packets the kernel would not send: built with scapy (``send``) or read from a pcap
file (``replay``), written from the client through a raw socket as they are."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

from lab.env.traffic import send_raw
from lab.errors import LabError
from lab.model.scenario import CraftedPacket, Replay, Scenario
from lab.runner.steps.context import StepContext, StepOutcome
from lab.wire.crafted import crafted_ipv4
from lab.wire.endpoint import Endpoint
from lab.wire.replay import Rewrite, plan_replay

# hex characters per raw-socket process: well inside the kernel's argument limits
# (one argument at most 128 KiB, all of them together a quarter of the stack limit)
_BATCH_HEX = 1 << 20


def run_send(packets: list[CraftedPacket], ctx: StepContext) -> StepOutcome:
    ctx.say(f"sending {len(packets)} crafted packets to {ctx.endpoint}")
    send_raw(ctx.lab, ctx.client, [crafted_ipv4(
        src=ctx.client_ip, dst=ctx.ip, dport=ctx.port, sport=c.sport, flags=c.flags,
        seq=c.seq, ack=c.ack, ip_options=c.ip_options, payload=c.payload.encode())
        for c in packets])
    shown = ", ".join(f"{c.flags or '.'} from :{c.sport}" for c in packets[:4])
    more = f" and {len(packets) - 4} more" if len(packets) > 4 else ""
    return StepOutcome("send", f"{len(packets)} crafted packets sent ({shown}{more})",
                       figures={"sent": len(packets)})


def replay_path(replay: Replay, scenario: Scenario) -> Path:
    """The step's pcap file: relative to the scenario file (or the working directory),
    inside the folders a scenario may name (:meth:`Scenario.file_path`)."""
    return scenario.file_path("replay.pcap", replay.pcap)


def check_replays(scenario: Scenario) -> None:
    """Every ``replay`` step's file read as the step will read it, without a lab: a
    missing, unreadable or empty capture is a :class:`LabError` naming it, before
    anything is brought up (for the runner to call before ``Backend.up``)."""
    for step in scenario.traffic_steps():
        replay = getattr(step, "replay", None)
        if isinstance(replay, Replay):
            plan_replay(replay_path(replay, scenario), limit=replay.limit)


def batches(packets: list[bytes], limit: int = _BATCH_HEX) -> Iterator[list[bytes]]:
    """``packets`` in order, in runs whose hex form stays within ``limit`` characters
    (a packet larger than that is a run of its own)."""
    run: list[bytes] = []
    size = 0
    for p in packets:
        if run and size + 2 * len(p) > limit:
            yield run
            run, size = [], 0
        run.append(p)
        size += 2 * len(p)
    if run:
        yield run


def run_replay(replay: Replay, ctx: StepContext) -> StepOutcome:
    """The client's packets of the step's pcap (see :mod:`lab.wire.replay`), moved onto
    the lab's client and service unless ``rewrite: false``, sent from the client.

    A file that cannot be read, holds nothing to replay, or whose service speaks
    another protocol than the scenario's target port is a :class:`LabError` naming
    it (raised before anything is sent).
    """
    path = replay_path(replay, ctx.scenario)
    rewrite = Rewrite(ctx.client_ip, Endpoint(ctx.ip, ctx.port)) if replay.rewrite else None
    plan = plan_replay(path, rewrite=rewrite, limit=replay.limit)
    if rewrite is not None and plan.proto != ctx.protocol.lower():
        raise LabError(f"{path}: the capture's service {plan.service} is {plan.proto.upper()}, "
                       f"the scenario's target port {ctx.endpoint} is {ctx.protocol}")
    ctx.say(f"replaying {len(plan.packets)} packets of {path.name} from {ctx.client} "
            f"({plan.describe()})")
    sent = 0
    for batch in batches(plan.packets):
        ctx.left()  # StepTimeout past the deadline
        try:
            send_raw(ctx.lab, ctx.client, batch)
        except subprocess.CalledProcessError as exc:
            why = (exc.stderr or "").strip().splitlines()
            raise LabError(f"{path}: replay from {ctx.client} failed after {sent} packets: "
                           f"{why[-1] if why else exc}") from None
        sent += len(batch)
    return StepOutcome("replay", f"{sent} packets of {path.name} replayed ({plan.describe()}; "
                       f"skipped: {plan.skipped_text()})",
                       figures={"sent": sent, "pcap": str(path), "skipped": plan.skipped,
                                "client": plan.client, "service": str(plan.service),
                                "rewritten": rewrite is not None})
