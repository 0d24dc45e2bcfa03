"""Timing tc programs with the kernel's repeat (BPF_PROG_TEST_RUN), and the floor.

:class:`EmptyProgram` loads ``bpf/empty.c`` (a tc program returning
``TC_ACT_OK``), the floor every path is compared against: timed the same
way, it is the cost of the test-run loop itself. :func:`time_program` runs a
program ``rounds`` times with ``repeat`` repetitions each and returns the
kernel's ns per repetition of every round.

The kernel repeats the program on the *same* skb: whatever a repetition
writes into the frame, the next one sees. A timing is only the path it
claims to be when the frame and the maps lead every repetition down that
path; ``bench/datapath.py`` arranges that per path and says how.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lab.datapath import libbpf
from lab.datapath.build import EMPTY_SOURCE, build_object
from lab.datapath.errors import DatapathError
from lab.datapath.loader import open_and_load
from lab.datapath.testrun import TestRunResult, run_program

EMPTY_PROGRAM = "empty"


class EmptyProgram:
    """``bpf/empty.c`` loaded: ``fd`` is its program; use as a context manager."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or build_object(source=EMPTY_SOURCE)
        lib = libbpf.lib()
        obj, self._log_buf = open_and_load(self.path)
        self._obj: int | None = obj
        prog = lib.bpf_object__find_program_by_name(obj, EMPTY_PROGRAM.encode())
        if not prog:
            self.close()
            raise DatapathError(f"{self.path} has no program {EMPTY_PROGRAM}")
        self.fd = libbpf.check(lib.bpf_program__fd(prog), f"fd of {EMPTY_PROGRAM}")

    def run(self, frame: bytes, repeat: int = 1) -> TestRunResult:
        if self._obj is None:
            raise DatapathError("the empty program is closed")
        return run_program(self.fd, frame, repeat=repeat)

    def close(self) -> None:
        if self._obj is not None:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> EmptyProgram:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Timing:
    """Kernel ns per repetition of each round, and how they were taken."""

    name: str
    repeat: int
    rounds: list[int]
    verdict: str

    @property
    def median(self) -> float:
        return float(statistics.median(self.rounds))

    @property
    def mean(self) -> float:
        return statistics.fmean(self.rounds)

    @property
    def packets(self) -> int:
        return self.repeat * len(self.rounds)

    def to_json(self) -> dict[str, object]:
        return {
            "ns_per_pkt_median": self.median,
            "ns_per_pkt_mean": round(self.mean, 2),
            "ns_per_pkt_min": min(self.rounds),
            "ns_per_pkt_max": max(self.rounds),
            "repeat": self.repeat,
            "rounds": len(self.rounds),
            "packets": self.packets,
            "verdict": self.verdict,
        }


def time_program(
    name: str,
    run: Callable[[int], TestRunResult],
    *,
    repeat: int,
    rounds: int,
    before_round: Callable[[], None] | None = None,
) -> Timing:
    """``rounds`` calls of ``run(repeat)``; the kernel's ns per repetition of each.

    ``before_round`` resets whatever state the path needs (called before
    every round, outside the timed part).
    """
    if repeat < 1 or rounds < 1:
        raise ValueError("repeat and rounds must be >= 1")
    results: list[int] = []
    verdict = ""
    for _ in range(rounds):
        if before_round is not None:
            before_round()
        res = run(repeat)
        results.append(res.duration_ns)
        verdict = res.verdict
    return Timing(name, repeat, results, verdict)
