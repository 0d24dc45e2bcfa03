"""The differential fuzz: the datapath fuzzer's frames through the lab's datapath and
Cilium's own (``lb``), every disagreement in a known, explained class
(``tests/datapath/cilium/diffclasses.py``), the documented differences (the 1.13
TTL, the IPv6 hop limit) accepted and still counted. One run per family: IPv4 and
IPv6 (Geneve dispatch is not compared: its key and option are skb metadata a
test run does not return).

``make test`` runs :data:`SMOKE_FRAMES` frames per Cilium version found and family
(a few seconds each); ``make fuzz`` (``make fuzz-diff``) sets ``DSRLAB_FUZZ_DIFF_FRAMES``.
"""

from __future__ import annotations

import os

from lab.datapath.cilium.source import CiliumSource
from lab.pytest_plugin import require_root
from tests.datapath.cilium.diffclasses import CLASSES, Family, run_diff_fuzz

SMOKE_FRAMES = 400
FRAMES = int(os.environ.get("DSRLAB_FUZZ_DIFF_FRAMES", str(SMOKE_FRAMES)))


def test_lab_and_cilium_agree_on_the_fuzz_corpus_but_for_explained_classes(
        cilium_source: CiliumSource) -> None:
    require_root()
    run = run_diff_fuzz(cilium_source, FRAMES)
    print(run.report())
    assert not run.unexplained, run.report()
    s = run.summary
    assert s.packets == FRAMES
    assert set(run.classes) <= set(CLASSES)
    # the corpus reaches the interesting paths on both: frames changed the same way,
    # frames both let through untouched, frames both drop
    assert s.kinds["unchanged"] > 0.2 * FRAMES
    assert s.kinds["dropped_by_both"] > 0
    assert s.disagreements == sum(run.classes.values())  # each one has its class
    if cilium_source.version.at_least(1, 16):
        assert s.kinds["equal"] > 0.05 * FRAMES  # forwarded, rewritten identically
        # forwarded alike but for Cilium's option on a later fragment (1 in 100,000)
        assert s.kinds["different"] == run.classes["cilium_option_on_a_later_fragment"]
        assert s.kinds["accepted"] == 0
    else:
        # the documented TTL difference is accepted, and counted, not hidden
        assert s.kinds["accepted"] > 0.05 * FRAMES
        assert set(s.accepted_fields) == {"[IP].ttl (known)"}
    # the classes this corpus always shows (at this size and seed)
    assert run.classes["lab_drops_malformed_ipv4"] > 0


SMOKE_FRAMES6 = 300
FRAMES6 = int(os.environ.get("DSRLAB_FUZZ_DIFF_FRAMES", str(SMOKE_FRAMES6)))
IPV6: Family = 6


def test_lab_and_cilium_agree_on_the_ipv6_fuzz_corpus_but_for_explained_classes(
        cilium_source: CiliumSource) -> None:
    require_root()
    run = run_diff_fuzz(cilium_source, FRAMES6, IPV6)
    print(run.report())
    assert not run.unexplained, run.report()
    s = run.summary
    assert s.packets == FRAMES6
    assert set(run.classes) <= set(CLASSES)
    assert s.disagreements == sum(run.classes.values())  # each one has its class
    assert s.kinds["unchanged"] > 0.2 * FRAMES6  # replies, other addresses: untouched
    assert s.kinds["dropped_by_both"] > 0
    # every forwarded SYN/datagram differs by the documented hop limit only (Cilium
    # keeps it on its DSR forward): accepted, counted, not hidden; nothing else differs
    assert s.kinds["accepted"] > 0.1 * FRAMES6
    assert set(s.accepted_fields) == {"[IPv6].hlim (known)"}
    if cilium_source.version.at_least(1, 16):
        assert s.kinds["different"] == run.classes["hop_limit_expires"]
    else:  # and 1.13's misread AH chains, some of which it load-balances (4 in 20,000)
        assert s.kinds["different"] <= (run.classes["hop_limit_expires"]
                                        + run.classes["v1_13_misreads_auth_header"])
    # the classes this corpus always shows (at this size and seed)
    for name in ("lab_drops_malformed_ipv6", "lab_refuses_exthdr_to_service",
                 "cilium_drops_ipv6_fragment", "hop_limit_expires"):
        assert run.classes[name] > 0, name
