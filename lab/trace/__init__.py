"""Expected traces: a scenario's claims as data, checked on a capture set.

``load_trace(path)`` reads and validates a ``*.trace.yaml``;
``check_trace(trace, CaptureDir.load(dir))`` returns a :class:`TraceResult`
with a verdict per claim and, for every miss, the closest packet and a
per-field diff.
"""

from lab.trace.check import CheckResult, ClaimVerdict, FieldDiff, TraceResult, check_trace
from lab.trace.model import Trace, TraceError, load_trace, parse_trace

__all__ = ["CheckResult", "ClaimVerdict", "FieldDiff", "Trace", "TraceError", "TraceResult",
           "check_trace", "load_trace", "parse_trace"]
