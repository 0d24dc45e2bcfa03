"""The IPv6 classes of the differential fuzz: one frame built for each, run through the
lab's datapath and Cilium's (both versions), must land in that class; the frames
both treat alike, the documented hop limit difference included, in no class.

And ``dsrlab datapath diff`` on IPv6 as a user runs it: the DNATed SYN differs by the
hop limit only (Cilium keeps it), which ``--accept-known`` accepts; on a backend's
node Cilium 1.13 writes the pod's identity into the reply's flow label, accepted
as documented too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

from scapy.layers.inet import TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from lab.datapath.cilium.source import CiliumSource
from lab.datapath.diff import PacketDiff, diff_frames
from lab.pytest_plugin import require_root
from lab.wire.pcapio import Frame
from tests.datapath.cilium.diffclasses import CLASSES, CONFIG6, TARGETS6, classify
from tests.datapath.cilium.test_datapath_diff import diff, pcap, records

CLIENT6 = TARGETS6.client6
VIP6, PORT6 = TARGETS6.service6
POD6, POD_PORT6 = TARGETS6.backends6[0]
ETH = Ether(src="02:42:ac:12:00:01", dst="02:42:00:00:00:10")
SERVICE6 = ["--service", f"[{VIP6}]:{PORT6}", "--backend", f"[{POD6}]:{POD_PORT6}"]


def syn6(*ext: Packet, hlim: int = 64, sport: int = 40000) -> Packet:
    ip = IPv6(src=CLIENT6, dst=VIP6, hlim=hlim)
    for e in ext:
        ip = ip / e
    return ETH / ip / TCP(sport=sport, dport=PORT6, flags="S") / Raw(b"hello")


def bad_version() -> bytes:
    frame = bytearray(bytes(syn6()))
    frame[14] = 0x50 | (frame[14] & 0x0F)  # version 5
    return bytes(frame)


def payload_beyond() -> bytes:
    frame = bytearray(bytes(syn6()))
    frame[18:20] = (int.from_bytes(frame[18:20], "big") + 40).to_bytes(2, "big")
    return bytes(frame)


def later_fragment() -> bytes:
    ip = IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrFragment(nh=6, offset=100, id=7)
    return bytes(ETH / ip / Raw(b"f" * 32))


def none_in_chain() -> bytes:
    """A destination options header (not the DSR one) followed by next header 59."""
    ip = IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrDestOpt(nh=59)
    return bytes(ETH / ip / Raw(b"n" * 16))


# Found by the differential fuzz (IPv6 corpus, frames 2525 and 1808): to the backend
# fd00:b::5, not a service. A routing header then an AH (then UDP): Cilium 1.13's
# find_dsr_v6 sizes the AH as an option header and drops (code 14); 1.16 and the lab
# pass it. Routing, routing, AH, fragment, TCP: 1.13 walks off the chain (DROP_INVALID),
# 1.16 finds the fragment header (DROP_FRAG_NOSUPPORT), the lab passes it.
AH_UDP = bytes.fromhex(
    "0242ac1200020242ac12000186dd6000000000282bfffd00000c000000000000000000000001fd00000b"
    "0000000000000000000000053300bc1cd846dc4b110437b4816fe309cc4f9a5b1ba3c157edf140fe5f8e"
    "b1679c4200500008692d")
AH_FRAGMENT = bytes.fromhex(
    "0242ac1200020242ac12000186dd60042c5400542b01fd00000c000000000000000000000001fd00000b"
    "0000000000000000000000052b0293a0af1bf5f46270ca8152378ca454acc191eaa50cd33301adbadf66"
    "0c18eb4e1a4e2b2826082c020a34005153519049e8cfb76eefb1060000005c5a7a75089d0050aa804055"
    "25c1c5945002faf0dbba0000")
# frame 6176: AH, routing, a later fragment (of a TCP segment to the service), hop
# limit 1. 1.13 sizes the AH as an option header, reads ports at the wrong offset,
# finds the service's and load-balances it; the lab passes a later fragment; 1.16
# drops at the fragment header.
AH_LATER_FRAGMENT = bytes.fromhex(
    "0242ac1200020242ac12000186dd6000000000453301fd00000c000000000000000000000001fd000005"
    "0000000000000000000000102b02fd7c8fa699a89d0f01d0e628b5002c006b2dfc156f850000c458a8ea"
    "9c330601f4138262ae7332b65222625ffe339c427d00d5dc4712cb81dd115004faf0c20500001a")
MISREAD = "v1_13_misreads_auth_header"

# frame -> the class it must land in on 1.13 and on 1.16 (None: both agree)
CASES: dict[str, tuple[Callable[[], bytes], str | None, str | None]] = {
    "version 5": (bad_version, "lab_drops_malformed_ipv6", "lab_drops_malformed_ipv6"),
    "payload beyond the frame": (payload_beyond, "lab_drops_malformed_ipv6",
                                 "lab_drops_malformed_ipv6"),
    "hop-by-hop before TCP": (lambda: bytes(syn6(IPv6ExtHdrHopByHop(), sport=40001)),
                              "lab_refuses_exthdr_to_service",
                              "lab_refuses_exthdr_to_service"),
    "later fragment": (later_fragment, "cilium_drops_ipv6_fragment",
                       "cilium_drops_ipv6_fragment"),
    "no next header in the chain": (none_in_chain, "cilium_drops_exthdr_chain",
                                    "cilium_drops_exthdr_chain"),
    "hop limit 1": (lambda: bytes(syn6(hlim=1, sport=40002)), "hop_limit_expires",
                    "hop_limit_expires"),
    "the SYN": (lambda: bytes(syn6(sport=40003)), None, None),
    "routing, AH, UDP to a backend": (lambda: AH_UDP, MISREAD, None),
    "routing, routing, AH, fragment": (lambda: AH_FRAGMENT, MISREAD,
                                       "cilium_drops_ipv6_fragment"),
    "AH, routing, later fragment": (lambda: AH_LATER_FRAGMENT, MISREAD,
                                    "cilium_drops_ipv6_fragment"),
}


def test_each_ipv6_frame_lands_in_its_class(cilium_source: CiliumSource) -> None:
    require_root()
    names = list(CASES)
    frames = [Frame(i, CASES[n][0]()) for i, n in enumerate(names)]
    diffs: list[PacketDiff] = []
    diff_frames(CONFIG6, frames, [cilium_source], accept_known=True,
                on_packet=lambda _, d: diffs.append(d))
    got = {}
    for name, d in zip(names, diffs, strict=True):
        agree = d.kind in ("unchanged", "equal", "accepted", "dropped_by_both")
        got[name] = None if agree else classify(d, cilium_source.version)
        if not agree:
            assert got[name] in CLASSES, (name, d.kind, d.lab.reason, d.cilium.reason)
    new = cilium_source.version.at_least(1, 16)
    assert got == {n: c16 if new else c13 for n, (_, c13, c16) in CASES.items()}
    # the plain SYN: both DNAT it with the extension; the hop limit is all that differs
    syn = diffs[names.index("the SYN")]
    assert syn.kind == "accepted"
    assert [(f.field, f.a, f.b, why) for f, why in syn.fields] == [
        ("[IPv6].hlim", "63", "64", "known")]


def test_datapath_diff_names_the_ipv6_hop_limit_and_accepts_it_as_known(
        cilium_source: CiliumSource, tmp_path: Path) -> None:
    require_root()
    src = pcap(tmp_path, bytes(syn6()))
    where = ["--cilium-src", str(cilium_source.path)]
    proc = diff(str(src), *SERVICE6, *where)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == [
        f"frame 1 [{cilium_source.version}]: different: [IPv6].hlim lab 63 cilium 64",
        f"  in:  tcp [{CLIENT6}]:40000 > [{VIP6}]:{PORT6} [S] plen=25 hlim=64"]
    ok = diff(str(src), *SERVICE6, *where, "--accept-known")
    assert ok.returncode == 0, ok.stderr
    assert "1 accepted; accepted differences: [IPv6].hlim (known) 1" in ok.stderr


def test_a_backends_ipv6_reply_differs_by_the_known_fields_only(
        cilium_source: CiliumSource, tmp_path: Path) -> None:
    """On the backend's node: the SYN with the DSR extension, then the pod's SYN+ACK.
    Cilium 1.13 writes the pod's identity (1000 in the lab's run) into the flow label
    of the reply; all differences are documented ones."""
    require_root()
    ext = bytes([6, 2, 0x1B, 20]) + ipaddress.IPv6Address(VIP6).packed \
        + PORT6.to_bytes(2, "big") + b"\0\0"
    syn = Ether(src="02:42:ac:12:00:01", dst="02:42:ac:12:00:03") / IPv6(
        src=CLIENT6, dst=POD6, nh=60, hlim=63) / Raw(ext) / TCP(
        sport=40000, dport=POD_PORT6, flags="S")
    reply = Ether(src="02:42:ac:12:00:03", dst="02:42:ac:12:00:01") / IPv6(
        src=POD6, dst=CLIENT6) / TCP(sport=POD_PORT6, dport=40000, flags="SA")
    src = pcap(tmp_path, bytes(syn), bytes(reply))
    base = [str(src), "--program", "backend", *SERVICE6, "--cilium-src",
            str(cilium_source.path), "--json"]
    proc = diff(*base)
    assert proc.returncode == 1, proc.stderr
    frames = records(proc.stdout)[:2]
    listed: list[dict[str, str | None]] = frames[1]["fields"]  # type: ignore[assignment]
    fields = {f["field"]: (f["lab"], f["cilium"]) for f in listed}
    if cilium_source.version.at_least(1, 16):
        assert "[IPv6].fl" not in fields
    else:
        assert fields["[IPv6].fl"] == ("0", "1000")
    assert fields["[IPv6].hlim"] == ("64", "63")
    ok = diff(*base, "--accept-known")
    assert ok.returncode == 0, ok.stderr
    [summary] = [r for r in records(ok.stdout) if r.get("summary")]
    assert summary["kinds"]["accepted"] == 2  # type: ignore[index]
