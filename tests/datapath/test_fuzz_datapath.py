"""Fuzzing the datapath: malformed frames by the hundred thousand, and a property test.

Invariant (tests/datapath/fuzzgen.py, ``check_result``): every frame gets a verdict
the datapath returns (a drop with a known reason, a redirect with a target),
non-IPv4 frames leave untouched, every frame the program rewrote parses with
a right IP header checksum (and L4 checksum) whenever the input's was right
and consistent lengths, and the ingress program lets no malformed IPv4
through.

Sizes: at least ``DSRLAB_FUZZ_PACKETS`` malformed frames per program that the
program actually runs on (default 100,000; 15% more are generated because
the kernel refuses some test-run input outright, and the generator mixes in
well-formed frames so the rewriting paths run), and ``DSRLAB_FUZZ_EXAMPLES``
hypothesis examples (default 300). ``make fuzz`` runs this file with
1,000,000 and 5,000. The checker and the harness
are tested too: a corrupted output and a deliberately broken program must be
caught.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.datapath import DatapathObject, build_object
from lab.datapath import build as dp_build
from lab.datapath.testrun import TestRunResult
from lab.plumbing import nsutil
from lab.wire.checksum import checksum, csum_ok
from tests.datapath.fuzzcheck import (
    BACKENDS,
    CLIENT_PORTS,
    FrameSource,
    Lab,
    configure,
    expect_sound_egress,
    expect_sound_ingress,
    frame_source,
    fuzz_lab,
    ipv4_frame,
    lb_rewrite,
    rebuild,
    result,
    run_egress,
    run_ingress,
)
from tests.datapath.fuzzgen import (
    BAD_CSUM,
    FAMILIES,
    MAX_TEST_RUN_FRAME,
    FrameGenerator,
    check_result,
    fuzz,
    make_run_fn,
)
from tests.seed import CLIENT_IP, NODE_PORT, OPTION, VIP

PACKETS = int(os.environ.get("DSRLAB_FUZZ_PACKETS", "100000"))
EXAMPLES = int(os.environ.get("DSRLAB_FUZZ_EXAMPLES", "300"))


# --- the checker catches what it must ----------------------------------------------------


@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("opts", [b"", b"\x01\x01\x01\x00", bytes(12)], ids=["no-opt", "4", "12"])
def test_checker_accepts_a_correct_rewrite(proto: int, opts: bytes) -> None:
    frame = ipv4_frame(proto=proto, opts=opts)
    out = lb_rewrite(frame)
    assert check_result(frame, result(out), validating=True) == []
    assert check_result(frame, result(frame, "ok"), validating=True) == []


def _corrupt(data: bytes, offset: int, value: bytes) -> bytes:
    b = bytearray(data)
    b[offset : offset + len(value)] = value
    return bytes(b)


GOOD_IN = ipv4_frame(payload=b"GET / HTTP/1.1\r\n\r\n")
GOOD_OUT = lb_rewrite(GOOD_IN)
CORRUPTIONS: dict[str, tuple[TestRunResult, str]] = {
    "ip-checksum": (result(_corrupt(GOOD_OUT, 24, b"\x12\x34")), "IP header checksum wrong"),
    "tcp-checksum": (result(_corrupt(GOOD_OUT, 14 + 28 + 16, b"\xde\xad")),
                     "TCP checksum wrong"),
    "tot-len-beyond": (result(_corrupt(GOOD_OUT, 16, (len(GOOD_OUT) - 10).to_bytes(2, "big"))),
                       "does not parse"),
    "ihl-not-grown": (result(rebuild(GOOD_IN, b"", GOOD_OUT[42:], dst=GOOD_OUT[30:34], ttl=63)
                             + bytes(8)), "trailer"),
    "option-not-first": (result(GOOD_OUT[:34] + b"\x01" * 8 + GOOD_OUT[42:]),
                         "does not start with a DSR option"),
    "payload-changed": (result(GOOD_OUT[:-3] + b"xyz"), "L4 payload changed"),
    "grew-by-4": (result(GOOD_OUT + bytes(4)), "grew by 12"),
    "ttl-jump": (result(_corrupt(GOOD_OUT, 22, b"\x05")), "TTL"),
    "truncated": (result(GOOD_OUT[:30]), "no room for an IPv4 header"),
    "unknown-verdict": (result(GOOD_OUT, "stolen"), "not one the datapath returns"),
    "drop-without-reason": (result(GOOD_IN, "shot"), "drop without a known reason"),
    "redirect-without-target": (result(GOOD_OUT, redirect_ifindex=None),
                                "redirect without a target"),
    "protocol-changed": (result(_corrupt(GOOD_OUT, 23, b"\x11")), "IP protocol changed"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_checker_catches_a_corrupted_output(case: str) -> None:
    res, want = CORRUPTIONS[case]
    problems = check_result(GOOD_IN, res, validating=True)
    assert any(want in p for p in problems), problems


def test_checker_catches_a_changed_non_ip_frame_and_lax_ingress() -> None:
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    assert check_result(arp, result(arp, "ok")) == []
    assert "non-IP frame was changed" in check_result(arp, result(arp[:-1] + b"\1", "ok"))[0]
    bad = _corrupt(GOOD_IN, 14, b"\x43")  # IHL 3 let through unchanged
    assert check_result(bad, result(bad, "ok")) == []  # egress may pass what it got
    assert "IHL 3 < 5" in check_result(bad, result(bad, "ok"), validating=True)[0]


def test_generator_is_seeded_and_covers_every_family() -> None:
    a = list(FrameGenerator(7).frames(3000))
    assert a == list(FrameGenerator(7).frames(3000))
    assert a != list(FrameGenerator(8).frames(3000))
    assert {fam.removesuffix(BAD_CSUM) for fam, _ in a} == set(FAMILIES)
    bad = [f for fam, f in a if fam.endswith(BAD_CSUM)]
    assert 200 < len(bad) < 400
    assert not any(csum_ok(f[14 : 14 + (f[14] & 0x0F) * 4]) for f in bad if f[14] == 0x45)
    sizes = [len(f) for _, f in a]
    assert min(sizes) == 0
    assert max(sizes) > MAX_TEST_RUN_FRAME
    ihls = {f[14] & 0x0F for _, f in a if len(f) > 14 and f[12:14] == b"\x08\x00"}
    assert ihls == set(range(16))
    assert any(len(f) > 34 and f[14] == 0x4F for fam, f in a if fam == "options")


# --- the programs under fuzz (the harness: tests/datapath/fuzzcheck.py) ------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with fuzz_lab() as made:
        yield made


@pytest.fixture(scope="module")
def frames() -> FrameSource:
    """The same seeded frames for both programs: kept in memory at CI size, regenerated
    for the big run (``make fuzz``)."""
    return frame_source(PACKETS)


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_ingress_program(lab: Lab, frames: FrameSource) -> None:
    expect_sound_ingress(run_ingress(lab, frames()), PACKETS)


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_egress_program(lab: Lab, frames: FrameSource) -> None:
    expect_sound_egress(run_egress(lab, frames()), PACKETS)


# --- property-based: structured frames, every field a strategy ----------------------------


def _option_bytes() -> st.SearchStrategy[bytes]:
    kinds = st.sampled_from([0x00, 0x01, 0x07, 0x44, 0x83, 0x89, 0x94, 0x9A, 0x82, 0xFF])
    one = st.tuples(kinds, st.integers(0, 40), st.binary(max_size=38)).map(
        lambda t: bytes([t[0], t[1]]) + t[2])
    return st.lists(one, max_size=6).map(lambda xs: b"".join(xs)[:40]).map(
        lambda b: b + bytes(-len(b) % 4))


@st.composite
def structured_frames(draw: st.DrawFn) -> bytes:
    """An IPv4 frame whose every header field is drawn: sane values mostly, any value
    sometimes; then maybe truncated or padded."""
    proto = draw(st.sampled_from([6, 17, 6, 1, 47]))
    dst = draw(st.sampled_from([VIP, VIP, BACKENDS[0][0], CLIENT_IP, "8.8.8.8"]))
    src = draw(st.sampled_from([CLIENT_IP, BACKENDS[0][0], BACKENDS[1][0]]))
    opts = draw(st.one_of(st.just(b""), st.just(OPTION), _option_bytes()))
    payload = draw(st.binary(max_size=64))
    dport = draw(st.sampled_from([NODE_PORT, 80, draw(st.integers(0, 65535))]))
    base = bytearray(ipv4_frame(opts=opts, payload=payload, proto=17 if proto == 17 else 6,
                                src=src, dst=dst, dport=dport))
    base[23] = proto
    ihl = (base[14] & 0x0F) * 4
    l4 = 14 + ihl
    if draw(st.booleans()):
        base[l4 : l4 + 2] = draw(st.sampled_from((*CLIENT_PORTS, 80))).to_bytes(2, "big")
    if proto == 6 and draw(st.booleans()):
        base[l4 + 13] = draw(st.integers(0, 255))  # TCP flags
    if draw(st.booleans()):
        base[14] = 0x40 | draw(st.integers(0, 15))
    if draw(st.booleans()):
        base[16:18] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    if draw(st.booleans()):
        base[20:22] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    base[22] = draw(st.sampled_from([64, 1, 0, 255]))
    if draw(st.booleans()):  # keep the header checksum right for the new fields
        h = (base[14] & 0x0F) * 4
        if h >= 20 and 14 + h <= len(base):
            base[24:26] = b"\0\0"
            base[24:26] = checksum(bytes(base[14 : 14 + h])).to_bytes(2, "big")
    cut = draw(st.one_of(st.none(), st.integers(14, len(base))))
    frame = bytes(base[:cut] if cut is not None else base)
    return frame + bytes(draw(st.sampled_from([0, 0, 6, 40])))


@pytest.mark.bpf
@pytest.mark.netns
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=structured_frames())
def test_property_every_result_meets_the_invariant(lab: Lab, frame: bytes) -> None:
    with nsutil.in_netns(lab.netns):
        for program, validating in (("dsr_from_netdev", True), ("dsr_to_netdev", False)):
            res = make_run_fn(lab.dp, program, lab.ifindex)(frame)
            if res is None:
                continue  # the kernel refused it: the program never ran
            problems = check_result(frame, res, validating=validating)
            assert problems == [], f"{program} on {frame.hex()}: {problems}"


# --- the harness catches a broken datapath -----------------------------------------------


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_finds_a_deliberately_broken_program(tmp_path: Path, lab: Lab) -> None:
    """dsr.c without the IP checksum fix after inserting the option: the fuzz must fail."""
    dp_build.copy_sources(tmp_path)
    opt = tmp_path / "lib" / "dsr_opt.h"  # where the option is inserted
    code = opt.read_text()
    fix = "\tif (bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, (__u32)diff, 0))\n\t\treturn DROP_CSUM;\n"
    assert fix in code
    opt.write_text(code.replace(fix, ""))
    with DatapathObject.load(build_object(source_dir=tmp_path, cache_dir=tmp_path / "c")) as dp:
        configure(dp)
        with nsutil.in_netns(lab.netns):
            r = fuzz("dsr_from_netdev", make_run_fn(dp, "dsr_from_netdev", lab.ifindex),
                     FrameGenerator(5).frames(3000), validating=True)
    assert r.failures > 0
    assert all("IP header checksum wrong" in " ".join(f.problems) for f in r.findings)
