"""The datagram step: UDP datagrams of one size from one kernel socket, path-MTU
discovery on (``IP_PMTUDISC_DO``: DF set, never fragmented by the sender), the way
a DNS or QUIC client sends them.

When an answer does not come and the socket learned a smaller path MTU (the
kernel took it from an ICMP fragmentation-needed: ``EMSGSIZE`` on the socket,
``IP_MTU`` lowered), the datagram is sent again at the largest size that fits,
as an application that handles ``EMSGSIZE`` does. With ``allow_fragments`` the
socket is left to Linux's default for UDP (``IP_PMTUDISC_WANT``): a datagram
over the path MTU leaves in fragments, and it is sent again at its own size,
which the kernel then cuts at the lowered path MTU. With ``answer_size`` each
datagram asks the pod for an answer of that many bytes (over the MTU it comes
back in fragments), and a datagram counts as answered only when all of them
arrived. The outcome lists, per datagram, its size, who answered (and how many
bytes) or the error, and the path MTU after it. An IPv6 run does the same over an
``AF_INET6`` socket (``IPV6_MTU_DISCOVER``, 48 bytes of headers; only the sender
ever fragments in IPv6).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from lab.env.traffic import POLL_S, HttpExchange, stopped_error
from lab.model.scenario import Datagram
from lab.runner.steps.context import StepContext, StepOutcome

IPV4_UDP_HEADERS = 28

# runs on the client: one connected socket, DF on every datagram, JSON lines out
_SCRIPT = r"""
import errno, json, signal, socket, sys
ip, port, size, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), float(sys.argv[5])

class Stopped(Exception):
    pass

waiting = False

def stop(signum, frame):  # SIGUSR1: the lab saw this datagram's fate; stop waiting
    if waiting:
        raise Stopped

signal.signal(signal.SIGUSR1, stop)
watched = sys.argv[8] == "1"  # the lab watches each datagram: it says go (SIGUSR2)
if watched:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})

def go():
    if watched:
        print(json.dumps({"ready": True}), flush=True)
        signal.sigtimedwait({signal.SIGUSR2}, 5.0)
ask = f" answer {sys.argv[6]}" if sys.argv[6] != "-" else ""
fragments = sys.argv[7] == "1"
PMTUDISC_WANT, PMTUDISC_DO = 1, 2
if ":" in ip:  # IPv6: IPV6_MTU_DISCOVER, IPV6_MTU; 40 + 8 bytes of headers
    FAMILY, LEVEL, MTU_DISCOVER, MTU, HEADERS = socket.AF_INET6, socket.IPPROTO_IPV6, 23, 24, 48
else:  # IP_MTU_DISCOVER, IP_MTU; 20 + 8
    FAMILY, LEVEL, MTU_DISCOVER, MTU, HEADERS = socket.AF_INET, socket.IPPROTO_IP, 10, 14, 28
s = socket.socket(FAMILY, socket.SOCK_DGRAM)
s.setsockopt(LEVEL, MTU_DISCOVER, PMTUDISC_WANT if fragments else PMTUDISC_DO)
s.connect((ip, port))
s.settimeout(timeout)
local = s.getsockname()[1]

def one(n, retry):
    rec = {"size": n, "ip_len": n + HEADERS, "retry": retry, "local_port": local}
    body = f"dsrlab {local} {n}{ask}\n".encode()
    go()
    try:
        s.send(body + bytes(max(0, n - len(body))))
    except OSError as e:
        rec["error"] = errno.errorcode.get(e.errno, str(e.errno))
    if "error" not in rec:
        global waiting
        try:
            waiting = True
            data = s.recv(65535)
            waiting = False
            line, _, rest = data.partition(b"\n")
            rec["answer"] = line.decode(errors="replace")
            rec["answer_bytes"] = len(rest)
        except Stopped:
            rec["error"] = "stopped"
        except socket.timeout:
            rec["error"] = "timeout"
        except OSError as e:
            rec["error"] = errno.errorcode.get(e.errno, str(e.errno))
        finally:
            waiting = False
    rec["path_mtu"] = s.getsockopt(LEVEL, MTU)
    print(json.dumps(rec), flush=True)
    return rec

