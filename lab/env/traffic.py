"""Real traffic from inside a lab host: curl, one connection per request; a UDP
datagram from a fresh kernel socket, one flow per datagram. IPv4 or IPv6, as the
address is: an IPv6 one is written ``[addr]:port`` wherever a port follows it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Protocol
from urllib.parse import urlsplit

_BODY_RE = re.compile(r"PodName: (?P<pod>\S+) \| PodIP: eth0 (?P<ip>[0-9.]+)/32")
_MARK = "\n--dsrlab-- "


class _Runs(Protocol):
    def run(self, host: str, argv: list[str], *, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]: ...

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int) -> subprocess.Popen[bytes]: ...


class Watch(Protocol):
    """What tells a running request's fate early (:class:`lab.runner.steps.doom.Doom`)."""

    def reason(self) -> str | None:
        """Why the request cannot succeed, once a sign shows it (else None)."""
        ...

    @property
    def local_port(self) -> int | None:
        """The client's port of the request, as the watch saw it leave."""
        ...


StopWhen = Callable[[], str | None]
POLL_S = 0.02  # how often a watched request's signs are read


def run_until(lab: _Runs, host: str, argv: list[str], *, timeout: float,
              stop_when: StopWhen | None) -> tuple[subprocess.CompletedProcess[str], str | None]:
    """Run ``argv`` on ``host`` as :meth:`run` does (never raising for its exit), but
    stop it as soon as ``stop_when()`` gives a reason: the process, and that reason
    (None when it ended by itself)."""
    if stop_when is None:
        return lab.run(host, argv, timeout=timeout, check=False), None
    proc = lab.start(host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + timeout
    why = None
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                why = stop_when()
                if why is not None or time.monotonic() > end:
                    proc.kill()
                    out, err = proc.communicate()
                    break
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace")), why


@dataclass(frozen=True)
class HttpExchange:
    """One curl request: where it came from, what answered."""

    url: str
    ok: bool
    local_port: int | None
    http_code: int | None
    body: str
    error: str

    @property
    def pod(self) -> str | None:
        m = _BODY_RE.search(self.body)
        return m["pod"] if m else None


def hostport(ip: str, port: int) -> str:
    """``ip:port``, or ``[ip]:port`` for an IPv6 address (as URLs and sockets' peers
    are written)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def http_url(ip: str, port: int, path: str = "/") -> str:
    """``http://ip:port/path``, an IPv6 address in brackets."""
    return f"http://{hostport(ip, port)}{path}"


def curl_argv(url: str, timeout_s: float, *, options: Sequence[str] = (),
              write_out: str = "") -> list[str]:
    """curl quiet but for errors, in the URL's address family (``-4``, or ``-6`` for an
    IPv6 address), no proxy, within ``timeout_s``, its local port and HTTP code (then
    ``write_out``'s fields) after a mark at the end of its output."""
    family = "-6" if ":" in (urlsplit(url).hostname or "") else "-4"
    return ["curl", "-sS", family, "--noproxy", "*", "--max-time", f"{timeout_s:g}",
            "-w", f"{_MARK}%{{local_port}} %{{http_code}}{' ' if write_out else ''}{write_out}",
            *options, url]


@dataclass(frozen=True)
class CurlOutput:
    """What :func:`curl_argv`'s command printed, split at its mark."""

    body: str
    local_port: int | None
    http_code: int | None
    fields: list[str]  # the write-out's further fields

    @classmethod
    def parse(cls, stdout: str) -> CurlOutput:
        if _MARK not in stdout:
            return cls(stdout, None, None, [])
        body, _, tail = stdout.rpartition(_MARK)
        parts = tail.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            return cls(body, int(parts[0]) or None, int(parts[1]) or None, parts[2:])
        return cls(body, None, None, [])


def curl(lab: _Runs, host: str, url: str, *, timeout_s: float = 5.0,
         local_port: int | None = None, watch: Watch | None = None) -> HttpExchange:
    """Run one real ``curl`` on ``host`` (from ``local_port`` when given: the same
    flow tuple again); never raises for a failed request. ``watch``: stopped (and
    failed) as soon as it sees a sign that the request cannot succeed."""
    options = ["--local-port", str(local_port)] if local_port is not None else []
    argv = curl_argv(url, timeout_s, options=options)
    proc, why = run_until(lab, host, argv, timeout=timeout_s + 5,
                          stop_when=watch.reason if watch is not None else None)
    if why is not None and watch is not None:
        return HttpExchange(url=url, ok=False, local_port=watch.local_port, http_code=None,
                            body="", error=stopped_error(why))
    out = CurlOutput.parse(proc.stdout)
    ok = proc.returncode == 0 and out.http_code == 200
    return HttpExchange(url=url, ok=ok, local_port=out.local_port, http_code=out.http_code,
                        body=out.body, error=proc.stderr.strip())


def stopped_error(why: str) -> str:
    """An exchange's error when it was stopped at a sign of its failure."""
    return f"stopped: {why}"


# one datagram from a fresh socket (a new flow each time), its answer printed; the
# address family is the destination's (an IPv6 peer printed [addr]:port)
_UDP_ONCE = """
import socket, sys
six = ":" in sys.argv[1]
s = socket.socket(socket.AF_INET6 if six else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[4]))
s.bind(("", 0))
port = s.getsockname()[1]
s.sendto(f"{sys.argv[3]} {port}".encode(), (sys.argv[1], int(sys.argv[2])))
print(port, flush=True)
data, peer = s.recvfrom(65535)
print(f"[{peer[0]}]:{peer[1]}" if six else f"{peer[0]}:{peer[1]}", flush=True)
sys.stdout.write(data.decode(errors="replace"))
"""


def udp_exchange(lab: _Runs, host: str, ip: str, port: int, *, payload: str = "ping",
                 timeout_s: float = 5.0, watch: Watch | None = None) -> HttpExchange:
    """One real datagram from ``host`` to ``ip:port`` (a kernel UDP socket in the host's
    namespace) and its answer; ``ok`` when the answer came from ``ip:port`` itself.
    The datagram says ``PAYLOAD SPORT``: unique per flow, so a trace can follow it
    across a SNAT, which changes both addresses and ports. ``watch`` as for
    :func:`curl`."""
    proc, why = run_until(lab, host, [sys.executable, "-c", _UDP_ONCE, ip, str(port),
                                      payload, f"{timeout_s:g}"],
                          timeout=timeout_s + 5,
                          stop_when=watch.reason if watch is not None else None)
    lines = proc.stdout.split("\n", 2)
    local = int(lines[0]) if lines[0].isdigit() else None
    if why is not None:
        return HttpExchange(url=f"udp://{hostport(ip, port)}", ok=False, local_port=local,
                            http_code=None, body="", error=stopped_error(why))
    peer = lines[1] if len(lines) > 1 else ""
    body = lines[2] if len(lines) > 2 else ""
    ok = proc.returncode == 0 and peer == hostport(ip, port)
    error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else (
        "" if ok else f"answer from {peer or 'nobody'}, not {hostport(ip, port)}")
    return HttpExchange(url=f"udp://{hostport(ip, port)}", ok=ok, local_port=local, http_code=None,
                        body=body, error=error)


# IPv4 packets (hex, one an argument) written through a raw socket, as they are
_RAW_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for h in sys.argv[1:]:
    pkt = bytes.fromhex(h)
    s.sendto(pkt, (socket.inet_ntoa(pkt[16:20]), 0))
"""


def send_raw(lab: _Runs, host: str, packets: list[bytes]) -> None:
    """Send IPv4 packets from ``host`` exactly as given (a raw socket in its
    namespace: the kernel adds no header and changes nothing)."""
    lab.run(host, [sys.executable, "-c", _RAW_SEND, *(p.hex() for p in packets)], timeout=30)


def exchange_until(send: Callable[[], HttpExchange], *, want_pods: set[str],
                   min_requests: int, max_requests: int) -> list[HttpExchange]:
    """``send()`` until every pod in ``want_pods`` answered (within the bounds).

    Stops early on a failed exchange: with DSR broken every later one fails too.
    """
    exchanges: list[HttpExchange] = []
    seen: set[str] = set()
    while len(exchanges) < max_requests:
        ex = send()
        exchanges.append(ex)
        if not ex.ok:
            break
        if ex.pod:
            seen.add(ex.pod)
        if len(exchanges) >= min_requests and want_pods <= seen:
            break
    return exchanges


def curl_until(lab: _Runs, host: str, url: str, *, want_pods: set[str], min_requests: int,
               max_requests: int, timeout_s: float = 5.0) -> list[HttpExchange]:
    """:func:`curl` ``url`` until every pod in ``want_pods`` answered (within the bounds)."""
    return exchange_until(lambda: curl(lab, host, url, timeout_s=timeout_s),
                          want_pods=want_pods, min_requests=min_requests,
                          max_requests=max_requests)
