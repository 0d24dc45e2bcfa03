"""The harness the datapath fuzz tests share, kept free of hypothesis.

Importing hypothesis costs seconds (17 s under QEMU/TCG), so the parts both
the full fuzz (``test_fuzz_datapath.py``) and the smoke
(``test_fuzz_smoke.py``) need live here, importing only the generator and
the library:

* reference frames and fake results for the checker's own tests
  (:func:`ipv4_frame`, :func:`lb_rewrite`, :func:`rebuild`, :func:`result`);
* the programs under fuzz: :func:`fuzz_lab` (a scratch namespace with the
  object loaded and :func:`configure`\\ d), :func:`frame_source` (the seeded
  frames, the same for both programs);
* one run of each program (:func:`run_ingress`, :func:`run_egress`) and what
  the tests expect of it (:data:`INGRESS_VERDICTS`, :data:`INGRESS_EVENTS_HIT`,
  :data:`INGRESS_DROPS_HIT`, :data:`EGRESS_VERDICTS`).

The fixtures themselves stay in the test modules: each sizes its own frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from lab.datapath import BackendEntry, DatapathObject, RevnatEntry, build_object
from lab.datapath.runner import (
    IFA_F_NODAD,
    NEIGH_PERMANENT,
    RT_SCOPE_LINK,
    node_mac,
    setup_namespace,
)
from lab.datapath.testrun import TestRunResult
from lab.plumbing import nsutil
from lab.plumbing.names import netns_name, new_run_id
from lab.wire.checksum import checksum, pseudo_header
from lab.wire.endpoint import Endpoint
from tests.datapath.fuzzgen import (
    FAMILIES6,
    FrameGenerator,
    FuzzReport,
    Targets,
    fuzz,
    is_malformed,
    make_run_fn,
)
from tests.seed import CLIENT_IP, NODE_PORT, OPTION, POD_IP, POD_PORT, VIP

TARGETS = Targets()  # the seed's client, service and backends
BACKENDS = TARGETS.backends
CLIENT_PORTS = TARGETS.client_ports
FUZZ_SEED = 2024  # the frames both programs get (the smoke's are the first of the full run's)
OVERSHOOT = 1.15  # the kernel refuses some test-run input: generate this much more
KEEP_IN_MEMORY = 200_000  # above this, each program regenerates the (seeded) frames

INGRESS, EGRESS = "dsr_from_netdev", "dsr_to_netdev"
INGRESS_VERDICTS = frozenset({"ok", "redirect", "shot"})
# egress rewrites or passes; it drops only a TCP/UDP fragment it cannot place (as
# Cilium's nodeport path), each counted under its reason
EGRESS_VERDICTS = frozenset({"ok", "shot"})
FRAGMENT_DROPS = frozenset({"drop_frag_nosupport", "drop_frag_not_found"})
# the interesting code ran on the input, not only the early exits
INGRESS_EVENTS_HIT = frozenset({
    "opt_inserted", "dnat", "fib_redirect", "backend_learned", "backend_cleared",
    "ttl_expired_pass", "fib_pass", "pass_not_ipv4", "pass_other_proto"})
# IPv6 (FrameGenerator(ipv6=True)): the extension inserted and learned, the rule on
# extension headers, malformed IPv6 dropped by name
INGRESS_HIT6 = frozenset({"drop_ipv6_exthdr", "pass_ipv6_exthdr"})
INGRESS_DROPS_HIT = frozenset({
    "drop_bad_version", "drop_bad_ihl", "drop_bad_tot_len", "drop_truncated_l4",
    "drop_opt_too_long"})


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
    """``frame``'s IPv4 header with these options, destination and TTL, then ``l4``."""
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
    """A test-run result as the datapath would give it, fields overridden by ``kw``."""
    base = TestRunResult(retval={"ok": 0, "shot": 2, "redirect": 7}.get(verdict, 99),
                         verdict=verdict, data=data, duration_ns=0, cb=(0, 0, 0, 0, 0),
                         drop_reason=None, redirect_ifindex=3 if verdict == "redirect" else None)
    return replace(base, **kw)  # type: ignore[arg-type]


# --- the programs under fuzz -------------------------------------------------------------


@dataclass
class Lab:
    netns: str
    ifindex: int
    dp: DatapathObject


def configure(dp: DatapathObject) -> None:
    """Services for the LB path, learned entries for the reply path, seeded selection;
    IPv4 and IPv6 alike."""
    dp.set_selection_seed(1)
    t = TARGETS
    for proto in ("tcp", "udp"):
        dp.add_service(VIP, NODE_PORT, proto, dsr=True,
                       backends=[BackendEntry(ip, port) for ip, port in BACKENDS])
        dp.add_service(*t.service6, proto, dsr=True,  # type: ignore[arg-type]
                       backends=[BackendEntry(ip, port) for ip, port in t.backends6])
        for ip, port in BACKENDS:
            for cport in CLIENT_PORTS:
                dp.add_revnat(RevnatEntry(CLIENT_IP, cport, ip, port, proto, VIP, NODE_PORT))
        for ip, port in t.backends6:
            for cport in CLIENT_PORTS:
                dp.add_revnat(RevnatEntry(t.client6, cport, ip, port, proto, *t.service6))