for _ in range(count):
    rec = one(size, False)
    if "answer" not in rec and rec["path_mtu"] < size + HEADERS:
        # the application sends again: the same datagram, which the kernel now cuts at
        # the path MTU, or (DF) one that fits it
        one(size if fragments else rec["path_mtu"] - HEADERS, True)
"""


def run(spec: Datagram, ctx: StepContext) -> StepOutcome:
    asked = "" if spec.answer_size is None else f", each asking {spec.answer_size} bytes back"
    how = "fragmented over the path MTU" if spec.allow_fragments else "DF"
    ctx.say(f"{spec.count} UDP datagram(s) of {spec.size} bytes ({how}) from {ctx.client} to "
            f"{ctx.endpoint}{asked}")
    budget = min(ctx.left(), spec.count * 2 * spec.timeout_s + 5)
    argv = [sys.executable, "-c", _SCRIPT, ctx.ip, str(ctx.port), str(spec.size),
            str(spec.count), f"{spec.timeout_s:g}",
            "-" if spec.answer_size is None else str(spec.answer_size),
            "1" if spec.allow_fragments else "0"]
    out, err, signs = _run_watched(ctx, argv, budget)
    records: list[dict[str, Any]] = []
    for line in out.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "size" in rec:  # not a "ready" line
            records.append(rec)
    for n, rec in enumerate(records):  # what stopped a datagram's wait, in the lab's words
        if rec.get("error") == "stopped" and n in signs:
            rec["error"] = stopped_error(signs[n])
    exchanges = [HttpExchange(url=f"udp://{ctx.endpoint} ({r['size']} bytes)",
                              ok="answer" in r, local_port=r.get("local_port"),
                              http_code=None, body=r.get("answer", "") + "\n",
                              error=r.get("error", "")) for r in records]
    words = [f"{r['size']} B -> " + (f"answered ({r['answer'].split(' | ')[0]}"
                                      + _answer_size(r, spec) + ")"
                                      if "answer" in r else r.get("error", "?"))
             + f", path MTU {r['path_mtu']}" for r in records]
    if not records:
        words = [err.strip().splitlines()[-1] if err.strip() else "no output"]
    # a datagram is answered when it, or the same datagram sent again (fragmented at the
    # lowered path MTU), got the whole answer; one cut down to fit is another datagram
    answered = [r for r in records if "answer" in r and r["size"] == spec.size
                and (spec.answer_size is None or r["answer_bytes"] == spec.answer_size)]
    return StepOutcome("datagram", "; ".join(words), ok=len(answered) == spec.count,
                       exchanges=exchanges, figures={"datagrams": records})


def _answer_size(rec: dict[str, Any], spec: Datagram) -> str:
    if spec.answer_size is None:
        return ""
    got = rec.get("answer_bytes", 0)
    return f", {got} of {spec.answer_size} bytes" if got != spec.answer_size else \
        f", {got} bytes"


def _run_watched(ctx: StepContext, argv: list[str],
                 budget: float) -> tuple[str, str, dict[int, str]]:
    """The script's output and errors, the datagrams watched one by one: before each
    it says it is ready and waits for the go (SIGUSR2), given once the watch is armed;
    while it waits for an answer, a sign of the datagram's fate
    (:attr:`StepContext.datagram_doom`: a drop of any kind, an answer from elsewhere)
    stops the wait (SIGUSR1). Also the signs, by datagram (0 the first sent)."""
    doom = ctx.datagram_doom
    if doom is None:
        done = ctx.lab.run(ctx.client, [*argv, "0"], timeout=budget, check=False)
        return done.stdout, done.stderr, {}
    proc = ctx.lab.start(ctx.client, [*argv, "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert proc.stdout is not None
    out, signs, stopping, sent = bytearray(), dict[int, str](), True, -1
    end = time.monotonic() + budget
    fd = proc.stdout.fileno()
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], POLL_S)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # the script is done
                out += chunk
                if out.endswith(b'{"ready": true}\n'):  # about to send: signs from here
                    doom.arm()
                    stopping, sent = False, sent + 1
                    proc.send_signal(signal.SIGUSR2)
            elif not stopping and (why := doom.reason()) is not None:
                signs[sent] = why
                stopping = True
                proc.send_signal(signal.SIGUSR1)
        else:
            proc.kill()
        rest, err = proc.communicate(timeout=5)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return (bytes(out) + rest).decode(errors="replace"), err.decode(errors="replace"), signs
