"""dsrlab's pytest plugin: options, markers, skip helpers and lab fixtures.

Registered through the ``pytest11`` entry point ``dsrlab``; the library
(``lab``) never imports pytest, everything pytest-specific lives here.

Fixtures (name, scope, depends on):

* ``root_namespace_guard`` (session, autouse): snapshots the root network
  namespace before the session and fails the session's last teardown if
  links, addresses, routes, qdiscs or forwarding sysctls changed.
* ``seed_topology`` (session): ``topologies/seed.yaml`` as a Topology.
* ``seed_lab`` (module; seed_topology): the seed brought up on netns with
  the datapath and pod servers; always taken down.
* ``captures_root`` (session): where scenario runs write capture sets.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import rootsnap
from lab.backends.netns import NetnsBackend, NetnsLab
from lab.topology import Topology, load_topology

REPO = Path(__file__).resolve().parent.parent
SEED_TOPOLOGY = REPO / "topologies" / "seed.yaml"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dsrlab")
    group.addoption("--dsrlab-captures", default=None, metavar="DIR",
                    help="where scenario capture sets go (default: captures/ in the repo)")
    group.addoption("--dsrlab-backend", default="netns", choices=("netns", "kind"),
                    help="backend for scenario tests (default: netns)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: needs root and network namespaces")
    config.addinivalue_line("markers", "bpf: loads eBPF programs through the verifier")
    config.addinivalue_line("markers", "kind: needs a real kind cluster (Docker engine)")
    config.addinivalue_line("markers", "scenario: runs a whole scenario end to end")


def require_root() -> None:
    """Skip the calling test unless running as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, BPF, tcpdump)")


def require_cmd(*names: str) -> None:
    """Skip the calling test unless every command is on PATH."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (run `make install`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, BPF, tcpdump)")
    for item in items:
        if item.get_closest_marker("netns") or item.get_closest_marker("bpf"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def root_namespace_guard() -> Iterator[rootsnap.RootSnapshot | None]:
    """The root namespace must look the same after the session as before it."""
    if os.geteuid() != 0:
        yield None
        return
    before = rootsnap.take()
    yield before
    changes = rootsnap.diff(before, rootsnap.take())
    if changes:
        pytest.fail("the test session changed the root network namespace:\n  "
                    + "\n  ".join(changes), pytrace=False)


@pytest.fixture(scope="session")
def seed_topology() -> Topology:
    return load_topology(SEED_TOPOLOGY)


@pytest.fixture(scope="module")
def seed_lab(seed_topology: Topology) -> Iterator[NetnsLab]:
    require_root()
    with NetnsBackend().up(seed_topology) as lab:
        yield lab


@pytest.fixture(scope="session")
def captures_root(request: pytest.FixtureRequest) -> Path:
    opt = request.config.getoption("--dsrlab-captures")
    return Path(opt) if opt else REPO / "captures"
