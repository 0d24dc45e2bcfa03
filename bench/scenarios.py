"""Benchmark: ``dsrlab run --all`` (every scenario) against ``dsrlab run seed``.

All as whole processes with stdout a pipe, as a CI log runs them, capture
sets in a temporary folder: first the seed alone (the baseline: one
scenario end to end), then every scenario of ``scenarios/`` one at a time
(``-j 1``), then as ``run --all`` does by default (``-j`` the CPUs, each
scenario in its own lab). Records how many scenarios ran, passed, failed and
were skipped (from the lines ``run --all`` prints as each ends), the wall time
of each, and the ratios (the whole set in seeds, and ``-j 1`` over the
default). Writes bench/results/scenarios.json (the README's figures block
reads it).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "scenarios.json"
DSRLAB = [sys.executable, "-m", "lab.cli"]
LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+): (\S+), ")


def timed(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    out = subprocess.run([*DSRLAB, *args], capture_output=True, text=True, check=False,
                         cwd=REPO)
    return time.perf_counter() - t0, out


def _verdicts(stdout: str) -> dict[str, str]:
    """Scenario -> verdict, from the line ``run --all`` prints as each ends."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            found[m[3]] = m[4]
    return found


def main() -> int:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dsrlab-bench-") as tmp:
        seed_s, seed = timed(["run", "seed", "--no-screenshot", "--captures", tmp])
        if seed.returncode != 0:
            print(seed.stdout + seed.stderr, file=sys.stderr)
            return 1
        one_s, one = timed(["run", "--all", "-j", "1", "--no-screenshot", "--captures", tmp])
        all_s, every = timed(["run", "--all", "--no-screenshot", "--captures", tmp])
    verdicts, verdicts_one = _verdicts(every.stdout), _verdicts(one.stdout)
    counts = {v: sum(1 for x in verdicts.values() if x == v)
              for v in sorted(set(verdicts.values()))}
    doc = {
        "benchmark": "scenarios",
        "what": "dsrlab run --all (every scenario, piped; -j 1 and the default -j) and "
                "dsrlab run seed, whole processes, wall time",
        "cpus": os.cpu_count(),
        # other work on the machine stretches the times: the load before and after
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "kernel": platform.release(),
        "scenarios": len(verdicts),
        "verdicts": counts,
        "not_passed": {k: v for k, v in verdicts.items() if v != "pass"},
        "not_passed_one_by_one": {k: v for k, v in verdicts_one.items() if v != "pass"},
        "last_line": every.stdout.splitlines()[-1] if every.stdout else "",
        "seconds": {"run_all": round(all_s, 1), "run_all_j1": round(one_s, 1),
                    "run_seed": round(seed_s, 2)},
        "ratios": {"run_all_over_seed": round(all_s / seed_s, 2),
                   "run_all_j1_over_seed": round(one_s / seed_s, 2),
                   "j1_over_default_jobs": round(one_s / all_s, 2)},
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0 if verdicts else 1


if __name__ == "__main__":
    sys.exit(main())
