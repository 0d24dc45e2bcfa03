"""Wires dsrlab's pytest plugin; fixtures and options live in lab/pytest_plugin.py.

The plugin is registered by the ``pytest11`` entry point when dsrlab is
installed (``make install``); this only makes a bare checkout work too.

One repository rule lives here: a test session leaves the user's
``captures/`` (and its ``latest`` links) exactly as it found it, or does not
create it (``repo_captures_untouched``); scenario runs write under pytest's
temporary directory unless ``--dsrlab-captures`` names a folder.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugin.captures_guard import CAPTURES, describe_change, snapshot

# pytester: the suite runs inner pytest sessions to test the plugin itself
pytest_plugins = ["pytester"]
if not any(ep.name == "dsrlab" for ep in importlib.metadata.entry_points(group="pytest11")):
    pytest_plugins.append("lab.pytest_plugin")


@pytest.fixture(scope="session", autouse=True)
def repo_captures_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """The whole session must leave REPO/captures as it was (or absent if it was).

    Skipped when this session was told to write there (``--dsrlab-captures``
    naming the repo's captures/). A ``dsrlab run`` of your own during the
    session changes it too, and is reported the same way.
    """
    opt = request.config.getoption("--dsrlab-captures")
    if opt and Path(opt).resolve() == CAPTURES.resolve():
        yield
        return
    before = snapshot()
    yield
    changes = describe_change(before, snapshot())
    if changes:
        pytest.fail("the test session changed the repository's captures/ (tests must write "
                    "capture sets under a temporary folder):\n  " + "\n  ".join(changes),
                    pytrace=False)
