"""TCP Fast Open through a load balancer, read from a capture set.

For every connection the client opened to the service, from the capture at
the client and at the node it addressed: the TFO cookie it asked for or sent
(TCP option 34), the backend the node sent the SYN to, and whether the
SYN+ACK acknowledged the SYN's data (accepted: ack = ISN + 1 + data) or only
the SYN (refused: the data is sent again after the handshake), and the
cookie it issued. :func:`tfo_connections` returns them in order;
:func:`cookie_rule_holds` checks the rule a pod's kernel applies, that data
is accepted only with a cookie that pod issued.
"""

from __future__ import annotations

from dataclasses import dataclass

from scapy.layers.inet import IP, TCP
from scapy.packet import Packet
from scapy.utils import PcapReader

from lab.capture.capdir import CaptureDir

TFO_OPTION = 34  # RFC 7413's TCP Fast Open cookie option


@dataclass
class TfoConnection:
    sport: int
    isn: int
    data_len: int  # bytes of data in the SYN
    cookie_sent: bytes | None  # b"" = a cookie request, None = no TFO option
    backend: str | None = None  # where the node addressed sent the SYN
    data_acked: bool | None = None  # the SYN+ACK acknowledged the SYN's data
    cookie_issued: bytes | None = None  # the cookie the SYN+ACK carried

    @property
    def outcome(self) -> str:
        if self.cookie_sent is None:
            return "no Fast Open"
        if self.cookie_sent == b"":
            return "asked for a cookie"
        if self.data_acked:
            return "data accepted in the SYN"
        return "cookie refused: data sent again after the handshake"


def _tfo_cookie(tcp: Packet) -> bytes | None:
    """The TFO option's cookie (b"" for a request), None without the option. scapy
    gives an 8-byte cookie as two 32-bit numbers, others as bytes."""
    for kind, value in tcp.options:
        if kind in ("TFO", TFO_OPTION):
            if isinstance(value, tuple):
                return b"".join(int(v).to_bytes(4, "big") for v in value)
            return bytes(value) if isinstance(value, bytes | bytearray) else b""
    return None


def tfo_connections(cd: CaptureDir) -> list[TfoConnection]:
    svc, client_ip = cd.service, cd.client_ip
    clients = list(cd.by_role("client"))
    lbs = list(cd.by_role("lb-node"))
    if not clients or not svc.ip:
        return []
    conns: dict[int, TfoConnection] = {}
    with PcapReader(str(clients[0].file)) as reader:
        for frame in reader:
            ip, tcp = frame.getlayer(IP), frame.getlayer(TCP)
            if ip is None or tcp is None:
                continue
            flags = int(tcp.flags)
            if (ip.src, ip.dst, tcp.dport) == (client_ip, svc.ip, svc.port) and \
                    flags & 0x12 == 0x02 and int(tcp.sport) not in conns:
                data = bytes(tcp.payload)
                conns[int(tcp.sport)] = TfoConnection(int(tcp.sport), int(tcp.seq), len(data),
                                                      _tfo_cookie(tcp))
            elif (ip.src, tcp.sport, ip.dst) == (svc.ip, svc.port, client_ip) and \
                    flags & 0x12 == 0x12 and int(tcp.dport) in conns:
                conn = conns[int(tcp.dport)]
                if conn.data_acked is None:
                    conn.data_acked = conn.data_len > 0 and \
                        int(tcp.ack) == conn.isn + 1 + conn.data_len
                    conn.cookie_issued = _tfo_cookie(tcp) or None
    if lbs:
        for pkt in cd.packets(lbs[0]):
            c = conns.get(pkt.sport or -1)
            if c is not None and c.backend is None and pkt.syn and pkt.src == client_ip \
                    and pkt.dst != svc.ip:
                c.backend = pkt.dst
    return list(conns.values())  # in the order the client opened them


def cookie_rule_holds(conns: list[TfoConnection]) -> list[str]:
    """Where the capture breaks the rule "a pod accepts SYN data only with a cookie it
    issued" (empty: it holds), following which backend issued each cookie."""
    issuer: dict[bytes, str | None] = {}
    broken = []
    for c in conns:
        if c.cookie_sent and c.data_len:
            own = issuer.get(c.cookie_sent) == c.backend
            if bool(c.data_acked) != own:
                broken.append(f"{c.sport}: cookie from {issuer.get(c.cookie_sent)}, SYN to "
                              f"{c.backend}, data {'accepted' if c.data_acked else 'refused'}")
        if c.cookie_issued:
            issuer[c.cookie_issued] = c.backend
    return broken
