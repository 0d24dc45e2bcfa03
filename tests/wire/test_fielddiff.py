"""Two frames compared field by field (lab/wire/fielddiff.py): names, values, checksums
that follow from another field, differences scapy's fields do not show."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from lab.wire.fielddiff import FieldDiff, diff_text, field_diffs, frame_fields
from tests.seed import CLIENT_IP, NODE_PORT, OPTION, POD_IP, VIP

ETH = Ether(src="02:42:ac:12:00:01", dst="02:42:ac:12:00:02")


def syn(**ip: object) -> bytes:
    return bytes(ETH / IP(src=CLIENT_IP, dst=VIP, id=1, **ip)
                 / TCP(sport=40000, dport=NODE_PORT, flags="S"))


def off_by(frame: bytes, delta: int) -> bytes:
    """``frame`` with its IPv4 header checksum ``delta`` away from right."""
    out = bytearray(frame)
    value = (int.from_bytes(out[24:26], "big") + delta) % 0xFFFF
    out[24:26] = value.to_bytes(2, "big")
    return bytes(out)


def test_the_same_frame_has_no_difference() -> None:
    assert field_diffs(syn(), syn()) == []


def test_a_ttl_difference_names_the_field_and_its_checksum_follows() -> None:
    diffs = field_diffs(syn(ttl=63), syn(ttl=64))
    assert [(d.field, d.a, d.b, d.follows) for d in diffs] == [
        ("[IP].ttl", "63", "64", False),
        ("[IP].chksum", diffs[1].a, diffs[1].b, True)]
    assert diffs[1].a != diffs[1].b
    assert diff_text(diffs[0], "lab", "cilium") == "[IP].ttl lab 63 cilium 64"
    assert diff_text(diffs[1], "lab", "cilium").endswith("(follows)")


def test_a_wrong_checksum_alone_is_a_difference() -> None:
    good = syn()
    bad = bytearray(good)
    bad[24] ^= 0xFF
    [d] = field_diffs(good, bytes(bad))
    assert (d.field, d.follows) == ("[IP].chksum", False)


def test_a_checksum_wrong_by_the_same_amount_on_both_sides_follows() -> None:
    """An input whose checksum was wrong, updated incrementally on both sides."""
    a, b = off_by(syn(ttl=63), 5), off_by(syn(ttl=64), 5)
    diffs = {d.field: d for d in field_diffs(a, b)}
    assert diffs["[IP].chksum"].follows
    c = off_by(syn(ttl=64), 9)  # wrong by another amount
    assert not {d.field: d for d in field_diffs(a, c)}["[IP].chksum"].follows


def test_the_dsr_option_is_decoded_and_other_options_stay_hex() -> None:
    fields = frame_fields(bytes(ETH / IP(src=CLIENT_IP, dst=POD_IP, options=OPTION
                                          + b"\x01\x01\x01\x00")
                                / TCP(sport=40000, dport=80, flags="S")))
    assert fields["[DSR].service"] == f"{VIP}:{NODE_PORT}"
    assert fields["[IP].options"] == "01010100"
    assert fields["[IP].ihl"] == "8"
    no_option = frame_fields(syn())
    assert "[DSR].service" not in no_option
    assert no_option["[IP].options"] == ""


def test_an_option_on_one_side_only() -> None:
    with_opt = bytes(ETH / IP(src=CLIENT_IP, dst=POD_IP, id=1, options=OPTION)
                     / TCP(sport=40000, dport=80, flags="S"))
    without = bytes(ETH / IP(src=CLIENT_IP, dst=POD_IP, id=1)
                    / TCP(sport=40000, dport=80, flags="S"))
    diffs = {d.field: d for d in field_diffs(with_opt, without)}
    assert diffs["[DSR].service"] == FieldDiff("[DSR].service", f"{VIP}:{NODE_PORT}", None)
    assert diffs["[frame].length"].a == str(len(without) + 8)
    assert diff_text(diffs["[DSR].service"], "lab", "cilium") == \
        f"[DSR].service lab {VIP}:{NODE_PORT} cilium -"


def test_udp_fields_and_a_zero_checksum_against_a_computed_one() -> None:
    base = ETH / IP(src=CLIENT_IP, dst=VIP, id=1) / UDP(sport=40000, dport=NODE_PORT) / b"hi"
    computed = bytes(base)
    zero = bytearray(computed)
    zero[14 + 20 + 6:14 + 20 + 8] = b"\0\0"
    [d] = field_diffs(computed, bytes(zero))
    assert (d.field, d.b, d.follows) == ("[UDP].chksum", "0x0000", False)


def test_bytes_no_field_shows_are_named_by_offset() -> None:
    """A frame scapy cannot take apart: its bytes stand for it."""
    a, b = b"\x01" * 10, b"\x01" * 9 + b"\x02"
    [d] = field_diffs(a, b)
    assert d.field == "[frame].bytes"
    assert (d.a, d.b) == (a.hex(), b.hex())


def test_matching_a_field_by_full_name_own_name_or_layer() -> None:
    d = FieldDiff("[IP].ttl", "63", "64")
    assert all(d.matches(n) for n in ("[IP].ttl", "ttl", "[IP]", "IP"))
    assert not any(d.matches(n) for n in ("tos", "[TCP]", "TCP", "[IP].tos"))
