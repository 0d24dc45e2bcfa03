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
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.datapath import BackendEntry, DatapathObject, RevnatEntry, build_object
from lab.datapath import build as dp_build
from lab.datapath.runner import setup_namespace
from lab.datapath.testrun import TestRunResult
from lab.plumbing import nsutil
from lab.plumbing.names import netns_name, new_run_id
from lab.wire.checksum import checksum, csum_ok, pseudo_header
from lab.wire.endpoint import Endpoint
from tests.datapath.fuzzgen import (
    BAD_CSUM,
    FAMILIES,
    MAX_TEST_RUN_FRAME,
    FrameGenerator,
    FuzzReport,
    Targets,
    check_result,
    fuzz,
    is_malformed,
    make_run_fn,
)
from tests.seed import CLIENT_IP, NODE_PORT, OPTION, POD_IP, POD_PORT, VIP

PACKETS = int(os.environ.get("DSRLAB_FUZZ_PACKETS", "100000"))
EXAMPLES = int(os.environ.get("DSRLAB_FUZZ_EXAMPLES", "300"))
TARGETS = Targets()  # the seed's client, service and backends
BACKENDS = TARGETS.backends
CLIENT_PORTS = TARGETS.client_ports


# --- a reference frame and a fake result, for the checker's own tests -------------------


