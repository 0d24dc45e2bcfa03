"""Benchmark: ``dsrlab up`` + ``dsrlab down`` of the dual-stack seed against the seed.

Whole processes, as a user runs them: ``dsrlab up TOPOLOGY --run-id ID`` then
``dsrlab down ID``, each timed by wall clock, the two topologies interleaved
round after round in one run (the seed is the baseline). Two datapath
settings: ``none`` (the wiring alone: what IPv6 adds to namespaces, links,
addresses, routes, sysctls and the pods' sockets) and ``lab`` (``dsr.c`` on
every node, IPv6 services filled when the object has IPv6 maps; skipped for
both topologies when the dual-stack one is refused because it has none).

Prints the medians and ratios; writes bench/results/dualstack.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.env import cleanup  # noqa: E402
from lab.plumbing import names  # noqa: E402

ROUNDS = 5
RESULTS = REPO / "bench" / "results" / "dualstack.json"
TOPOLOGIES = {"seed": REPO / "topologies" / "seed.yaml",
              "dual": REPO / "topologies" / "seed-dual-stack.yaml"}


def _dsrlab(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                         text=True, timeout=300, check=False, cwd=REPO)
    return time.perf_counter() - t, out


def _up_down(topology: Path, datapath: str) -> tuple[float, float] | str:
    """(up seconds, down seconds), or why ``up`` refused."""
    run_id = names.new_run_id()
    try:
        up_s, up = _dsrlab("up", str(topology), "--run-id", run_id, "--datapath", datapath)
        if up.returncode != 0:
            return up.stderr.strip().splitlines()[-1]
        down_s, down = _dsrlab("down", run_id)
        if down.returncode != 0:
            raise RuntimeError(f"dsrlab down {run_id}: {down.stderr.strip()}")
        return up_s, down_s
    finally:  # an interrupted round leaves nothing
        for res in cleanup.find_runs([run_id]).values():
            cleanup.clean_run(res)


def main() -> None:
    out: dict[str, object] = {"rounds": ROUNDS, "unit": "seconds, median wall clock"}
    ratios: dict[str, float] = {}
    for datapath in ("none", "lab"):
        times: dict[str, dict[str, list[float]]] = {
            name: {"up": [], "down": [], "total": []} for name in TOPOLOGIES}
        refused = ""
        for _ in range(ROUNDS):
            for name, path in TOPOLOGIES.items():
                got = _up_down(path, datapath)
                if isinstance(got, str):
                    refused = f"{name}: {got}"
                    break
                times[name]["up"].append(got[0])
                times[name]["down"].append(got[1])
                times[name]["total"].append(got[0] + got[1])
            if refused:
                break
        if refused:
            out[datapath] = {"skipped": refused}
            print(f"datapath {datapath}: skipped ({refused})")
            continue
        medians = {name: {k: round(statistics.median(v), 4) for k, v in parts.items()}
                   for name, parts in times.items()}
        out[datapath] = {"medians": medians, "runs": times}
        for part in ("up", "down", "total"):
            ratios[f"{datapath}_{part}_dual_over_seed"] = round(
                medians["dual"][part] / medians["seed"][part], 3)
        print(f"datapath {datapath}: seed up+down {medians['seed']['total']:.3f} s "
              f"(up {medians['seed']['up']:.3f}, down {medians['seed']['down']:.3f}); "
              f"dual-stack {medians['dual']['total']:.3f} s (up {medians['dual']['up']:.3f}, "
              f"down {medians['dual']['down']:.3f}); ratio "
              f"{ratios[f'{datapath}_total_dual_over_seed']:.2f}")
    out["ratios"] = ratios
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
