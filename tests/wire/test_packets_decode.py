"""The capture decoder (:func:`lab.wire.packets.read_pcap`) read against Wireshark.

Every field a record holds is compared with tshark's own dissection of the
same file, frame by frame: a corpus built here (IPv4 with the DSR option and
with bad checksums, VLAN tags, fragments, ICMP errors, IPv6 with the DSR
Destination Option, ICMPv6, Geneve, a frame cut short by the snap length,
ARP and neighbour discovery that make no record), written in every link type
the decoder reads, and the session's real seed capture set. Malformed frames
(every truncation and byte flips of the corpus) never raise.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from lab.wire import dsropt
from lab.wire.packets import Pkt, from_frame, read_pcap
from lab.wire.pcapread import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from tests.seed import CLIENT_IP, NODE_PORT, OPTION, POD_IP, POD_PORT, VIP

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")

PORT = 32000  # the seed's NodePort
MAC_A, MAC_B = "02:42:ac:12:00:01", "02:42:ac:12:00:02"
SVC6, CLIENT6, POD6 = "fc00:f853:ccd:e793::2", "fc00:f853:ccd:e793::1", "fd00:10:244:1::7b"


def _eth(pkt: Packet) -> Packet:
    return Ether(src=MAC_A, dst=MAC_B) / pkt


def corpus() -> list[bytes]:
    """Ethernet frames of every kind the lab's captures hold, and some they should not."""
    syn = IP(src=CLIENT_IP, dst=POD_IP, ttl=63, id=7,
             options=[IPOption(OPTION)]) / TCP(sport=40000, dport=POD_PORT, flags="S",
                                              seq=1234)
    synack = IP(src=VIP, dst=CLIENT_IP) / TCP(sport=NODE_PORT, dport=40000, flags="SA",
                                              seq=99, ack=1235)
    data = IP(src=CLIENT_IP, dst=VIP) / TCP(sport=40000, dport=NODE_PORT, flags="PA") \
        / Raw(b"GET / HTTP/1.1\r\n\r\n")
    bad_ip = IP(bytes(IP(src=CLIENT_IP, dst=VIP) / TCP(dport=NODE_PORT)))
    bad_ip.chksum = 0x1234
    bad_tcp = IP(src=CLIENT_IP, dst=VIP) / TCP(dport=NODE_PORT, chksum=0x4321)
    udp = IP(src=CLIENT_IP, dst=VIP) / UDP(sport=5353, dport=NODE_PORT) / Raw(b"q" * 30)
    udp_nosum = IP(src=CLIENT_IP, dst=VIP) / UDP(sport=5353, dport=NODE_PORT, chksum=0) \
        / Raw(b"q")
    big = IP(src=CLIENT_IP, dst=VIP, id=77) / UDP(sport=5353, dport=NODE_PORT) \
        / Raw(b"x" * 3000)
    frags = [bytes(_eth(f)) for f in _fragment(big)]
    frag_needed = IP(src="172.18.0.3", dst=CLIENT_IP) / ICMP(type=3, code=4, nexthopmtu=1400) \
        / bytes(synack)[:28]
    echo = IP(src=CLIENT_IP, dst=VIP) / ICMP(type=8) / Raw(b"ping")
    opt6 = dsropt.encode6(SVC6, PORT)
    syn6 = IPv6(src=CLIENT6, dst=POD6, hlim=63) / IPv6ExtHdrDestOpt(
        options=[HBHOptUnknown(otype=opt6[2], optdata=opt6[4:])]) \
        / TCP(sport=40000, dport=POD_PORT, flags="S")
    assert bytes(syn6)[40:64] == opt6  # Cilium's bytes
    plain6 = IPv6(src=CLIENT6, dst=SVC6) / TCP(sport=40001, dport=NODE_PORT, flags="S")
    ptb = IPv6(src=SVC6, dst=CLIENT6) / ICMPv6PacketTooBig(mtu=1280) / bytes(plain6)
    ns = IPv6(src=CLIENT6, dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=SVC6)
    echo6 = IPv6(src=CLIENT6, dst=SVC6) / ICMPv6EchoRequest()
    geneve = _geneve_frame(bytes(_eth(syn.copy())))
    vlan = Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=5) / synack
    arp = Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT_IP, pdst=VIP)
    padded = bytes(_eth(synack)) + b"\0" * 6
    return [bytes(arp), bytes(_eth(syn)), bytes(_eth(synack)), bytes(_eth(data)),
            bytes(_eth(bad_ip)), bytes(_eth(bad_tcp)), bytes(_eth(udp)),
            bytes(_eth(udp_nosum)), *frags, bytes(_eth(frag_needed)), bytes(_eth(echo)),
            bytes(_eth(syn6)), bytes(_eth(plain6)), bytes(_eth(ptb)), bytes(_eth(ns)),
            bytes(_eth(echo6)), geneve, bytes(vlan), padded]