def ipv4_frame(*, opts: bytes = b"", payload: bytes = b"hello", proto: int = 6,
               src: str = CLIENT_IP, dst: str = VIP, dport: int = NODE_PORT) -> bytes:
    """Ethernet + IPv4 (+ options) + TCP or UDP, every checksum right."""
    s, d = bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))
    if proto == 6:
        l4 = bytearray((40000).to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(8)
                       + b"\x50\x02\x72\x10" + bytes(4) + payload)
        l4[16:18] = checksum(pseudo_header(s, d, 6, len(l4)) + l4).to_bytes(2, "big")
    else:
        l4 = bytearray((40000).to_bytes(2, "big") + dport.to_bytes(2, "big")
                       + (8 + len(payload)).to_bytes(2, "big") + bytes(2) + payload)
        l4[6:8] = checksum(pseudo_header(s, d, 17, len(l4)) + l4).to_bytes(2, "big")
    hlen = 20 + len(opts)
    hdr = bytearray(bytes([0x40 | hlen // 4, 0]) + (hlen + len(l4)).to_bytes(2, "big")
                    + bytes(4) + bytes([64, proto]) + bytes(2) + s + d + opts)
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    return bytes(12) + b"\x08\x00" + bytes(hdr) + bytes(l4)


def lb_rewrite(frame: bytes, backend: str = POD_IP, port: int = POD_PORT) -> bytes:
    """What the LB does to a SYN, done independently here: DNAT, option, TTL - 1."""
    ihl = (frame[14] & 0x0F) * 4
    opts = frame[34 : 14 + ihl]
    proto = frame[23]
    l4 = bytearray(frame[14 + ihl :])
    src, dst = frame[26:30], bytes(map(int, backend.split(".")))
    l4[2:4] = port.to_bytes(2, "big")
    coff = 16 if proto == 6 else 6
    l4[coff : coff + 2] = b"\0\0"
    l4[coff : coff + 2] = checksum(pseudo_header(src, dst, proto, len(l4)) + l4).to_bytes(
        2, "big")
    return rebuild(frame, OPTION + opts, bytes(l4), dst=dst, ttl=frame[22] - 1)


def rebuild(frame: bytes, opts: bytes, l4: bytes, *, dst: bytes, ttl: int) -> bytes:
    hlen = 20 + len(opts)
    hdr = bytearray(frame[14:34])
    hdr[0] = 0x40 | hlen // 4
    hdr[2:4] = (hlen + len(l4)).to_bytes(2, "big")
    hdr[8] = ttl
    hdr[16:20] = dst
    hdr = bytearray(hdr + opts)
    hdr[10:12] = b"\0\0"
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    return frame[:14] + bytes(hdr) + l4


def result(data: bytes, verdict: str = "redirect", **kw: object) -> TestRunResult:
    base = TestRunResult(retval={"ok": 0, "shot": 2, "redirect": 7}.get(verdict, 99),
                         verdict=verdict, data=data, duration_ns=0, cb=(0, 0, 0, 0, 0),
                         drop_reason=None, redirect_ifindex=3 if verdict == "redirect" else None)
    return replace(base, **kw)  # type: ignore[arg-type]


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
    assert "non-IPv4 frame was changed" in check_result(arp, result(arp[:-1] + b"\1", "ok"))[0]
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


# --- the programs under fuzz -------------------------------------------------------------


@dataclass
class Lab:
    netns: str
    ifindex: int
    dp: DatapathObject


def configure(dp: DatapathObject) -> None:
    """Services for the LB path, learned entries for the reply path, seeded selection."""
    dp.set_selection_seed(1)
    for proto in ("tcp", "udp"):
        dp.add_service(VIP, NODE_PORT, proto, dsr=True,
                       backends=[BackendEntry(ip, port) for ip, port in BACKENDS])
        for ip, port in BACKENDS:
            for cport in CLIENT_PORTS:
                dp.add_revnat(RevnatEntry(CLIENT_IP, cport, ip, port, proto, VIP, NODE_PORT))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    name = netns_name(new_run_id(), "fuzz")
    with nsutil.scratch(name):
        idx = setup_namespace(name, Endpoint(VIP, NODE_PORT),
                              [Endpoint(ip, port) for ip, port in BACKENDS])
        with DatapathObject.load(build_object()) as dp:
            configure(dp)
            yield Lab(name, idx, dp)


def frames_with_malformed(seed: int, malformed: int) -> Iterator[tuple[str, bytes]]:
    """Generated frames until ``malformed`` of them are malformed."""
    gen = FrameGenerator(seed)
    bad = 0
    while bad < malformed:
        family, frame = gen.frame()
        bad += is_malformed(family)
        yield family, frame


def report_text(r: FuzzReport) -> str:
    lines = [r.summary()]
    for f in r.findings[:5]:
        lines.append(f"  #{f.index} {f.family}: {'; '.join(f.problems)}")
        lines.append(f"    in  {f.frame.hex()}")
        lines.append(f"    out {f.output.hex()}")
    return "\n".join(lines)


FrameSource = Callable[[], Iterable[tuple[str, bytes]]]
KEEP_IN_MEMORY = 200_000  # above this, each program regenerates the (seeded) frames


@pytest.fixture(scope="module")
def frames() -> FrameSource:
    """The same seeded frames for both programs: kept in memory at CI size, regenerated
    for the big run (``make fuzz``)."""
    target = int(PACKETS * 1.15)
    if PACKETS <= KEEP_IN_MEMORY:
        kept = list(frames_with_malformed(2024, target))
        return lambda: kept
    return lambda: frames_with_malformed(2024, target)


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_ingress_program(lab: Lab, frames: FrameSource) -> None:
    with nsutil.in_netns(lab.netns):
        before = lab.dp.counters()
        r = fuzz("dsr_from_netdev", make_run_fn(lab.dp, "dsr_from_netdev", lab.ifindex),
                 frames(), validating=True)
        after = lab.dp.counters()
    print(report_text(r))
    assert r.failures == 0, report_text(r)
    assert r.malformed_ran >= PACKETS
    assert r.ran >= 0.85 * r.generated
    assert set(r.verdicts) == {"ok", "redirect", "shot"}
    hit = {k for k in after if after[k] > before[k]}
    # the interesting code ran on this input, not only the early exits
    assert {"opt_inserted", "dnat", "fib_redirect", "backend_learned", "backend_cleared",
            "ttl_expired_pass", "fib_pass", "pass_fragment", "pass_not_ipv4",
            "pass_other_proto"} <= hit
    assert {"drop_bad_version", "drop_bad_ihl", "drop_bad_tot_len", "drop_truncated_l4",
            "drop_opt_too_long"} <= hit


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_egress_program(lab: Lab, frames: FrameSource) -> None:
    with nsutil.in_netns(lab.netns):
        before = lab.dp.counters()["revnat_rewrite"]
        r = fuzz("dsr_to_netdev", make_run_fn(lab.dp, "dsr_to_netdev", lab.ifindex), frames())
        rewritten = lab.dp.counters()["revnat_rewrite"] - before
    print(report_text(r))
    assert r.failures == 0, report_text(r)
    assert r.malformed_ran >= PACKETS
    assert set(r.verdicts) == {"ok"}  # egress never drops, it rewrites or passes
    assert rewritten == r.changed > 0.02 * r.ran


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
    src = dp_build.bpf_source_dir()
    for f in (*src.glob("*.h"), src / "dsr.c"):
        shutil.copy(f, tmp_path / f.name)
    code = (tmp_path / "dsr.c").read_text()
    fix = "\tif (bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, (__u32)diff, 0))\n\t\treturn DROP_CSUM;\n"
    assert fix in code
    (tmp_path / "dsr.c").write_text(code.replace(fix, ""))
    with DatapathObject.load(build_object(source_dir=tmp_path, cache_dir=tmp_path / "c")) as dp:
        configure(dp)
        with nsutil.in_netns(lab.netns):
            r = fuzz("dsr_from_netdev", make_run_fn(dp, "dsr_from_netdev", lab.ifindex),
                     FrameGenerator(5).frames(3000), validating=True)
    assert r.failures > 0
    assert all("IP header checksum wrong" in " ".join(f.problems) for f in r.findings)
