"""Fixtures shared by the whole suite.

* ``seed_capture`` (session): one real run of the seed scenario on the
  netns backend, in a temporary folder; its capture set directory (pcaps,
  manifest.json, results.json, merged.pcapng, report). Tests that only read
  a seed capture set use this instead of running the seed again. Never
  write into it: copy it first (``seed_capture_copy``).
* ``seed_capture_copy`` (function): a private copy of that directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.pytest_plugin import require_cmd, require_root


@pytest.fixture(scope="session")
def seed_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    require_cmd("tcpdump", "curl", "clang")
    from lab.runner.scenario import run_scenario  # noqa: PLC0415

    run = run_scenario("seed", captures_root=tmp_path_factory.mktemp("seed-captures"))
    assert run.passed, run.result.summary() if run.result else "no result"
    return run.capture_dir


@pytest.fixture
def seed_capture_copy(seed_capture: Path, tmp_path: Path) -> Path:
    dest = tmp_path / seed_capture.name
    shutil.copytree(seed_capture, dest)
    return dest
