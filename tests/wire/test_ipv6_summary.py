"""The one-line summary of an IPv6 frame that ``dsrlab datapath run`` prints."""

from __future__ import annotations

import pytest

from lab.wire.ipv6 import dsr_ext, frame_summary6
from tests.datapath.test_ipv6_cli import CILIUM_IN, CILIUM_OUT


def test_cilium_s_packet_before_and_after() -> None:
    assert frame_summary6(CILIUM_IN) == "tcp [100::]:111 > [200::]:80 [S] plen=40 hlim=64"
    assert frame_summary6(CILIUM_OUT) == ("tcp [100::]:111 > [300::]:8080 [S] plen=64 hlim=63 "
                                          "ext=dsr([200::]:80)")


@pytest.mark.parametrize(("frame", "want"), [
    (CILIUM_IN[:30], "IPv6, not parsed: 16 bytes, shorter than its header"),
    (CILIUM_IN[:14] + b"\x40" + CILIUM_IN[15:], "IPv6, not parsed: version 4"),
    (CILIUM_IN[:-1], "IPv6 100:: > 200:: plen=40 hlim=64, not parsed: payload beyond the "
                     "frame"),
    (CILIUM_IN[:20] + b"\x00" + CILIUM_IN[21:], "IPv6 100:: > 200:: plen=40 hlim=64 ext=hop"),
    (CILIUM_IN[:20] + b"\x3b" + CILIUM_IN[21:], "next header 59 100:: > 200:: plen=40 hlim=64"),
], ids=["short", "version", "plen", "hop", "no-next"])
def test_what_does_not_parse_is_said(frame: bytes, want: str) -> None:
    assert frame_summary6(frame) == want


def test_only_the_dsr_header_is_named() -> None:
    ext = CILIUM_OUT[54:78]
    assert dsr_ext(ext) == "[200::]:80"
    assert dsr_ext(ext[:2] + b"\x1c" + ext[3:]) is None
    assert dsr_ext(ext[:23]) is None
