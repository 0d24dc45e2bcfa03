"""The transfer step: TCP transfers with real curl, N bytes down (``GET /bytes/N``)
or up (``POST``), optionally with TCP Fast Open, with faults injected at given times
while the transfer runs.

curl runs as its own process on the client (started, not waited on), so a fault
can hit the flow mid-way; every wait has a deadline (the transfer's timeout and
the scenario's), and a curl still running then is killed by its PID.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from lab.env.traffic import CurlOutput, HttpExchange, curl_argv
from lab.model.scenario import Fault, Transfer
from lab.plumbing import runtags
from lab.runner.steps import StepContext, StepOutcome

CURL_TIMED_OUT = 28  # curl's exit status when --max-time ran out
# curl's own figures after the transfer
_FIGURES = "%{size_download} %{size_upload} %{time_total}"


def transfer_argv(ctx: StepContext, spec: Transfer, timeout_s: float,
                  body: Path | None = None) -> list[str]:
    """The client's command: curl, quiet but for errors, with its figures at the end."""
    base = f"http://{ctx.ip}:{ctx.port}"
    options = ["--tcp-fastopen"] if spec.tcp_fastopen else []
    if spec.direction == "download":
        paced = f"?rate={spec.rate}" if spec.rate else ""
        return curl_argv(f"{base}/bytes/{spec.bytes}{paced}", timeout_s,
                         options=[*options, "-o", str(body or "/dev/null")],
                         write_out=_FIGURES)
    if spec.rate:
        options += ["--limit-rate", str(spec.rate)]
    # POST N zero bytes read from a pipe (curl sends a Content-Length for @-)
    curl = curl_argv(f"{base}/upload", timeout_s, write_out=_FIGURES, options=[
        *options, "--data-binary", "@-", "-H", "Content-Type: application/octet-stream"])
    return ["sh", "-c", f"head -c {spec.bytes} /dev/zero | {shlex.join(curl)}"]


def _faults_at(ctx: StepContext, faults: list[Fault], stop: threading.Event,
               undos: list[Callable[[], None]], said: list[str], *,
               started: Callable[[], bool]) -> None:
    """Inject each fault ``after_s`` seconds into the transfer unless stopped first.

    The clock starts when ``started()`` says the transfer is moving (a download: its
    first body bytes arrived), not when curl was launched: a process's start, a
    handshake, seconds on a slow machine or under emulation, are not the transfer.
    """
    from lab.env.faults import FaultUnavailable, describe, inject  # noqa: PLC0415

    while not started():
        if stop.wait(0.005):
            return
    waited = 0.0
    for fault in sorted(faults, key=lambda f: f.after_s):
        if stop.wait(max(0.0, fault.after_s - waited)):
            return
        waited = fault.after_s
        try:
            undos.append(inject(ctx.lab, fault))
            said.append(f"at {fault.after_s:g} s: {describe(fault)}")
        except FaultUnavailable as exc:
            said.append(f"at {fault.after_s:g} s: {describe(fault)} unavailable: {exc}")


def _body_arrived(body: Path) -> Callable[[], bool]:
    def arrived() -> bool:
        try:
            return body.stat().st_size > 0
        except OSError:
            return False
    return arrived


def _one(ctx: StepContext, spec: Transfer
         ) -> tuple[HttpExchange, dict[str, float], list[str], bool]:
    """One transfer; (its exchange, curl's figures, what the faults did, whether the
    scenario's deadline ended it: curl's own time limit cut to the deadline ran out, or
    curl had to be killed)."""
    capped = ctx.left() < spec.timeout_s
    timeout = min(spec.timeout_s, ctx.left())
    # a download's body goes to a file of ours (shared with the client's namespace),
    # whose first bytes start the faults' clock; an upload's clock starts at once
    watched = spec.direction == "download" and bool(spec.during)
    # named by the run id (dsrlab-<run id>-transfer-*): a killed run's is found by clean
    tmp = runtags.scratch_dir(ctx.lab.run_id, "transfer") if watched else None
    body_file = tmp / "body" if tmp is not None else None
    started = _body_arrived(body_file) if body_file is not None else (lambda: True)
    argv = transfer_argv(ctx, spec, timeout, body_file)
    proc = ctx.lab.start(ctx.client, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()
    undos: list[Callable[[], None]] = []
    said: list[str] = []
    injector = threading.Thread(target=_faults_at, args=(ctx, spec.during, stop, undos, said),
                                kwargs={"started": started}, name="dsrlab-faults", daemon=True)
    if spec.during:
        injector.start()
    killed = False
    try:
        out_b, err_b = proc.communicate(timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        killed = True
        proc.kill()  # by PID: this curl only
        out_b, err_b = proc.communicate()
    finally:
        stop.set()
        if spec.during:
            injector.join()
        for undo in reversed(undos):
            with contextlib.suppress(Exception):
                undo()
        if tmp is not None:
            runtags.remove_dir(tmp)
    out = CurlOutput.parse(out_b.decode(errors="replace"))
    err = err_b.decode(errors="replace").strip()
    ok = proc.returncode == 0 and out.http_code == 200 and not killed
    killed = killed or (capped and proc.returncode == CURL_TIMED_OUT)
    error = err.splitlines()[-1] if err else ("killed at the deadline" if killed else "")
    ex = HttpExchange(url=argv[-1] if argv[0] == "curl" else f"POST {spec.bytes} bytes",
                      ok=ok, local_port=out.local_port, http_code=out.http_code,
                      body=out.body, error=error)
    return ex, curl_figures(out.fields), said, killed


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
    ctx.say(f"{what} from {ctx.client} via {ctx.ip}:{ctx.port}"
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
