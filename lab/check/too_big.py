"""Why a packet to the service went no further than the node the client addressed:
too big for the DSR option.

A rule over a capture set, beside :mod:`lab.check.diagnose`'s: a TCP SYN or
UDP datagram from the client that reached that node and left it neither
forwarded nor answered, whose length plus the 8-byte option passes the MTU the
manifest records (or 1500, said as an assumption, when it records none), is
named with its figures (the length, what the option would make it, the MTU)
when no ICMP fragmentation-needed went back: the client is never told, which
turns every packet of that size into a black hole. With the ICMP error (DSR
ICMP errors on) the client's kernel adapts and nothing is broken: no line.

IPv6 alike, with the 24-byte Destination Options header for the option and
ICMPv6 Packet Too Big (type 2 code 0) for the error.
"""

from __future__ import annotations

from lab.capture.capdir import CaptureDir
from lab.check.diagnosis import Diagnosis
from lab.wire.dsropt import EXT6_LEN, OPT_LEN, hostport
from lab.wire.packets import Pkt

ASSUMED_MTU = 1500


def diagnose_too_big(cd: CaptureDir) -> list[Diagnosis]:
    svc, client_ip = cd.service, cd.client_ip
    lbs = list(cd.by_role("lb-node"))
    if not svc.ip or not lbs:
        return []
    lb = lbs[0]
    seen = cd.packets(lb)
    mtu = cd.manifest.mtu or ASSUMED_MTU
    said_mtu = f"the MTU {mtu}" if cd.manifest.mtu else f"an MTU of {mtu} (assumed)"
    found: dict[str, Diagnosis] = {}
    for i, p in enumerate(seen):
        grows = EXT6_LEN if p.family == 6 else OPT_LEN
        if not _first_packet(p, client_ip, svc.ip, svc.port) or p.ip_len + grows <= mtu:
            continue
        if p.has_dsr_option:
            continue
        later = seen[i + 1:]
        if any(_forwarded(q, p) for q in later):
            continue
        error = (2, 0) if p.family == 6 else (3, 4)
        icmp = next((q for q in later if (q.icmp_type, q.icmp_code) == error
                     and q.quoted is not None and q.quoted[3] == p.sport), None)
        what = "SYN" if p.proto == "tcp" else "datagram"
        carrier = ("24-byte DSR Destination Options header" if p.family == 6
                   else "8-byte DSR option")
        head = (f"{lb.host} did not forward a {p.ip_len}-byte {what} from the client: "
                f"with the {carrier} it would be "
                f"{p.ip_len + grows} bytes, over {said_mtu}")
        if icmp is not None:
            continue  # told: the client's path MTU adapts
        cause = "too-big-silent"
        if cd.manifest.dsr_icmp_errors is False:
            line = (f"{head}; DSR ICMP errors are off, so the client is never told and "
                    f"every {what} of that size is lost (turn them on, or lower the MTU "
                    "the client uses)")
        else:
            told = "ICMPv6 Packet Too Big" if p.family == 6 else "ICMP fragmentation-needed"
            line = f"{head}; no {told} went back, so the client is never told"
        d = found.setdefault(line, Diagnosis(cause, line))
        flow = hostport(p.src, p.sport)
        if flow not in d.flows:
            d.flows.append(flow)
    return sorted(found.values(), key=lambda d: -len(d.flows))


def _first_packet(p: Pkt, client_ip: str, svc_ip: str, svc_port: int) -> bool:
    """A packet that would carry the option: a SYN or a datagram, client to service."""
    if (p.src, p.dst, p.dport) != (client_ip, svc_ip, svc_port):
        return False
    return p.syn if p.proto == "tcp" else p.proto == "udp"


def _forwarded(q: Pkt, p: Pkt) -> bool:
    """``q`` is ``p`` sent on (DNATed, any size): the client's source port kept, to
    anywhere but the service address; a SYN as a SYN (a TFO SYN's data, sent again
    in the established connection's first segment, is not the SYN forwarded)."""
    return (q.src, q.sport, q.proto) == (p.src, p.sport, p.proto) and q.dst != p.dst and (
        q.payload_len == p.payload_len) and q.syn == p.syn
