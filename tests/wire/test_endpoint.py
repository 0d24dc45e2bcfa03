"""One endpoint type: ``IPV4:PORT`` parsed, printed, and refused with its reason."""

from __future__ import annotations

import pytest

from lab.wire.endpoint import Endpoint
from tests.seed import NODE_PORT, POD2_ADDR, POD2_IP, POD_PORT, SERVICE_ADDR, VIP


@pytest.mark.parametrize(
    ("text", "want"),
    [(SERVICE_ADDR, Endpoint(VIP, NODE_PORT)), (f" {POD2_ADDR} ", Endpoint(POD2_IP, POD_PORT)),
     ("192.168.7.9:1", Endpoint("192.168.7.9", 1)),
     ("10.1.2.3:65535", Endpoint("10.1.2.3", 65535))],
)
def test_parse_endpoint(text: str, want: Endpoint) -> None:
    got = Endpoint.parse(text)
    assert got == want
    assert (type(got.ip), type(got.port)) == (str, int)
    assert str(got) == text.strip()
    assert Endpoint.parse(str(got)) == got  # printing and parsing round-trip


def test_an_endpoint_is_a_plain_tuple() -> None:
    ep = Endpoint.parse(SERVICE_ADDR)
    ip, port = ep
    assert (ip, port) == (VIP, NODE_PORT)
    assert {ep: 1}[Endpoint(VIP, NODE_PORT)] == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [(VIP, "not IPV4:PORT"), (f"{VIP}:", "not IPV4:PORT"), ("", "not IPV4:PORT"),
     (":80", "not IPV4:PORT"), ("10.1.2.300:80", "not an IPv4 address"),
     ("fd00::1:80", "not an IPv4 address"), ("pod:80", "'pod' is not an IPv4 address"),
     (f"{VIP}:0", "not in 1..65535"), (f"{VIP}:65536", "not in 1..65535"),
     (f"{VIP}:http", "not in 1..65535"), (f"{VIP}:-1", "not in 1..65535"),
     ("0.0.0.0:80", "cannot be"), ("224.0.0.1:80", "cannot be"),
     ("255.255.255.255:80", "cannot be")],
)
def test_parse_endpoint_refuses(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        Endpoint.parse(text)
    assert repr(text) in str(info.value)  # the message quotes what was given
