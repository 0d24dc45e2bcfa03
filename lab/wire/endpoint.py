"""An IPv4 address and a port: the lab's one endpoint type.

Review, the datapath runner and the trace checker all name a service,
backend or client this way and print it as ``172.18.0.2:32000``.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class Endpoint(NamedTuple):
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``"172.18.0.2:32000"`` -> Endpoint; ValueError with the reason otherwise.

        Refuses what cannot be a service or backend: the unspecified,
        broadcast and multicast addresses, and port 0.
        """
        host, sep, port_text = text.strip().rpartition(":")
        if not sep or not host or not port_text:
            raise ValueError(f"{text!r} is not IPV4:PORT (e.g. 172.18.0.2:32000)")
        try:
            addr = ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv4 address") from None
        if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address(0xFFFFFFFF):
            raise ValueError(f"{text!r}: {addr} cannot be a service or backend address")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 0xFFFF:
            raise ValueError(f"{text!r}: port {port_text!r} is not in 1..65535")
        return cls(str(addr), int(port_text))