def _fragment(pkt: Packet) -> list[Packet]:
    from scapy.layers.inet import fragment  # noqa: PLC0415

    return list(fragment(pkt, fragsize=1200))  # type: ignore[no-untyped-call]


def _geneve_frame(inner: bytes) -> bytes:
    """An IPv4/UDP/Geneve frame carrying ``inner`` with the DSR Geneve option."""
    opts = dsropt.encode_geneve(VIP, PORT)
    gen = bytes([len(opts) // 4, 0, 0x65, 0x58, 0, 0, 2, 0]) + opts + inner
    outer = IP(src="172.18.0.2", dst="172.18.0.3") / UDP(sport=40123, dport=6081) / Raw(gen)
    return bytes(_eth(outer))


def _relink(frame: bytes, linktype: int) -> bytes | None:
    """The Ethernet frame ``frame`` as a frame of ``linktype`` (None: no such frame)."""
    et, l3 = frame[12:14], frame[14:]
    if et == b"\x81\x00":
        return None
    if linktype == LINKTYPE_ETHERNET:
        return frame
    if linktype == LINKTYPE_LINUX_SLL:  # packet type, ARPHRD, address length, address
        return b"\0\0\0\x01\0\x06" + frame[6:12] + b"\0\0" + et + l3
    if linktype == LINKTYPE_LINUX_SLL2:
        return et + b"\0\0" + (2).to_bytes(4, "big") + b"\0\x01\0\x06" + frame[6:12] \
            + b"\0\0" + l3
    if et not in (b"\x08\x00", b"\x86\xdd"):
        return None
    if linktype == LINKTYPE_RAW:
        return l3
    family = 2 if et == b"\x08\x00" else 24  # AF_INET; AF_INET6 as BSD numbers it
    return family.to_bytes(4, "little") + l3  # LINKTYPE_NULL


def write(path: Path, frames: list[bytes], linktype: int, snaplen: int = 65535) -> Path:
    """A classic pcap file (microseconds) of ``frames``, each cut to ``snaplen``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for i, f in enumerate(frames):
        kept = f[:snaplen]
        out.append(struct.pack("<IIII", 1_700_000_000 + i, i * 1000 + 7, len(kept), len(f)))
        out.append(kept)
    path.write_bytes(b"".join(out))
    return path


FIELDS = ["frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.ttl",
          "ipv6.hlim", "ip.id", "ip.hdr_len", "ip.len", "ipv6.plen", "tcp.srcport",
          "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq_raw",
          "tcp.ack_raw", "ip.checksum.status", "tcp.checksum.status",
          "udp.checksum.status", "icmp.type", "icmp.code", "icmp.mtu", "icmpv6.type",
          "icmpv6.mtu", "ip.frag_offset", "ip.flags.mf", "eth.src", "eth.dst", "tcp.len",
          "frame.time_epoch", "geneve.vni"]


BAD, GOOD, NOT_PRESENT = "0", "1", "3"  # tshark's checksum status ("2": unverified)
STATUS = {GOOD: True, BAD: False}


def tshark_rows(path: Path) -> dict[int, dict[str, list[str]]]:
    """tshark's fields of every frame, checksums verified; each field's values in
    order (outer first in an encapsulated frame)."""
    argv = ["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=a",
            "-E", "aggregator=|", "-o", "ip.check_checksum:TRUE",
            "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
    for f in FIELDS:
        argv += ["-e", f]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        values = {k: (v.split("|") if v else []) for k, v in zip(FIELDS, line.split("\t"),
                                                                 strict=True)}
        rows[int(values["frame.number"][0])] = values
    return rows


_encapsulated = False  # set per row by agree(): the inner packet is the last occurrence


def _inner(values: list[str]) -> str | None:
    """The flow's packet's value: an encapsulated frame's last (the inner packet's),
    else the first (an ICMP error's quoted header comes after)."""
    if not values:
        return None
    return values[-1] if _encapsulated else values[0]


def agree(p: Pkt, t: dict[str, list[str]], ethernet: bool) -> list[str]:
    """The fields where record ``p`` and tshark's row ``t`` differ (the MAC addresses
    in an Ethernet file: a record of another link type has none)."""
    global _encapsulated  # noqa: PLW0603
    _encapsulated = bool(t["geneve.vni"])
    v6 = p.family == 6
    want: dict[str, object] = {
        "src": _inner(t["ipv6.src" if v6 else "ip.src"]),
        "dst": _inner(t["ipv6.dst" if v6 else "ip.dst"]),
        "ttl": int(_inner(t["ipv6.hlim" if v6 else "ip.ttl"]) or -1),
        "time": round(float(t["frame.time_epoch"][0]), 6),
    }
    got: dict[str, object] = {"src": p.src, "dst": p.dst, "ttl": p.ttl,
                              "time": round(p.time, 6)}
    if not v6:
        want |= {"ip_id": int(_inner(t["ip.id"]) or "-1", 16),
                 "ihl": int(_inner(t["ip.hdr_len"]) or 0) // 4,
                 "ip_len": int(_inner(t["ip.len"]) or -1),
                 "ip_csum_ok": _inner(t["ip.checksum.status"]) == GOOD,
                 "frag_offset": int(_inner(t["ip.frag_offset"]) or 0) * 8,
                 "more_fragments": _inner(t["ip.flags.mf"]) in ("1", "True")}
        got |= {"ip_id": p.ip_id, "ihl": p.ihl, "ip_len": p.ip_len,
                "ip_csum_ok": p.ip_csum_ok, "frag_offset": p.frag_offset,
                "more_fragments": p.more_fragments}
    else:
        want["ip_len"] = 40 + int(_inner(t["ipv6.plen"]) or 0)
        got["ip_len"] = p.ip_len
    if p.proto == "tcp":
        want |= {"sport": int(_inner(t["tcp.srcport"]) or -1),
                 "dport": int(_inner(t["tcp.dstport"]) or -1),
                 "flags": int(_inner(t["tcp.flags"]) or "0", 16) & 0xFF,
                 "seq": int(_inner(t["tcp.seq_raw"]) or -1),
                 "ack": int(_inner(t["tcp.ack_raw"]) or -1),
                 "payload_len": int(_inner(t["tcp.len"]) or 0),
                 "l4_csum_ok": STATUS.get(_inner(t["tcp.checksum.status"]) or "")}
        got |= {"sport": p.sport, "dport": p.dport, "flags": _flag_bits(p.flags),
                "seq": p.seq, "ack": p.ack, "payload_len": p.payload_len,
                "l4_csum_ok": p.l4_csum_ok}
    elif p.proto == "udp" and not p.is_fragment:
        want |= {"sport": int(_inner(t["udp.srcport"]) or -1),
                 "dport": int(_inner(t["udp.dstport"]) or -1),
                 # a zero UDP checksum (none sent) is "not present" to tshark
                 "l4_csum_ok": (STATUS | {NOT_PRESENT: True}).get(
                     _inner(t["udp.checksum.status"]) or "")}
        got |= {"sport": p.sport, "dport": p.dport, "l4_csum_ok": p.l4_csum_ok}
    elif p.proto == "icmp":
        want |= {"icmp_type": int(t["icmp.type"][0]), "icmp_code": int(t["icmp.code"][0]),
                 "icmp_mtu": int(t["icmp.mtu"][0]) if t["icmp.mtu"] else None}
        got |= {"icmp_type": p.icmp_type, "icmp_code": p.icmp_code, "icmp_mtu": p.icmp_mtu}
    elif p.proto == "icmpv6":
        want |= {"icmp_type": int(t["icmpv6.type"][0]),
                 "icmp_mtu": int(t["icmpv6.mtu"][0]) if t["icmpv6.mtu"] else None}
        got |= {"icmp_type": p.icmp_type, "icmp_mtu": p.icmp_mtu}
    if ethernet:
        want |= {"mac_src": t["eth.src"][0], "mac_dst": t["eth.dst"][0]}
        got |= {"mac_src": p.mac_src, "mac_dst": p.mac_dst}
    if t["geneve.vni"]:
        want["vni"] = int(t["geneve.vni"][0], 0)
        got["vni"] = p.outer.vni if p.outer else None
    return [f"frame {p.frame} {k}: lab {got[k]!r}, tshark {want[k]!r}"
            for k in want if got[k] != want[k]]


def _flag_bits(flags: str) -> int:
    return sum(1 << "FSRPAUEC".index(c) for c in flags)


def check_against_tshark(path: Path, linktype: int = LINKTYPE_ETHERNET) -> list[Pkt]:
    records = read_pcap(path)
    rows = tshark_rows(path)
    ethernet = linktype == LINKTYPE_ETHERNET
    problems = [d for p in records for d in agree(p, rows[p.frame], ethernet)]
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    return records


@needs_tshark
@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL,
                                      LINKTYPE_LINUX_SLL2, LINKTYPE_RAW, LINKTYPE_NULL])
