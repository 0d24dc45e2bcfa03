"""One endpoint type: ``IPV4:PORT`` and ``[IPV6]:PORT`` parsed, printed, and refused with
its reason."""

from __future__ import annotations

import pytest

from lab.wire.endpoint import Endpoint
from tests.seed import NODE_PORT, POD2_ADDR, POD2_IP, POD_PORT, SERVICE_ADDR, VIP


@pytest.mark.parametrize(
    ("text", "want"),
    [(SERVICE_ADDR, Endpoint(VIP, NODE_PORT)), (f" {POD2_ADDR} ", Endpoint(POD2_IP, POD_PORT)),
     ("192.168.7.9:1", Endpoint("192.168.7.9", 1)),
     ("10.1.2.3:65535", Endpoint("10.1.2.3", 65535)),
     ("[200::]:80", Endpoint("200::", 80)), ("[fd00:1::5]:8080", Endpoint("fd00:1::5", 8080)),
     ("[::ffff:10.0.0.1]:1", Endpoint("::ffff:a00:1", 1))],
)
def test_parse_endpoint(text: str, want: Endpoint) -> None:
    got = Endpoint.parse(text)
    assert got == want
    assert (type(got.ip), type(got.port)) == (str, int)
    if "ffff" not in text:  # written as Python writes IPv6 (compressed, lower case)
        assert str(got) == text.strip()
    assert Endpoint.parse(str(got)) == got  # printing and parsing round-trip


def test_an_endpoint_is_a_plain_tuple() -> None:
    ep = Endpoint.parse(SERVICE_ADDR)
    ip, port = ep
    assert (ip, port) == (VIP, NODE_PORT)
    assert {ep: 1}[Endpoint(VIP, NODE_PORT)] == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [(VIP, "not IP:PORT"), (f"{VIP}:", "not IP:PORT"), ("", "not IP:PORT"),
     (":80", "not IP:PORT"), ("10.1.2.300:80", "not an IPv4 address"),
     ("fd00::1:80", r"goes in brackets, \[ADDR\]:PORT"),
     ("pod:80", "'pod' is not an IPv4 address"),
     ("[fd00::1]", "not IP:PORT"), ("[fd00::1]:", "not IP:PORT"),
     ("[fd00::g]:80", "'fd00::g' is not an IPv6 address"),
     ("[10.0.0.1]:80", "'10.0.0.1' is not an IPv6 address"),
     ("[fd00::1:80", "brackets must enclose"), ("fd00::1]:80", "brackets must enclose"),
     ("[]:80", "brackets must enclose"), ("[fe80::1%eth0]:80", "a zone"),
     ("[::]:80", "cannot be"), ("[ff02::1]:80", "cannot be"), ("[200::]:0", "not in 1..65535"),
     ("[200::]:99999", "not in 1..65535"),
     (f"{VIP}:0", "not in 1..65535"), (f"{VIP}:65536", "not in 1..65535"),
     (f"{VIP}:http", "not in 1..65535"), (f"{VIP}:-1", "not in 1..65535"),
     ("0.0.0.0:80", "cannot be"), ("224.0.0.1:80", "cannot be"),
     ("255.255.255.255:80", "cannot be")],
)
def test_parse_endpoint_refuses(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        Endpoint.parse(text)
    assert repr(text) in str(info.value)  # the message quotes what was given
