"""The transfer step: TCP transfers with real curl, N bytes down (``GET /bytes/N``)
or up (``POST``), optionally with TCP Fast Open; a download with faults injected at
points of its progress.

curl runs as its own process on the client (started, not waited on), so a fault
can hit the flow mid-way; every wait has a deadline (the transfer's timeout and
the scenario's), and a curl still running then is killed by its PID.

Nothing here races a timer against the traffic. A fault ``during`` a download comes
when the body bytes the client received reach its ``after_bytes`` (curl writes the
body to a file of ours; its size is the client's progress; a scenario leaves the
transfer far more bytes than that, so that a machine too loaded to run this thread
in time still has the fault land mid-way). Once every fault is in place the client
gives up after ``give_up_s`` without a new body byte (a stall counted from the
fault, never from the transfer's start). A transfer that completed waits for its
connection to close on both sides (a FIN lost to a lossy link is sent again: the
capture then holds it), within a bound.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.env.traffic import CurlOutput, HttpExchange, curl_argv, http_url
from lab.model.scenario import Fault, Transfer
from lab.plumbing import runtags
from lab.runner.steps.context import StepContext, StepOutcome

CURL_TIMED_OUT = 28  # curl's exit status when --max-time ran out
# curl's own figures after the transfer
_FIGURES = "%{size_download} %{size_upload} %{time_total}"
WATCH_S = 0.002  # how often the body's size is read while a fault waits for it
POLL_S = 0.05  # how often the step looks at curl and at the body's size otherwise
CLOSE_MAX_S = 8.0  # how long a completed transfer's connection may take to close
# the client's socket states of a connection that is over (ss's names)
_CLOSED_STATES = ("TIME-WAIT",)


def transfer_argv(ctx: StepContext, spec: Transfer, timeout_s: float,
                  body: Path | None = None) -> list[str]:
    """The client's command: curl, quiet but for errors, with its figures at the end."""
    base = http_url(ctx.ip, ctx.port, "")
    options = ["--tcp-fastopen"] if spec.tcp_fastopen else []
    if spec.direction == "download":
        paced = f"?rate={spec.rate}" if spec.rate else ""
        # a body watched for progress is written as it comes (--no-buffer: nothing held
        # in curl's stdio buffer, so its size is what the client received, even after
        # the step stopped curl)
        watched = ["--no-buffer", "-o", str(body)] if body is not None else ["-o", "/dev/null"]
        return curl_argv(f"{base}/bytes/{spec.bytes}{paced}", timeout_s,
                         options=[*options, *watched], write_out=_FIGURES)
    if spec.rate:
        options += ["--limit-rate", str(spec.rate)]
    # POST N zero bytes read from a pipe (curl sends a Content-Length for @-)
    curl = curl_argv(f"{base}/upload", timeout_s, write_out=_FIGURES, options=[
        *options, "--data-binary", "@-", "-H", "Content-Type: application/octet-stream"])
    return ["sh", "-c", f"head -c {spec.bytes} /dev/zero | {shlex.join(curl)}"]


def body_size(body: Path) -> int:
    """The body bytes the client has received so far (what curl wrote)."""
    try:
        return body.stat().st_size
    except OSError:
        return 0


