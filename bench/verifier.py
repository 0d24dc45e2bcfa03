"""Benchmark: the datapath under this kernel's verifier, against its complexity limit.

Loads ``bpf/dsr.c``'s programs through the kernel's verifier (what ``dsrlab
datapath verify`` does) and records, per program, the instructions the
verifier processed (its complexity figure) and the instructions loaded.
The baseline is the verifier's own limit (1,000,000 processed instructions
per program): the ratios are each program's share of it, the early warning
before a change to ``dsr.c`` stops loading. Writes
bench/results/verifier.json (the README's figures block reads it).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.datapath.verifier import COMPLEXITY_LIMIT, verify  # noqa: E402

RESULTS = REPO / "bench" / "results" / "verifier.json"


def main() -> int:
    report = verify()
    if report.outcome != "pass":
        print(report.summary(), file=sys.stderr)
        return 1
    programs = {p.program: {"verified_insns": p.verified_insns, "xlated_insns": p.xlated_insns}
                for p in report.programs}
    doc = {
        "benchmark": "verifier",
        "what": "instructions the kernel's verifier processed per datapath program "
                "(BPF_COMPLEXITY_LIMIT_INSNS is the baseline) and instructions loaded",
        "kernel": report.kernel,
        "machine": platform.machine(),
        "limit": COMPLEXITY_LIMIT,
        "programs": programs,
        "ratios": {f"{name}_of_limit": round((p["verified_insns"] or 0) / COMPLEXITY_LIMIT, 6)
                   for name, p in programs.items()},
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    for name, p in programs.items():
        print(f"{name}: {p['verified_insns']} processed, {p['xlated_insns']} loaded")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
