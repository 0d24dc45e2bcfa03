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


class IngressIfindexRefused(DatapathError):
    """This kernel's BPF_PROG_TEST_RUN takes no ``ingress_ifindex`` in the context
    (Linux before 5.16 refuses a nonzero one with EINVAL), and the lab's programs look
    up routes from the device a packet came in on: they cannot be test-run here."""

    def __init__(self) -> None:
        super().__init__(
            "this kernel's BPF_PROG_TEST_RUN refuses a context with ingress_ifindex "
            "(Linux 5.16 added it), which the datapath's route lookups read: test runs "
            "need 5.16; the datapath runs live on this kernel")


class TestRunRefused(DatapathError):
    """BPF_PROG_TEST_RUN refused the frame (EINVAL) before the program ran."""

    __test__ = False  # not a pytest test class, despite the name
