"""An IP address and a port: the lab's one endpoint type.

Review, the datapath runner and the trace checker all name a service,
backend or client this way and print it as ``172.18.0.2:32000``, or for
IPv6 with the address in brackets, ``[fd00::2]:32000`` (RFC 3986's form).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

EXAMPLES = "e.g. 172.18.0.2:32000 or [fd00::2]:32000"


class Endpoint(NamedTuple):
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``"172.18.0.2:32000"`` or ``"[fd00::2]:32000"`` -> Endpoint; ValueError with
        the reason otherwise.

        Refuses what cannot be a service or backend: the unspecified,
        broadcast and multicast addresses, and port 0. An IPv6 address must be
        in brackets (its own colons would hide the port's).
        """
        raw = text.strip()
        if raw.startswith("["):
            close = raw.find("]")
            host, sep, port_text = raw[:close + 1], raw[close + 1:close + 2], raw[close + 2:]
            if close < 0:
                host, sep, port_text = raw, ":", "?"  # the bracket check below names it
            elif sep != ":" or not port_text:
                raise ValueError(f"{text!r} is not IP:PORT ({EXAMPLES})")
        else:
            host, sep, port_text = raw.rpartition(":")
        if not sep or not host or not port_text:
            raise ValueError(f"{text!r} is not IP:PORT ({EXAMPLES})")
        if host.startswith("[") or host.endswith("]"):
            if not (host.startswith("[") and host.endswith("]")) or len(host) < 3:
                raise ValueError(f"{text!r}: brackets must enclose an IPv6 address "
                                 f"([ADDR]:PORT)")
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address
            try:
                addr = ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise ValueError(f"{text!r}: {host[1:-1]!r} is not an IPv6 address") from None
            if addr.scope_id is not None:
                raise ValueError(f"{text!r}: a zone (%...) cannot name a service or backend")
            bad = addr.is_unspecified or addr.is_multicast
        elif ":" in host:
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets, [ADDR]:PORT "
                             f"({EXAMPLES})")
        else:
            try:
                addr = ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{text!r}: {host!r} is not an IPv4 address") from None
            bad = (addr.is_unspecified or addr.is_multicast
                   or addr == ipaddress.IPv4Address(0xFFFFFFFF))
        if bad:
            raise ValueError(f"{text!r}: {addr} cannot be a service or backend address")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 0xFFFF:
            raise ValueError(f"{text!r}: port {port_text!r} is not in 1..65535")
        return cls(str(addr), int(port_text))
