"""Packets the kernel would not send: built with scapy (``send``) or read from a pcap
file (``replay``), written from the client through a raw socket as they are."""

from __future__ import annotations

from lab.env.traffic import send_raw
from lab.model.scenario import CraftedPacket, Replay
from lab.runner.steps import StepContext, StepOutcome
from lab.wire.packets import crafted_ipv4


def run_send(packets: list[CraftedPacket], ctx: StepContext) -> StepOutcome:
    ctx.say(f"sending {len(packets)} crafted packets to {ctx.ip}:{ctx.port}")
    send_raw(ctx.lab, ctx.client, [crafted_ipv4(
        src=ctx.client_ip, dst=ctx.ip, dport=ctx.port, sport=c.sport, flags=c.flags,
        seq=c.seq, ack=c.ack, ip_options=c.ip_options, payload=c.payload.encode())
        for c in packets])
    shown = ", ".join(f"{c.flags or '.'} from :{c.sport}" for c in packets[:4])
    more = f" and {len(packets) - 4} more" if len(packets) > 4 else ""
    return StepOutcome("send", f"{len(packets)} crafted packets sent ({shown}{more})",
                       figures={"sent": len(packets)})


def run_replay(replay: Replay, ctx: StepContext) -> StepOutcome:
    raise NotImplementedError("replay")
