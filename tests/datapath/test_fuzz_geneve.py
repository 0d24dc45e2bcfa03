"""The datapath fuzzer's Geneve part: Geneve frames at the backend's node, and the
generic fuzzer's frames at an LB node with Geneve dispatch (see
``tests/datapath/fuzzgeneve.py`` for the frames and the invariant).

A smoke size by default (part of ``make test``); ``make fuzz`` sets
``DSRLAB_FUZZ_PACKETS`` and runs it at full size. No hypothesis here (its import
is slow in a QEMU guest), only seeded generators.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lab.datapath import DatapathObject, build_object, tunnel
from lab.datapath.testrun import TestRunResult
from lab.plumbing import nsutil
from tests.datapath.fuzzcheck import BACKENDS, FUZZ_SEED, Lab, frames_with_malformed, fuzz_lab
from tests.datapath.fuzzgen import make_run_fn
from tests.datapath.fuzzgeneve import GeneveFrames, check_decap, check_encap, dsr_tlv, run_checked
from tests.seed import VIP, WORKER_IP

pytestmark = [pytest.mark.bpf, pytest.mark.netns]

PACKETS = int(os.environ.get("DSRLAB_FUZZ_PACKETS", "3000"))
INGRESS = "dsr_from_netdev"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with fuzz_lab("fuzz-geneve") as made:
        yield made


def test_geneve_frames_at_the_backend_node(lab: Lab) -> None:
    with DatapathObject.load(build_object()) as dp:
        tunnel.set_geneve(dp, WORKER_IP)
        run = make_run_fn(dp, INGRESS, lab.ifindex)
        with nsutil.in_netns(lab.netns):
            rep = run_checked(GeneveFrames(FUZZ_SEED).frames(PACKETS), run, check_decap)
            counters = dp.counters()
    print(rep)
    assert rep.findings == [], rep.findings[:3]
    assert rep.ran >= 0.9 * PACKETS
    # the decap ran, it learned, and every named Geneve drop was met
    assert counters["geneve_decap"] > 0.05 * rep.ran
    assert counters["geneve_learned"] > 0
    assert {"geneve_truncated", "geneve_bad_hdr", "geneve_bad_opt", "geneve_crit_opt",
            "geneve_inner"} <= set(rep.reasons), rep.reasons


def test_fuzzer_frames_at_an_lb_node_with_geneve_dispatch(lab: Lab) -> None:
    tunnel.set_geneve(lab.dp, VIP)
    for ip, _ in BACKENDS:
        tunnel.add_route(lab.dp, f"{ip}/32", ip)
    tlv = dsr_tlv()

    def check(frame: bytes, res: TestRunResult) -> list[str]:
        return check_encap(frame, res, tlv)

    try:
        run = make_run_fn(lab.dp, INGRESS, lab.ifindex)
        with nsutil.in_netns(lab.netns):
            before = lab.dp.counters()["geneve_encap"]
            rep = run_checked(frames_with_malformed(FUZZ_SEED, PACKETS), run, check)
            encapsulated = lab.dp.counters()["geneve_encap"] - before
    finally:
        tunnel.set_geneve(lab.dp, None, dispatch=False)
    print(rep)
    assert rep.findings == [], rep.findings[:3]
    assert encapsulated > 0.02 * rep.ran
