"""Benchmark: Cilium's own datapath in the lab against the lab's own (``dsr.c``).

For every Cilium source ``DSRLAB_CILIUM_SRC`` names (default ``../shared/cilium``,
both v1.13.0 and v1.16.0 there): the seed topology's three nodes built cold
(an empty cache: the tree prepared, every object compiled by clang), then warm
(every object from the cache), each node loaded and filled; then the seed
scenario end to end, three times, on Cilium's datapath and on the lab's (the
baseline, in the same run). Writes bench/results/cilium.json with the raw
figures and a ``ratios`` object: cold over warm build, Cilium's load over the
lab's, and Cilium's seed run and bring-up over the lab's.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.datapath import DatapathObject, build_object  # noqa: E402
from lab.datapath.cilium.node import load_plan  # noqa: E402
from lab.datapath.cilium.plan import lb_params, plan_node  # noqa: E402
from lab.datapath.cilium.source import ENV_VAR, CiliumSource, discover  # noqa: E402
from lab.env.netns import NetnsBackend  # noqa: E402
from lab.env.netns.cilium import CiliumDatapaths  # noqa: E402
from lab.model.scenario import load_scenario  # noqa: E402
from lab.runner.scenario import ScenarioRun, run_scenario  # noqa: E402

RESULTS = REPO / "bench" / "results" / "cilium.json"
RUNS = 3
_, TOPOLOGY = load_scenario("seed")


def clang_version() -> str:
    out = subprocess.run(["clang", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "?"


def build_and_load(source: CiliumSource, cache: Path) -> dict[str, dict[str, float]]:
    """Each node of the seed: build (compile or cache), load, fill seconds."""
    out = {}
    for node in TOPOLOGY.nodes:
        with load_plan(source, plan_node(TOPOLOGY, node.name), lb_params(TOPOLOGY),
                       cache) as loaded:
            t = loaded.times
            out[node.name] = {"build_s": round(t.build_s, 3), "load_s": round(t.load_s, 3),
                              "fill_s": round(t.fill_s, 3), "compiled": len(t.compiled)}
    return out


def lab_load() -> float:
    """The lab's dsr.c object loaded once per node (verifier and maps), seconds."""
    built = build_object()
    t0 = time.perf_counter()
    for _ in TOPOLOGY.nodes:
        DatapathObject.load(built).close()
    return time.perf_counter() - t0


def seed_runs(backend: NetnsBackend, tmp: Path) -> list[ScenarioRun]:
    runs = []
    for i in range(RUNS):
        run = run_scenario("seed", captures_root=tmp / str(i), backend=backend)
        if run.result is None:
            raise SystemExit("the seed was not checked")
        runs.append(run)
    return runs


def median(runs: list[ScenarioRun], key: str) -> float:
    return round(statistics.median(r.timings[key] for r in runs), 3)


def main() -> int:
    where = os.environ.get(ENV_VAR) or str(REPO.parent / "shared" / "cilium")
    sources = discover(where)
    load_before = os.getloadavg()
    doc: dict[str, object] = {
        "benchmark": "cilium",
        "what": "Cilium's bpf_host/bpf_lxc for the seed's 3 nodes: cold and warm build, "
                "load, fill; the seed scenario on Cilium's datapath and on the lab's "
                f"(median of {RUNS})",
        "cpus": os.cpu_count(), "kernel": platform.release(), "clang": clang_version(),
    }
    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dsrlab-bench-") as tmp_s:
        tmp = Path(tmp_s)
        lab = seed_runs(NetnsBackend(), tmp / "lab")
        lab_load_s = lab_load()
        doc["lab"] = {"seed_total_s": median(lab, "total_s"), "seed_up_s": median(lab, "up_s"),
                      "passed": all(r.passed for r in lab), "load_3_nodes_s": round(lab_load_s, 3)}
        versions = {}
        for source in sources:
            cache = tmp / f"cache-{source.version}"
            t0 = time.perf_counter()
            cold = build_and_load(source, cache)
            cold_s = time.perf_counter() - t0
            warm = build_and_load(source, cache)
            runs = seed_runs(NetnsBackend(datapaths=CiliumDatapaths(source, cache)),
                             tmp / str(source.version))
            cold_build = sum(n["build_s"] for n in cold.values())
            warm_build = sum(n["build_s"] for n in warm.values())
            load_fill = sum(n["load_s"] + n["fill_s"] for n in warm.values())
            v = str(source.version)
            versions[v] = {
                "cold": cold, "warm": warm, "cold_all_s": round(cold_s, 2),
                "cold_build_s": round(cold_build, 2), "warm_build_s": round(warm_build, 3),
                "load_fill_3_nodes_s": round(load_fill, 3),
                "seed_total_s": median(runs, "total_s"), "seed_up_s": median(runs, "up_s"),
                "seed_passed": [r.passed for r in runs],
            }
            ratios[f"{v}_cold_over_warm_build"] = round(cold_build / max(warm_build, 1e-3), 1)
            ratios[f"{v}_load_fill_over_lab_load"] = round(load_fill / lab_load_s, 2)
            ratios[f"{v}_seed_over_lab_seed"] = round(
                versions[v]["seed_total_s"] / doc["lab"]["seed_total_s"], 2)  # type: ignore[index]
            ratios[f"{v}_up_over_lab_up"] = round(
                versions[v]["seed_up_s"] / doc["lab"]["seed_up_s"], 2)  # type: ignore[index]
        doc["cilium"] = versions
    doc["load_average_before_after"] = [list(load_before), list(os.getloadavg())]
    doc["ratios"] = ratios
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    print("ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
