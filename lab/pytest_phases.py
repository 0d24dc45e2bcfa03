"""A pytest plugin that marks the steps of a session on the clock, for the kernel matrix.

Loaded by the matrix's guest command (``-p lab.pytest_phases``) with
``--dsrlab-phases FILE``: it appends ``session-start``, ``verifier-done``
(after every other plugin's session start, the lab's verifier report
included), ``collected`` and ``tests-done`` to FILE as ``name seconds``
lines (:mod:`lab.matrix.phases` reads them), so the matrix can say how long
Python took to start, the verifier to load the datapath, collection and the
tests themselves. Without the option it does nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.matrix.phases import append_mark


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("dsrlab").addoption(
        "--dsrlab-phases", default=None, metavar="FILE",
        help="append the session's step marks (name, seconds since the epoch) to FILE")


def _mark(config: pytest.Config, name: str) -> None:
    target = config.getoption("--dsrlab-phases", default=None)
    if not target:
        return
    append_mark(Path(target), name)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _mark(session.config, "session-start")


@pytest.hookimpl(trylast=True, wrapper=True)
def pytest_collection(session: pytest.Session) -> object:
    # the first thing after every session-start hook (the verifier's report included)
    _mark(session.config, "verifier-done")
    return (yield)


def pytest_collection_finish(session: pytest.Session) -> None:
    _mark(session.config, "collected")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # before the session's fixtures are taken down and the JUnit XML is written
    _mark(session.config, "tests-done")