def test_every_field_is_what_wireshark_reads(tmp_path: Path, linktype: int) -> None:
    frames = [f for f in (_relink(f, linktype) for f in corpus()) if f is not None]
    records = check_against_tshark(write(tmp_path / "c.pcap", frames, linktype), linktype)
    # ARP and neighbour discovery make no record, yet count in the frame numbers
    ethernet = linktype in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2)
    assert len(records) == len(frames) - (2 if ethernet else 1)
    by_frame = {p.frame: p for p in records}
    first = 2 if ethernet else 1
    syn = by_frame[first]
    assert syn.options == OPTION
    assert syn.has_dsr_option
    assert syn.flags == "S"
    assert not by_frame[first + 3].ip_csum_ok
    assert not by_frame[first + 4].l4_csum_ok
    six = next(p for p in records if p.family == 6)
    assert six.carrier is not None
    assert str(six.carrier.ip) == SVC6
    if linktype != LINKTYPE_RAW:
        assert any(p.outer is not None and p.carrier is not None for p in records)


@needs_tshark
def test_a_frame_cut_by_the_snap_length_has_no_checksum_verdict(tmp_path: Path) -> None:
    data = _eth(IP(src=CLIENT_IP, dst=VIP) / TCP(sport=1, dport=NODE_PORT, flags="A")
                / Raw(b"z" * 1400))
    records = check_against_tshark(write(tmp_path / "cut.pcap", [bytes(data)],
                                         LINKTYPE_ETHERNET, snaplen=128))
    cut = records[0]
    assert cut.l4_csum_ok is None
    assert cut.ip_len == 1440
    assert cut.payload_len == 1400  # on the wire, as the headers say
    assert len(cut.payload) == 128 - 14 - 40  # what the capture holds


@needs_tshark
def test_the_seed_capture_set_reads_as_wireshark_reads_it(seed_capture: Path) -> None:
    pcaps = sorted(seed_capture.glob("*.pcap"))
    assert pcaps
    for path in pcaps:
        assert check_against_tshark(path)


def test_malformed_frames_make_a_record_or_none_never_an_error() -> None:
    rng = random.Random(23)
    frames = corpus()
    seen = 0
    for lt in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW,
               LINKTYPE_NULL):
        for frame in (f for f in (_relink(f, lt) for f in frames) if f is not None):
            cuts = [frame[:n] for n in range(len(frame) + 1)]
            flips = []
            for _ in range(40):
                b = bytearray(frame)
                for _ in range(rng.randint(1, 4)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                flips.append(bytes(b))
            for f in cuts + flips:
                out = from_frame(f, 1, 0.0, lt)
                assert out is None or isinstance(out, Pkt)
                if out is not None:
                    out.summary()  # every record prints
                    seen += 1
    assert seen > 1000
