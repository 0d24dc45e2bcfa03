"""A capture's kernel rings are sized from the scenario's traffic (cleared whole when
tcpdump starts, the rings are most of a small run's CPU): large enough to hold every
frame twice over, whatever tcpdump read meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.capture.live import RING_KIB, RING_MIN_KIB, ring_for_frames, ring_memory, ring_sizes
from lab.capture.manifest import Manifest
from lab.model.scenario import all_scenarios, load_scenario
from lab.runner.scenario import expected_frames, run_scenario

FRAME = 9312  # what a frame takes of the ring at the lab's snap length (9216 + 96, aligned)


def test_a_ring_holds_twice_the_frames_asked_for() -> None:
    for frames in (1, 56, 640, 960, 2000):
        kib = ring_for_frames(frames)
        assert RING_MIN_KIB <= kib <= RING_KIB
        if kib < RING_KIB:
            assert kib * 1024 // FRAME >= 2 * frames
    assert ring_for_frames(None) == RING_KIB
    assert ring_memory(ring_for_frames(10)) < ring_memory(RING_KIB)


def test_the_busy_points_get_the_ring_and_the_others_no_more() -> None:
    assert ring_sizes(["client", "lb-node", "pod"], 4096) == [4096, 4096, 4096]
    assert ring_sizes(["client", "lb-node"], 10**9) == [RING_KIB, RING_KIB]
    assert ring_sizes(["client"], 1) == [RING_MIN_KIB]


def test_unbounded_traffic_keeps_the_largest_rings() -> None:
    bounds = {p.stem: expected_frames(load_scenario(p)[0]) for p in all_scenarios()}
    assert bounds["link-down-mid-transfer"] is None  # a transfer
    assert bounds["replay-seed"] is None  # a replayed capture
    assert bounds["compare-modes"] is None
    seed, _ = load_scenario("seed")
    assert bounds["seed"] == seed.requests.max * 24  # each exchange's frames


@pytest.mark.netns
@pytest.mark.parametrize("name", ["seed", "mtu/udp-fragmented-answer",
                                  "failures/syn-with-ip-options"])
def test_what_a_run_captures_is_within_its_bound(tmp_path: Path, name: str) -> None:
    scenarios = Path(__file__).resolve().parents[2] / "scenarios"
    path = scenarios / f"{name}.yaml" if "/" in name else scenarios / "seed.yaml"
    run = run_scenario(path, captures_root=tmp_path)
    assert run.passed, run.result.summary() if run.result else "no result"
    bound = expected_frames(load_scenario(path)[0])
    assert bound is not None
    manifest = Manifest.read(run.capture_dir)
    for point in manifest.points:
        assert (point.packets or 0) <= bound, point.name
        assert not point.dropped, point.name
