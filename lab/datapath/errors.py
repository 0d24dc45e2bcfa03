"""The exception types of the datapath package."""

from __future__ import annotations

from lab.errors import LabError


class DatapathError(LabError, RuntimeError):
    """Building, loading, attaching or driving the BPF datapath failed.

    ``log`` holds the long diagnostic text when there is one: clang's stderr
    for a failed build, the verifier log (plus libbpf's messages) for a
    failed load. It is also part of ``str(exc)``.
    """

    def __init__(self, message: str, log: str = "") -> None:
        self.log = log
        super().__init__(f"{message}\n{log}" if log else message)


class TestRunRefused(DatapathError):
    """BPF_PROG_TEST_RUN refused the frame (EINVAL) before the program ran."""

    __test__ = False  # not a pytest test class, despite the name
