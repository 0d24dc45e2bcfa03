"""The differential fuzz: the datapath fuzzer's frames through the lab's datapath and
Cilium's (``lb``: the NodePort node, one backend), and the known classes of
disagreement, each with its reason read from the code.

Two corpora, one per family (a run holds one family, :class:`RunConfig`): IPv4
(:data:`CONFIG`, the seed's service; every IPv4 family of the fuzzer) and IPv6
(:data:`CONFIG6`, ``[fd00:5::10]:32000`` to ``[fd00:b::5]:80``; the fuzzer's
IPv6 families only: :data:`~tests.datapath.fuzzgen.FAMILIES6`). Geneve dispatch
is not compared: Cilium's tunnel key and Geneve option are skb metadata that a
test run does not return, and this kernel has no Geneve device to carry them.

:data:`CLASSES` names every way the two are known to disagree on this
corpus; :func:`classify` puts a :class:`~lab.datapath.diff.PacketDiff` in one
of them (``None``: unexplained, a finding). A class the lab's datapath fixed
leaves this list, so it comes back as unexplained: a later fragment whose
first was not seen, which Cilium drops (DROP_FRAG_NOT_FOUND) and the lab's
datapath passed to the stack until it dropped it too. The 1.13 TTL on the DSR forward
is not here: it is a documented difference (``KNOWN_DIFFERENCES``), which the
fuzz accepts with ``accept_known`` and the summary still counts.

Kept free of hypothesis (the smoke imports it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from lab.datapath.cilium.source import CiliumSource, CiliumVersion
from lab.datapath.diff import DiffSummary, PacketDiff, diff_frames
from lab.datapath.runner import RunConfig
from lab.wire.endpoint import Endpoint
from lab.wire.pcapio import Frame
from tests.datapath.fuzzgen import FAMILIES6, FrameGenerator, Targets
from tests.seed import CLIENT_IP, CLIENT_PORT, NODE_PORT, POD_IP, POD_PORT, VIP

DIFF_SEED = 2024
# one backend: Cilium picks among several at random
TARGETS = Targets(client=CLIENT_IP, service=(VIP, NODE_PORT), backends=((POD_IP, POD_PORT),),
                  client_ports=tuple(range(CLIENT_PORT, CLIENT_PORT + 4)))
CONFIG = RunConfig("lb", Endpoint(VIP, NODE_PORT), (Endpoint(POD_IP, POD_PORT),))
# the IPv6 run: the fuzzer's IPv6 service and one of its backends
SERVICE6, BACKEND6 = TARGETS.service6, TARGETS.backends6[0]
TARGETS6 = Targets(client=CLIENT_IP, service=(VIP, NODE_PORT),
                   backends=((POD_IP, POD_PORT),), client_ports=TARGETS.client_ports,
                   backends6=(BACKEND6,))
CONFIG6 = RunConfig("lb", Endpoint(*SERVICE6), (Endpoint(*BACKEND6),))
Family = Literal[4, 6]

MALFORMED_DROPS = frozenset({"bad_ihl", "bad_tot_len", "truncated_l4", "bad_version"})
MALFORMED_DROPS6 = frozenset({"truncated_ip", "bad_version", "bad_tot_len", "truncated_l4"})

CLASSES: dict[str, str] = {
    "lab_drops_malformed_ipv4": (
        "the lab's dsr_from_netdev validates IPv4 before anything (version 4, IHL >= 5, "
        "IHL and tot_len inside the buffer, the L4 header inside tot_len: drops bad_version, "
        "bad_ihl, bad_tot_len, truncated_l4); Cilium's cil_from_netdev only checks that a "
        "20-byte header is in the buffer (revalidate_data, bpf/lib/common.h) and passes the "
        "frame to the stack or load-balances it as it reads it"),
    "cilium_drops_beyond_mtu": (
        "a frame longer than the MTU to the service: Cilium's FIB lookup with the MTU check "
        "fails and it drops (DROP_NO_FIB); the lab's datapath passes it to the stack"),
    "ttl_expires": (
        "TTL <= 1 on the forward: the lab's datapath passes it to the stack "
        "(ttl_expired_pass, so the kernel answers ICMP time exceeded); Cilium 1.16 drops it "
        "(DROP_TTL_EXCEEDED from ipv4_l3() in fib_redirect_v4, bpf/lib/fib.h); Cilium 1.13 "
        "does not look at the TTL on the DSR forward and redirects it"),
    "v1_13_option_at_a_fixed_offset": (
        "Cilium 1.13's dsr_set_opt4 (bpf/lib/nodeport.h) reads the TCP flags at "
        "ETH_HLEN + sizeof(struct iphdr), ignoring IP options, so with options it inserts "
        "the DSR option on a non-SYN or leaves it off a SYN, and it has no room check "
        "(1.16: ipv4_hdrlen() and MAX_IPOPTLEN, DROP_CT_INVALID_HDR): with 36-40 option "
        "bytes the IHL wraps past 15 (a corrupt header), where the lab's datapath drops "
        "opt_too_long as 1.16 does"),
    "cilium_option_on_a_later_fragment": (
        "a later fragment of a datagram whose first fragment went through: Cilium (1.13 and "
        "1.16) translates it from its fragment map and dsr_set_opt4 still reads 'TCP flags' "
        "at the L4 offset, which in a later fragment is payload; a SYN bit there puts the "
        "DSR option on the fragment. The lab's datapath translates it without the option "
        "(FRAG_LATER: no L4 header, no flags; bpf/dsr.c parse_fragment)"),
    # IPv6 (CONFIG6)
    "lab_drops_malformed_ipv6": (
        "the lab's dsr_from_netdev validates IPv6 before anything (bpf/lib/parse.h parse6: "
        "the 40-byte header in the frame, version 6, the payload length inside the frame, "
        "the TCP/UDP header or the extension chain inside the payload: drops truncated_ip, "
        "bad_version, bad_tot_len, truncated_l4); Cilium's cil_from_netdev only checks that "
        "40 bytes are there (revalidate_data) and reads the rest as it comes: it passes "
        "the frame to the stack, or load-balances it (a version 5 header, a payload "
        "length beyond the frame)"),
    "lab_refuses_exthdr_to_service": (
        "a packet to the service with extension headers before its TCP/UDP header: the "
        "lab's datapath refuses it (DROP_IPV6_EXTHDR, bpf/dsr.c: translating it would mean "
        "rewriting headers it does not model); Cilium walks the chain (ipv6_hdrlen, "
        "bpf/lib/ipv6.h) and load-balances it, inserting its extension in front of the "
        "others, or (1.13, a chain it reads as no service's) passes it to the stack"),
    "cilium_drops_ipv6_fragment": (
        "a fragment header anywhere in the chain Cilium walks: Cilium (1.13 and 1.16) "
        "drops DROP_FRAG_NOSUPPORT (ipv6_hdrlen, bpf/lib/ipv6.h: no IPv6 fragment "
        "support); the lab's datapath passes it to the stack (a later fragment, or a "
        "first fragment not to a service: EV_PASS_FRAGMENT / EV_PASS_IPV6_EXTHDR)"),
    "cilium_drops_exthdr_chain": (
        "a chain Cilium refuses, DROP_INVALID_EXTHDR from ipv6_hdrlen (bpf/lib/ipv6.h): "
        "next header 59 (no next header) inside the chain, or more extension headers "
        "than its IPV6_MAX_HEADERS; the lab's datapath passes it to the stack (no "
        "TCP/UDP header to a service found within its 4 headers: EV_PASS_OTHER_PROTO / "
        "EV_PASS_IPV6_EXTHDR)"),
    "hop_limit_expires": (
        "hop limit <= 1 on the forward: the lab's datapath passes it to the stack (as "
        "for the IPv4 TTL, so the kernel answers ICMPv6 time exceeded); Cilium (1.13 and "
        "1.16) does not look at the hop limit on its IPv6 DSR forward (no ipv6_l3(), the "
        "documented [IPv6].hlim difference) and redirects it with hop limit 1 or 0"),
    "v1_13_misreads_auth_header": (
        "Cilium 1.13's extension header walks, ipv6_hdrlen (bpf/lib/ipv6.h) and "
        "find_dsr_v6 (bpf/lib/nodeport.h), set nh to the next header before they size "
        "the current one: a header followed by an authentication header is sized as AH "
        "((len + 2) * 4), an AH as an option header ((len + 1) * 8), so the walk lands "
        "off the chain. It drops the packet (DROP_INVALID from a load past its end, or "
        "drop code 14, which the lab's event table does not name), or reads ports at the "
        "wrong offset and load-balances what it should not (a later fragment to the "
        "service, which the lab's datapath passes). 1.16 sizes first, then steps, and "
        "passes such a packet or drops its fragment header. A Cilium 1.13 bug, fixed by "
        "1.16"),
}


def _ttl(d: PacketDiff) -> int | None:
    data = d.lab.data_in or b""
    return data[22] if len(data) >= 34 and data[12:14] == b"\x08\x00" else None


def _ihl(d: PacketDiff) -> int:
    data = d.lab.data_in or b""
    return data[14] & 0x0F if len(data) >= 34 else 0


def _is_later_fragment(d: PacketDiff) -> bool:
    data = d.lab.data_in or b""
    return len(data) >= 34 and int.from_bytes(data[20:22], "big") & 0x1FFF != 0


def _is_ipv6(d: PacketDiff) -> bool:
    return (d.lab.data_in or b"")[12:14] == b"\x86\xdd"


def _hop_limit(d: PacketDiff) -> int | None:
    data = d.lab.data_in or b""
    return data[21] if len(data) >= 54 and _is_ipv6(d) else None


def ipv6_chain(frame: bytes, limit: int = 8) -> list[int]:
    """The next-header values of ``frame``'s IPv6 extension chain, walked as RFC 8200
    sizes each header (AH: (len + 2) * 4, the others (len + 1) * 8; a fragment 8),
    up to the first that is not an extension header or the end of the frame."""
    ip = frame[14:]
    if len(ip) < 40:
        return []
    nh, off, out = ip[6], 40, [ip[6]]
    while nh in (0, 43, 44, 51, 60) and len(out) <= limit and off + 2 <= len(ip):
        size = 8 if nh == 44 else (ip[off + 1] + 2) * 4 if nh == 51 else (ip[off + 1] + 1) * 8
        nh, off = ip[off], off + size
        out.append(nh)
    return out


def _classify6(d: PacketDiff, version: CiliumVersion) -> str | None:
    lab_reason, cil_reason = d.lab.reason or d.lab.verdict, d.cilium.reason or d.cilium.verdict
    if d.kind == "dropped_by_lab":
        if lab_reason in MALFORMED_DROPS6:
            return "lab_drops_malformed_ipv6"
        if lab_reason == "ipv6_exthdr":
            return "lab_refuses_exthdr_to_service"
    if d.kind == "dropped_by_cilium" and d.lab.verdict == "ok":
        if cil_reason == "DROP_FRAG_NOSUPPORT":
            return "cilium_drops_ipv6_fragment"
        if cil_reason == "DROP_INVALID_EXTHDR":
            return "cilium_drops_exthdr_chain"
        if (not version.at_least(1, 16) and cil_reason in ("DROP_INVALID", "DROP_UNKNOWN_14")
                and 51 in ipv6_chain(d.lab.data_in or b"")):
            return "v1_13_misreads_auth_header"
    if d.kind == "different":
        if (not version.at_least(1, 16) and d.lab.data == d.lab.data_in
                and 51 in ipv6_chain(d.lab.data_in or b"")):
            return "v1_13_misreads_auth_header"
        hlim = _hop_limit(d)
        if hlim is not None and hlim <= 1 and (d.lab.verdict, d.cilium.verdict) == (
                "ok", "redirect"):
            return "hop_limit_expires"
    return None


def classify(d: PacketDiff, version: CiliumVersion) -> str | None:
    """The class of a disagreement (see :data:`CLASSES`); None when unexplained."""
    if _is_ipv6(d):
        return _classify6(d, version)
    old = not version.at_least(1, 16)
    lab_reason, cil_reason = d.lab.reason or d.lab.verdict, d.cilium.reason or d.cilium.verdict
    if d.kind == "dropped_by_lab":
        if lab_reason in MALFORMED_DROPS:
            return "lab_drops_malformed_ipv4"
        if lab_reason == "opt_too_long" and old:
            return "v1_13_option_at_a_fixed_offset"
    if d.kind == "dropped_by_cilium":
        if cil_reason == "DROP_NO_FIB" and len(d.lab.data_in or b"") - 14 > (CONFIG.mtu or 1500):
            return "cilium_drops_beyond_mtu"
        if cil_reason == "DROP_TTL_EXCEEDED" and (_ttl(d) or 0) <= 1:  # None: no IPv4
            return "ttl_expires"
    if d.kind == "different":
        names = {f.field for f, why in d.fields if why is None}
        ttl = _ttl(d)
        if old and ttl is not None and ttl <= 1 and (d.lab.verdict, d.cilium.verdict) == (
                "ok", "redirect"):
            return "ttl_expires"
        option = names & {"[IP].ihl", "[DSR].service"}
        if option and _is_later_fragment(d):
            return "cilium_option_on_a_later_fragment"
        if old and _ihl(d) > 5 and option:
            return "v1_13_option_at_a_fixed_offset"
    return None


@dataclass
class DiffFuzz:
    """One differential run: the summary, the count per class, the unexplained ones."""

    summary: DiffSummary
    family: Family = 4
    classes: Counter[str] = field(default_factory=Counter)
    unexplained: list[PacketDiff] = field(default_factory=list)

    def report(self) -> str:
        s = self.summary
        lines = [f"IPv{self.family}: {s.text()}", f"  frames per second (set-up included): lab "
                 f"{s.packets / s.lab_seconds:.0f}, Cilium {s.packets / s.cilium_seconds:.0f}"]
        lines += [f"  {n:6} {name}" for name, n in self.classes.most_common()]
        for d in self.unexplained[:5]:
            lines.append(f"  UNEXPLAINED frame {d.frame} {d.kind}: lab {d.lab.verdict} "
                         f"{d.lab.reason}, cilium {d.cilium.verdict} {d.cilium.reason}; "
                         f"{d.field_text()}\n    in {(d.lab.data_in or b'').hex()}")
        return "\n".join(lines)


def corpus(count: int, seed: int = DIFF_SEED, family: Family = 4) -> Iterator[Frame]:
    """``count`` fuzzer frames, seeded: for ``family`` 4 every IPv4 family of the fuzzer
    (malformed ones among them), for 6 its IPv6 families only."""
    if family == 4:
        gen = FrameGenerator(seed, TARGETS)
        for i in range(count):
            _, data = gen.frame()
            yield Frame(i, data)
        return
    gen = FrameGenerator(seed, TARGETS6, ipv6=True)
    i = 0
    while i < count:
        name, data = gen.frame()
        if name in FAMILIES6:
            yield Frame(i, data)
            i += 1


def run_diff_fuzz(source: CiliumSource, count: int, family: Family = 4) -> DiffFuzz:
    """The family's corpus through both datapaths; every disagreement classified."""
    frames = list(corpus(count, family=family))
    run = DiffFuzz(DiffSummary(source), family)

    def on_packet(_: CiliumSource, d: PacketDiff) -> None:
        if d.kind in ("unchanged", "equal", "accepted", "dropped_by_both"):
            return
        name = classify(d, source.version)
        if name is None:
            run.unexplained.append(d)
        else:
            run.classes[name] += 1

    [run.summary] = diff_frames(CONFIG if family == 4 else CONFIG6, frames, [source],
                                accept_known=True,
                                on_packet=on_packet)
    return run
