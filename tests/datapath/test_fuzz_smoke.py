"""A cheap fuzz of the datapath: both programs over a few thousand malformed frames.

The same harness and invariant as ``test_fuzz_datapath.py`` (see
``tests/datapath/fuzzcheck.py`` and ``check_result`` in
``tests/datapath/fuzzgen.py``), at a fixed small size and without
hypothesis, whose import alone takes 17 s in a QEMU/TCG guest: this module
must not import it, directly or through what it imports. The frames are
seeded (:data:`~tests.datapath.fuzzcheck.FUZZ_SEED`), the first ones of the
full run's, so a failure here shows there too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.datapath.fuzzcheck import (
    FrameSource,
    Lab,
    expect_sound_egress,
    expect_sound_ingress,
    frame_source,
    fuzz_lab,
    run_egress,
    run_ingress,
)

SMOKE_PACKETS = 2000  # malformed frames each program runs on, at least


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with fuzz_lab("fuzz-smoke") as made:
        yield made


@pytest.fixture(scope="module")
def frames() -> FrameSource:
    return frame_source(SMOKE_PACKETS)


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_smoke_ingress_program(lab: Lab, frames: FrameSource) -> None:
    expect_sound_ingress(run_ingress(lab, frames()), SMOKE_PACKETS)


@pytest.mark.bpf
@pytest.mark.netns
def test_fuzz_smoke_egress_program(lab: Lab, frames: FrameSource) -> None:
    expect_sound_egress(run_egress(lab, frames()), SMOKE_PACKETS)
