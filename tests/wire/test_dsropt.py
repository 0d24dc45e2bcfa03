"""The DSR option codec: Cilium's wire bytes, both byte orders, errors."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.wire import dsropt
from tests import seed

SEED_HOST = bytes.fromhex("9a08007d020012ac")  # 172.18.0.2:32000 as Cilium writes it
SEED_NETWORK = bytes.fromhex("9a087d00ac120002")


def test_constants() -> None:
    assert dsropt.OPT_TYPE == 0x9A
    assert dsropt.OPT_LEN == 8
    # copy flag set, class 0, option number 26
    assert dsropt.OPT_TYPE >> 7 == 1
    assert (dsropt.OPT_TYPE >> 5) & 0b11 == 0
    assert dsropt.OPT_TYPE & 0x1F == 26


def test_encode_seed_host_order() -> None:
    assert dsropt.encode("172.18.0.2", 32000) == SEED_HOST
    assert dsropt.encode("172.18.0.2", 32000, "host") == SEED_HOST


def test_the_seed_topology_gives_the_write_ups_option() -> None:
    # tests/seed.py builds its option from topologies/seed.yaml: the write-up's bytes
    assert (seed.VIP, seed.NODE_PORT) == ("172.18.0.2", 32000)
    assert seed.OPTION == SEED_HOST
    assert seed.OPTION_NETWORK == SEED_NETWORK
    assert seed.MISREAD_ADDR == "2.0.18.172:125"


def test_encode_seed_network_order() -> None:
    assert dsropt.encode("172.18.0.2", 32000, "network") == SEED_NETWORK


def test_decode_seed() -> None:
    assert dsropt.decode(SEED_HOST) == ("172.18.0.2", 32000)
    assert dsropt.decode(SEED_NETWORK, "network") == ("172.18.0.2", 32000)


def test_decode_any_gives_both_readings() -> None:
    readings = dsropt.decode_any(SEED_HOST)
    assert readings[0] == ("172.18.0.2", 32000, "host")
    assert readings[1] == ("2.0.18.172", 125, "network")
    assert ("172.18.0.2", 32000, "network") in dsropt.decode_any(SEED_NETWORK)


def test_cilium_scapy_network_order_vector() -> None:
    # Cilium's newest scapy test definitions: 172.16.10.1:80 in network order
    assert dsropt.encode("172.16.10.1", 80, "network") == bytes.fromhex("9a080050ac100a01")


def test_decode_ignores_trailing_bytes() -> None:
    assert dsropt.decode(SEED_HOST + b"\x01\x00\x00\x00") == ("172.18.0.2", 32000)


@pytest.mark.parametrize(
    "raw",
    [b"", SEED_HOST[:7], bytes.fromhex("9b08007d020012ac"), bytes.fromhex("9a0a007d020012ac")],
    ids=["empty", "short", "wrong-type", "wrong-length"],
)
def test_decode_rejects_non_options(raw: bytes) -> None:
    with pytest.raises(dsropt.DsrOptionError):
        dsropt.decode(raw)


@pytest.mark.parametrize(
    ("ip", "port", "order"),
    [("300.1.1.1", 1, "host"), ("::1", 1, "host"), ("1.2.3.4", 70000, "host"), ("1.2.3.4", 1, "x")],
)
def test_encode_rejects_bad_input(ip: str, port: int, order: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        dsropt.encode(ip, port, order)  # type: ignore[arg-type]


@given(
    addr=st.integers(min_value=0, max_value=2**32 - 1),
    port=st.integers(min_value=0, max_value=0xFFFF),
    order=st.sampled_from(dsropt.ORDERS),
)
def test_roundtrip(addr: int, port: int, order: dsropt.OptionOrder) -> None:
    ip = str(ipaddress.IPv4Address(addr))
    raw = dsropt.encode(ip, port, order)
    assert len(raw) == dsropt.OPT_LEN
    assert raw[:2] == b"\x9a\x08"
    assert dsropt.decode(raw, order) == (ip, port)
    assert (ip, port, order) in dsropt.decode_any(raw)


def test_find_in_ip_header() -> None:
    base = bytearray.fromhex("4700003000010000400600000a0000010a000002")
    assert dsropt.find_in_ip_header(bytes(base) + SEED_HOST) == SEED_HOST
    # IHL 5: no options at all
    base[0] = 0x45
    assert dsropt.find_in_ip_header(bytes(base) + SEED_HOST) is None
    # DSR option present but not first
    base[0] = 0x49
    assert dsropt.find_in_ip_header(bytes(base) + b"\x01\x01\x01\x00" + SEED_HOST) is None
    assert dsropt.find_in_ip_header(b"\x60" + bytes(40)) is None