@dataclass
class _Faults:
    """The faults of one download, each injected when the body reaches its
    ``after_bytes``; undone when the transfer ends."""

    ctx: StepContext
    faults: list[Fault]
    body: Path
    stop: threading.Event = field(default_factory=threading.Event)
    undos: list[Callable[[], None]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    in_place: float | None = None  # time.monotonic() once every fault was dealt with

    def run(self) -> None:
        from lab.env.faults import FaultError, FaultUnavailable, describe, inject  # noqa: PLC0415

        for fault in sorted(self.faults, key=lambda f: f.after_bytes or 0):
            want = fault.after_bytes or 0
            while (got := body_size(self.body)) < want:
                if self.stop.wait(WATCH_S):
                    self.said.append(f"{describe(fault)} not applied: the transfer ended "
                                     f"after {got} bytes, before {want}")
                    return
            try:
                self.undos.append(inject(self.ctx.lab, fault))
                self.said.append(f"at {got} bytes received: {describe(fault)}")
            except FaultError as exc:  # said, and the client still gives up in time
                why = "unavailable" if isinstance(exc, FaultUnavailable) else "failed"
                self.said.append(f"at {got} bytes received: {describe(fault)} {why}: {exc}")
        self.in_place = time.monotonic()

    def undo(self) -> None:
        for undo in reversed(self.undos):
            with contextlib.suppress(Exception):
                undo()


@dataclass
class _Stall:
    """How long the body has not grown since the faults were in place."""

    body: Path
    size: int = -1
    since: float = 0.0

    def seconds(self, in_place: float) -> float:
        now, size = time.monotonic(), body_size(self.body)
        if size != self.size:
            self.size, self.since = size, now
        return now - max(self.since, in_place)


def _wait(proc: subprocess.Popen[bytes], timeout: float, faults: _Faults | None,
          give_up_s: float) -> tuple[bytes, bytes, str]:
    """curl's output once it exits, and why the step ended it ("" when it exited of
    itself): "gave-up" (no body byte for ``give_up_s`` after the faults), "killed" (its
    own time limit and more went by)."""
    limit = time.monotonic() + timeout + 5
    stall = _Stall(faults.body) if faults is not None else None
    while True:
        try:
            out_b, err_b = proc.communicate(timeout=POLL_S)
            return out_b, err_b, ""
        except subprocess.TimeoutExpired:
            pass
        if faults is not None and stall is not None and faults.in_place is not None and \
                stall.seconds(faults.in_place) >= give_up_s:
            proc.terminate()  # curl closes its connection as it exits (a FIN)
            why = "gave-up"
        elif time.monotonic() >= limit:
            proc.kill()  # by PID: this curl only
            why = "killed"
        else:
            continue
        out_b, err_b = proc.communicate()
        return out_b, err_b, why


def _wait_closed(ctx: StepContext, local_port: int | None) -> bool:
    """Wait until the client's connection from ``local_port`` is over on both sides
    (gone, or in TIME-WAIT: the peer's FIN came and was acknowledged), up to
    CLOSE_MAX_S and the deadline. A FIN lost on a lossy link is sent again by its
    sender's retransmission timer; the capture then holds it."""
    if local_port is None:
        return False
    until = time.monotonic() + min(CLOSE_MAX_S, max(0.0, ctx.deadline - time.monotonic()))
    while True:
        try:
            got = ctx.lab.run(ctx.client, ["ss", "-Htan", f"sport = :{local_port}"],
                              timeout=5, check=True)
        except (OSError, subprocess.SubprocessError):
            return False  # no ss on this client: nothing to wait with
        states = [line.split()[0] for line in got.stdout.splitlines() if line.strip()]
        if all(s in _CLOSED_STATES for s in states):
            return True
        if time.monotonic() >= until:
            return False
        time.sleep(POLL_S)


def _one(ctx: StepContext, spec: Transfer
         ) -> tuple[HttpExchange, dict[str, float], list[str], bool]:
    """One transfer; (its exchange, curl's figures, what the faults did, whether the
    scenario's deadline ended it: curl's own time limit cut to the deadline ran out, or
    curl had to be killed)."""
    capped = ctx.left() < spec.timeout_s
    timeout = min(spec.timeout_s, ctx.left())
    # a download with faults writes its body to a file of ours (shared with the client's
    # namespace): its size is the client's progress, which the faults wait for; named by
    # the run id (dsrlab-<run id>-transfer-*): a killed run's is found by clean
    tmp = runtags.scratch_dir(ctx.lab.run_id, "transfer") if spec.during else None
    body_file = tmp / "body" if tmp is not None else None
    argv = transfer_argv(ctx, spec, timeout, body_file)
    proc = ctx.lab.start(ctx.client, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    faults = _Faults(ctx, spec.during, body_file) if body_file is not None else None
    injector = threading.Thread(target=faults.run, name="dsrlab-faults",
                                daemon=True) if faults is not None else None
    if injector is not None:
        injector.start()
    got: int | None = None
    try:
        out_b, err_b, why = _wait(proc, timeout, faults, spec.give_up_s)
    finally:
        if faults is not None and injector is not None:
            faults.stop.set()
            injector.join()
            faults.undo()
        if body_file is not None:
            got = body_size(body_file)
        if tmp is not None:
            runtags.remove_dir(tmp)
    out = CurlOutput.parse(out_b.decode(errors="replace"))
    err = err_b.decode(errors="replace").strip()
    killed = why == "killed"
    ok = proc.returncode == 0 and out.http_code == 200 and not why
    killed = killed or (capped and proc.returncode == CURL_TIMED_OUT)
    error = err.splitlines()[-1] if err else (
        "killed at the deadline" if killed else
        f"the client gave up: no byte for {spec.give_up_s:g} s after the faults"
        if why == "gave-up" else "")
    ex = HttpExchange(url=argv[-1] if argv[0] == "curl" else f"POST {spec.bytes} bytes",
                      ok=ok, local_port=out.local_port, http_code=out.http_code,
                      body=out.body, error=error)
    figures = curl_figures(out.fields)
    if not figures and got is not None:  # a curl stopped prints no figures: its body's
        figures = {"downloaded": float(got)}
    if ok:
        figures["closed"] = float(_wait_closed(ctx, out.local_port))
    return ex, figures, faults.said if faults is not None else [], killed


def curl_figures(fields: list[str]) -> dict[str, float]:
    """curl's figures from its write-out (``size_download size_upload time_total``)."""
    if len(fields) != 3:
        return {}
    try:
        return {"downloaded": float(fields[0]), "uploaded": float(fields[1]),
                "seconds": float(fields[2])}
    except ValueError:
        return {}


def run(spec: Transfer, ctx: StepContext) -> StepOutcome:
    what = (f"{spec.direction} of {spec.bytes} bytes"
            + (f" at {spec.rate} B/s" if spec.rate else "")
            + (" with TCP Fast Open" if spec.tcp_fastopen else ""))
    ctx.say(f"{what} from {ctx.client} via {ctx.endpoint}"
            + (f" (x{spec.count})" if spec.count > 1 else ""))
    exchanges: list[HttpExchange] = []
    faults: list[str] = []
    each: list[dict[str, float]] = []
    killed = False
    for _ in range(spec.count):
        ex, figures, said, killed = _one(ctx, spec)
        exchanges.append(ex)
        each.append(figures)
        faults += said
        if killed or not ex.ok:
            break
    ok = sum(e.ok for e in exchanges)
    summary = f"{what}: {ok}/{len(exchanges)} completed"
    failed = next((e for e in exchanges if not e.ok), None)
    if failed is not None:
        summary += f" ({failed.error or f'HTTP {failed.http_code}'})"
    if killed:
        summary += f"; stopped at the scenario's deadline ({ctx.scenario.deadline_s:g} s)"
    if faults:
        summary += "; " + "; ".join(faults)
    return StepOutcome("transfer", summary, ok=ok == len(exchanges), exchanges=exchanges,
                       figures={"completed": ok, "attempted": len(exchanges),
                                "transfers": each, "faults": faults}, timed_out=killed)
