"""What the running kernel's verifier makes of the datapath: one report per kernel.

:func:`verify` loads the datapath object through the verifier and records,
per program, the instructions the verifier processed (``verified_insns``,
the figure that meets the 1,000,000 limit first) and the size of the loaded
program. A rejection is a report too: the program that failed, the count the
verifier printed, and the tail of its log. A kernel older than the
datapath's stated minimum is skipped with the reason. The kernel matrix
writes it per kernel (``dsrlab datapath verify --json``, or the pytest
option ``--dsrlab-verifier-report``).
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, TypeAdapter

from lab.datapath.errors import DatapathError
from lab.datapath.loader import LIBBPF_MARK, VERIFIER_MARK, DatapathObject
from lab.datapath.requires import KernelTooOld

COMPLEXITY_LIMIT = 1_000_000  # instructions processed per program (BPF_COMPLEXITY_LIMIT_INSNS)
LOG_TAIL = 20


class ProgramLoad(BaseModel):
    """One program as the verifier accepted it."""

    program: str
    verified_insns: int | None  # None: the kernel does not say (before 5.16)
    xlated_insns: int

    @property
    def share_of_limit(self) -> float | None:
        return None if self.verified_insns is None else self.verified_insns / COMPLEXITY_LIMIT


class VerifierReport(BaseModel):
    """The datapath under one kernel's verifier."""

    kernel: str  # uname -r
    outcome: Literal["pass", "fail", "skip"]
    datapath: str = "lab"  # whose programs: "lab", "cilium v1.13.0", ...
    features: str | None = None  # the kernel probe results the programs were built for
    programs: list[ProgramLoad] = []
    reason: str | None = None  # why it failed or was skipped (one line)
    failed_program: str | None = None
    processed_insns: int | None = None  # of the rejected program, from the verifier's log
    log_tail: list[str] = []

    def summary(self) -> str:
        """One line: the instructions processed per program, or why it did not load
        (with the rejected program's count when the verifier gave one)."""
        if self.outcome == "pass":
            return ", ".join(f"{p.program} {'?' if p.verified_insns is None else p.verified_insns}"
                             for p in self.programs) + " insns processed"
        count = (f" ({self.failed_program or 'a program'} after {self.processed_insns} "
                 "insns processed)" if self.processed_insns is not None else "")
        return f"{self.reason or self.outcome}{count}"


_REPORTS = TypeAdapter(list[VerifierReport])


def reports_json(reports: list[VerifierReport]) -> str:
    """Several reports (one per datapath: Cilium's versions) as one JSON array."""
    return _REPORTS.dump_json(reports, indent=2).decode() + "\n"


def read_reports(text: str) -> list[VerifierReport]:
    """The reports of :func:`reports_json`; :class:`ValueError` if ``text`` is not that."""
    return _REPORTS.validate_json(text)


def rejection_figures(log: str) -> tuple[str | None, int | None]:
    """(program, instructions processed) of a rejected load, from the verifier log and
    libbpf's messages; None where the text does not say."""
    prog = re.findall(r"prog '([^']+)': (?:BPF program load failed|failed to load)", log)
    processed = re.findall(r"^processed (\d+) insns", log, re.M)
    return (prog[-1] if prog else None), (int(processed[-1]) if processed else None)


def log_tail(log: str, lines: int = LOG_TAIL) -> list[str]:
    """The end of the verifier's own log (where it says why), then libbpf's lines
    that say what failed; a log without the loader's markers is tailed whole."""
    verifier, sep, libbpf_part = log.partition(LIBBPF_MARK)
    verifier = verifier.replace(VERIFIER_MARK, "")
    tail = [ln for ln in verifier.splitlines() if ln.strip()][-lines:]
    if sep:
        tail += [ln for ln in libbpf_part.splitlines() if "fail" in ln]
    return tail


def verify(path: Path | None = None, release: str | None = None) -> VerifierReport:
    """Load the datapath (``path``, default: built from ``bpf/``) and report."""
    kernel = release or platform.release()
    try:
        with DatapathObject.load(path) as obj:
            sizes = obj.program_sizes()
    except KernelTooOld as exc:
        return VerifierReport(kernel=kernel, outcome="skip", reason=str(exc))
    except DatapathError as exc:
        program, processed = rejection_figures(exc.log)
        return VerifierReport(kernel=kernel, outcome="fail",
                              reason=str(exc).splitlines()[0], failed_program=program,
                              processed_insns=processed, log_tail=log_tail(exc.log))
    return VerifierReport(kernel=kernel, outcome="pass", programs=[
        ProgramLoad(program=name, verified_insns=v, xlated_insns=x)
        for name, (v, x) in sizes.items()])
