"""Real traffic from inside a lab host: curl, one connection per request."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Protocol

_BODY_RE = re.compile(r"PodName: (?P<pod>\S+) \| PodIP: eth0 (?P<ip>[0-9.]+)/32")
_MARK = "\n--dsrlab-- "


class _Runs(Protocol):
    def run(self, host: str, argv: list[str], *, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]: ...


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


def curl_argv(url: str, timeout_s: float) -> list[str]:
    return ["curl", "-sS", "-4", "--noproxy", "*", "--max-time", f"{timeout_s:g}",
            "-w", _MARK + "%{local_port} %{http_code}", url]


def curl(lab: _Runs, host: str, url: str, *, timeout_s: float = 5.0,
         local_port: int | None = None) -> HttpExchange:
    """Run one real ``curl`` on ``host`` (from ``local_port`` when given: the same
    flow tuple again); never raises for a failed request."""
    argv = curl_argv(url, timeout_s)
    if local_port is not None:
        argv[1:1] = ["--local-port", str(local_port)]
    proc = lab.run(host, argv, timeout=timeout_s + 5, check=False)
    body, _, tail = proc.stdout.rpartition(_MARK)
    port = code = None
    parts = tail.split()
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        port, code = int(parts[0]) or None, int(parts[1]) or None
    ok = proc.returncode == 0 and code == 200
    return HttpExchange(url=url, ok=ok, local_port=port, http_code=code,
                        body=body if _MARK in proc.stdout else proc.stdout,
                        error=proc.stderr.strip())


def curl_until(lab: _Runs, host: str, url: str, *, want_pods: set[str], min_requests: int,
               max_requests: int, timeout_s: float = 5.0) -> list[HttpExchange]:
    """Request ``url`` until every pod in ``want_pods`` answered (within the bounds).

    Stops early on a failed request: with DSR broken every later one fails too.
    """
    exchanges: list[HttpExchange] = []
    seen: set[str] = set()
    while len(exchanges) < max_requests:
        ex = curl(lab, host, url, timeout_s=timeout_s)
        exchanges.append(ex)
        if not ex.ok:
            break
        if ex.pod:
            seen.add(ex.pod)
        if len(exchanges) >= min_requests and want_pods <= seen:
            break
    return exchanges
