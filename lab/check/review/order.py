"""Which byte order a DSR option is in, when the file gives no evidence."""

from __future__ import annotations

from lab.wire import dsropt
from lab.wire.dsropt import OptionOrder
from lab.wire.endpoint import Endpoint


def plausibility(ip: str, port: int) -> int:
    """How plausible ``ip``:``port`` is as a service (higher is more).

    Private, shared (CGNAT) addresses and NodePort-range or well-known ports
    score up; 0.x, loopback, multicast/reserved, .0/.255 hosts and port 0
    score down. The Lua dissector uses the same rule.
    """
    a, b, _c, d = (int(x) for x in ip.split("."))
    s = 0
    if a == 10 or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168) or (
            a == 100 and 64 <= b <= 127):
        s += 2
    if a in (0, 127) or a >= 224:
        s -= 3
    if d in (0, 255):
        s -= 1
    if port == 0:
        s -= 3
    if 30000 <= port <= 32767:
        s += 1
    if 1 <= port <= 1023:
        s += 1
    return s


def plausible_order(opt: bytes) -> OptionOrder:
    """The byte order whose reading of ``opt`` is more plausible; host on a tie."""
    (h_ip, h_port, _), (n_ip, n_port, _) = dsropt.decode_any(opt)
    return "host" if plausibility(h_ip, h_port) >= plausibility(n_ip, n_port) else "network"


_READINGS: dict[bytes, tuple[Endpoint, Endpoint]] = {}


def option_readings(opt: bytes) -> tuple[Endpoint, Endpoint]:
    """The option's (host, network) readings; cached, most flows share a few options."""
    got = _READINGS.get(opt)
    if got is None:
        if len(_READINGS) > 100_000:
            _READINGS.clear()
        (h_ip, h_port, _), (n_ip, n_port, _) = dsropt.decode_any(opt)
        got = _READINGS[opt] = (Endpoint(h_ip, h_port), Endpoint(n_ip, n_port))
    return got
