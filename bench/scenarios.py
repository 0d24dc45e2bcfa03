"""Benchmark: ``dsrlab run --all`` (every scenario) against ``dsrlab run seed``.

Both as whole processes with stdout a pipe, as a CI log runs them, capture
sets in a temporary folder: first the seed alone (the baseline: one
scenario end to end), then every scenario of ``scenarios/``. Records how
many scenarios ran, passed, failed and were skipped (from the lines ``run
--all`` prints as each ends), the wall time of each, and the ratios (the
whole set in seeds, and the mean scenario over the seed). Writes
bench/results/scenarios.json (the README's figures block reads it).
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


def main() -> int:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dsrlab-bench-") as tmp:
        seed_s, seed = timed(["run", "seed", "--no-screenshot", "--captures", tmp])
        if seed.returncode != 0:
            print(seed.stdout + seed.stderr, file=sys.stderr)
            return 1
        all_s, every = timed(["run", "--all", "--no-screenshot", "--captures", tmp])
    verdicts: dict[str, str] = {}
    for line in every.stdout.splitlines():
        m = LINE.match(line)
        if m:
            verdicts[m[3]] = m[4]
    counts = {v: sum(1 for x in verdicts.values() if x == v)
              for v in sorted(set(verdicts.values()))}
    doc = {
        "benchmark": "scenarios",
        "what": "dsrlab run --all (every scenario, piped) and dsrlab run seed, whole "
                "processes, wall time",
        "cpus": os.cpu_count(),
        # other work on the machine stretches the times: the load before and after
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "kernel": platform.release(),
        "scenarios": len(verdicts),
        "verdicts": counts,
        "not_passed": {k: v for k, v in verdicts.items() if v != "pass"},
        "last_line": every.stdout.splitlines()[-1] if every.stdout else "",
        "seconds": {"run_all": round(all_s, 1), "run_seed": round(seed_s, 2)},
        "ratios": {"run_all_over_seed": round(all_s / seed_s, 2),
                   "mean_scenario_over_seed": round(all_s / max(len(verdicts), 1) / seed_s, 2)},
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0 if verdicts else 1


if __name__ == "__main__":
    sys.exit(main())
