"""Fixtures of the live-lab tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.env.netns import NetnsBackend, NetnsLab
from lab.model.topology import Topology

READY_S = 60.0  # what a process may take to start (a guest under TCG: seconds)


@pytest.fixture
def fault_lab(seed_topology: Topology) -> Iterator[NetnsLab]:
    """The seed, up for one test (faults change it), its pods served (the server
    process can take seconds to start on an emulated CPU: the kernel matrix)."""
    with NetnsBackend().up(seed_topology) as up:
        assert up.servers is not None
        up.servers.wait_ready(READY_S)
        yield up
