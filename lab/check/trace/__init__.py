"""Expected traces: a scenario's claims as data, checked on a capture set.

``load_trace(path)`` reads and validates a ``*.trace.yaml``;
``check_trace(trace, CaptureDir.load(dir))`` returns a :class:`TraceResult`
with a verdict per claim and, for every miss, the closest packet and a
per-field diff (:mod:`lab.check.trace.results` writes it as ``results.json`` and
reads it back).
"""

from lab.check.trace.check import check_trace
from lab.check.trace.model import Trace, TraceError, load_trace, parse_trace
from lab.check.trace.results import CheckResult, ClaimVerdict, FieldDiff, TraceResult

__all__ = ["CheckResult", "ClaimVerdict", "FieldDiff", "Trace", "TraceError", "TraceResult",
           "check_trace", "load_trace", "parse_trace"]
