"""``--dsrlab-require-backend BACKEND``: a test that cannot run for want of the backend
fails instead of skipping, and a session in which no test of it ran fails (CI's kind
job cannot pass empty). Inner pytest sessions whose PATH has no kind, kubectl, helm."""

from __future__ import annotations

import os

import pytest

KIND_TEST = """
import pytest
from lab.pytest_plugin import require_backend

@pytest.mark.kind
def test_on_kind(request):
    require_backend(request.node, "kind")
"""

NETNS_TEST = """
from lab.pytest_plugin import require_backend

def test_on_netns(request):
    require_backend(request.node, "netns")

def test_other():
    pass
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
         *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_kind=KIND_TEST)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no kind, kubectl, helm, docker there
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                         "-rs", *args)


def test_without_the_option_the_kind_test_skips_saying_why(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch)
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*the kind backend needs docker, kind, kubectl, helm*"])


def test_with_the_option_the_kind_test_fails_saying_why(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, "--dsrlab-require-backend", "kind")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*--dsrlab-require-backend kind: the kind backend needs "
                                 "docker, kind, kubectl, helm*"])


def test_a_test_that_ran_on_the_backend_counts_across_xdist_workers(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root can run netns: its test passes and the session with it, also when xdist's
    workers ran the tests (the controller counts their reports)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (netns)")
    pytester.makepyfile(test_netns=NETNS_TEST)
    for extra in ((), ("-p", "xdist", "-n", "2")):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                               "--dsrlab-require-backend", "netns", *extra)
        result.assert_outcomes(passed=2)
        assert result.ret == pytest.ExitCode.OK, extra


def test_a_session_with_no_test_of_the_required_backend_fails(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-m kind` selecting nothing (or only tests that never reach the backend) is not a
    pass."""
    pytester.makepyfile(test_other="def test_other():\n    pass\n")
    result = _run(pytester, monkeypatch, "--dsrlab-require-backend", "kind", "-k", "other")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*--dsrlab-require-backend kind: no test ran on kind*"])