def add_ipv6_routes(netns: str, ifindex: int) -> None:
    """The IPv6 service's address on eth0 and a /128 route plus a permanent neighbour per
    IPv6 backend, IPv6 forwarding on: the LB's IPv6 FIB lookups succeed."""
    nsutil.write_sysctl(netns, "net.ipv6.conf.all.forwarding", 1)
    with nsutil.open_iproute(netns) as ipr:
        ipr.addr("add", index=ifindex, address=TARGETS.service6[0], prefixlen=128,
                 flags=IFA_F_NODAD)
        for ip, _port in TARGETS.backends6:
            ipr.route("add", dst=ip, dst_len=128, oif=ifindex, scope=RT_SCOPE_LINK, family=10)
            ipr.neigh("add", dst=ip, lladdr=node_mac(ip), ifindex=ifindex,
                      state=NEIGH_PERMANENT, family=10)


@contextmanager
def fuzz_lab(tag: str = "fuzz") -> Iterator[Lab]:
    """A scratch namespace shaped for the seed's service, the built object loaded and
    :func:`configure`\\ d; both gone on exit."""
    name = netns_name(new_run_id(), tag)
    with nsutil.scratch(name):
        idx = setup_namespace(name, Endpoint(VIP, NODE_PORT),
                              [Endpoint(ip, port) for ip, port in BACKENDS])
        add_ipv6_routes(name, idx)
        with DatapathObject.load(build_object()) as dp:
            configure(dp)
            yield Lab(name, idx, dp)


def frames_with_malformed(seed: int, malformed: int) -> Iterator[tuple[str, bytes]]:
    """Generated frames until ``malformed`` of them are malformed."""
    gen = FrameGenerator(seed, ipv6=True)
    bad = 0
    while bad < malformed:
        family, frame = gen.frame()
        bad += is_malformed(family)
        yield family, frame


FrameSource = Callable[[], Iterable[tuple[str, bytes]]]


def frame_source(packets: int, seed: int = FUZZ_SEED) -> FrameSource:
    """The same seeded frames on every call, enough that at least ``packets`` malformed
    ones run: kept in memory up to :data:`KEEP_IN_MEMORY`, regenerated above."""
    target = int(packets * OVERSHOOT)
    if packets <= KEEP_IN_MEMORY:
        kept = list(frames_with_malformed(seed, target))
        return lambda: kept
    return lambda: frames_with_malformed(seed, target)


def report_text(r: FuzzReport) -> str:
    """The summary and the first findings, input and output in hex."""
    lines = [r.summary()]
    for f in r.findings[:5]:
        lines.append(f"  #{f.index} {f.family}: {'; '.join(f.problems)}")
        lines.append(f"    in  {f.frame.hex()}")
        lines.append(f"    out {f.output.hex()}")
    return "\n".join(lines)


@dataclass
class IngressRun:
    report: FuzzReport
    hit: set[str]  # the counters the run raised


@dataclass
class EgressRun:
    report: FuzzReport
    rewritten: int  # how far the revnat_rewrite counter rose
    drops: dict[str, int]  # how far each drop counter rose


def run_ingress(lab: Lab, frames: Iterable[tuple[str, bytes]]) -> IngressRun:
    """The ingress program over ``frames``, validating (it must drop malformed IPv4)."""
    with nsutil.in_netns(lab.netns):
        before = lab.dp.counters()
        r = fuzz(INGRESS, make_run_fn(lab.dp, INGRESS, lab.ifindex), frames, validating=True)
        after = lab.dp.counters()
    return IngressRun(r, {k for k in after if after[k] > before[k]})


def run_egress(lab: Lab, frames: Iterable[tuple[str, bytes]]) -> EgressRun:
    """The egress program over ``frames`` (it may pass what it got)."""
    with nsutil.in_netns(lab.netns):
        before = lab.dp.counters()
        r = fuzz(EGRESS, make_run_fn(lab.dp, EGRESS, lab.ifindex), frames)
        after = lab.dp.counters()
    drops = {k: after[k] - before[k] for k in after
             if k.startswith("drop_") and after[k] > before[k]}
    return EgressRun(r, after["revnat_rewrite"] - before["revnat_rewrite"], drops)


def expect_sound_ingress(run: IngressRun, packets: int) -> None:
    """What an ingress fuzz run of ``packets`` malformed frames must show (the smoke's
    and the full run's; pytest rewrites these asserts: tests/conftest.py)."""
    r = run.report
    print(report_text(r))
    assert r.failures == 0, report_text(r)
    assert r.malformed_ran >= packets
    assert r.ran >= 0.85 * r.generated
    assert set(r.verdicts) == INGRESS_VERDICTS
    # the interesting code ran on this input, not only the early exits
    assert run.hit >= INGRESS_EVENTS_HIT
    assert run.hit >= INGRESS_DROPS_HIT
    assert run.hit & FRAGMENT_DROPS  # fragments it could not place, dropped by name
    assert run.hit >= INGRESS_HIT6  # IPv6's paths too
    assert all(r.ran_by_family[f] > 0 for f in FAMILIES6)


def expect_sound_egress(run: EgressRun, packets: int) -> None:
    """What an egress fuzz run of ``packets`` malformed frames must show."""
    r = run.report
    print(report_text(r))
    assert r.failures == 0, report_text(r)
    assert r.malformed_ran >= packets
    assert set(r.verdicts) <= EGRESS_VERDICTS
    assert set(run.drops) <= FRAGMENT_DROPS, run.drops  # no other drop on the way out
    assert r.verdicts.get("shot", 0) == sum(run.drops.values())
    assert run.rewritten == r.changed > 0.02 * r.ran
