"""Crafted packets (scapy) and IPv4 options by name, as scenarios and traces use them."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from lab.wire import dsropt
from lab.wire.crafted import crafted_ipv4
from lab.wire.ipv4 import option_names, option_types


@pytest.mark.parametrize(("names", "ihl", "shown"), [
    ([], 5, ""), (["timestamp"], 7, "timestamp"), (["record_route"], 9, "record_route"),
    (["record_route_full"], 15, "record_route"), (["nop", "timestamp"], 8, "timestamp")])
def test_a_crafted_syn_carries_the_named_options(names: list[str], ihl: int,
                                                 shown: str) -> None:
    raw = crafted_ipv4(src="172.18.0.1", dst="172.18.0.2", dport=32000, sport=41000,
                       ip_options=names)
    pkt = IP(raw)
    assert (pkt.ihl, pkt[TCP].flags, pkt[TCP].sport, pkt[TCP].dport) == (ihl, "S", 41000, 32000)
    assert option_names(raw[20:ihl * 4]) == shown
    assert IP(bytes(pkt)).chksum == pkt.chksum  # checksums filled in


def test_unknown_option_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown IP option 'bogus'"):
        crafted_ipv4(src="1.1.1.1", dst="2.2.2.2", dport=1, sport=2, ip_options=["bogus"])


def test_option_walk_names_the_dsr_option_and_survives_garbage() -> None:
    dsr = dsropt.encode("172.18.0.2", 32000)
    assert option_names(dsr + b"\x01\x01\x01\x00") == "dsr"
    assert option_types(b"\x44\x00\x05") == [0x44]  # a zero length ends the walk
    assert option_types(b"\x07") == [7]
    assert option_names(b"\x99\x02") == "opt153"
