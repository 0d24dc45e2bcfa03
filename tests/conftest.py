"""Fixtures shared by the whole suite.

* ``seed_capture`` (session): one real run of the seed scenario on the
  netns backend, in a temporary folder; its capture set directory (pcaps,
  manifest.json, results.json, merged.pcapng, report.html/.md), all written
  by the run itself. Tests that only read a seed capture set use this
  instead of running the seed again. Never write into it: copy it first
  (``seed_capture_copy``); the fixture fails the session if it was changed.
* ``seed_capture_copy`` (function): a private copy of that directory.

The repository-wide rule that a session leaves ``captures/`` alone is in
the root conftest.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.pytest_plugin import require_cmd, require_root
from tests.plugin.captures_guard import describe_change, snapshot

# helpers whose asserts are a test's own: pytest explains them as it does a test's
# (before any test module imports them)
pytest.register_assert_rewrite("tests.datapath.fuzzcheck")


@pytest.fixture(scope="session")
def seed_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root()
    require_cmd("tcpdump", "curl", "clang")
    from lab.runner.scenario import run_scenario  # noqa: PLC0415

    run = run_scenario("seed", captures_root=tmp_path_factory.mktemp("seed-captures"))
    assert run.passed, run.result.summary() if run.result else "no result"
    before = snapshot(run.capture_dir)
    yield run.capture_dir
    changes = describe_change(before, snapshot(run.capture_dir), run.capture_dir)
    if changes:
        pytest.fail("a test wrote into the shared seed capture set (use seed_capture_copy):"
                    "\n  " + "\n  ".join(changes), pytrace=False)


@pytest.fixture
def seed_capture_copy(seed_capture: Path, tmp_path: Path) -> Path:
    dest = tmp_path / seed_capture.name
    shutil.copytree(seed_capture, dest)
    return dest
