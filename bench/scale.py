"""Benchmark: bring-up and teardown at 4, 16, 64 and 256 nodes (2 pods each).

Three ways to build each generated topology, interleaved round after round
in one run (the order rotates every round):

``full``
    ``NetnsBackend()``: what ``dsrlab up`` does: every namespace wired, the
    eBPF datapath loaded (verifier, maps) and attached on every node's eth0
    with the service's backends in its maps, and the pod server started
    (every pod answering HTTP).
``net``
    ``NetnsBackend(datapath=False, servers=False)``: the network only,
    like for like with the script.
``script``
    a bash script of plain ``ip`` commands generated from the same topology
    (bench/bringup.py's seed baseline, generalized): the same namespaces,
    bridge, veths, addresses, routes and sysctls, in lab-named namespaces
    with a run id of its own. The namespace adds and deletes run in one
    ``ip -batch`` each and every namespace's link/address/route commands in
    one ``ip -n NS -batch``; ``ip netns exec NS sysctl`` per namespace. That
    is a stronger baseline than one process per command (which at 256
    nodes would be 65,000 ``ip route add`` processes alone).

The like-for-like ratio is ``script_over_net_*``; ``script_over_full_*``
compares the script with dsrlab doing more (BPF, servers). Per-node cost is
the up time divided by the node count; flatness is the per-node cost at 256
(and 64) nodes over the one at 16.

Between trials the bench waits for the kernel to finish freeing the last
trial's namespaces (``net_namespace`` objects in /proc/slabinfo; deleting a
namespace returns before the kernel has torn it down), so one trial's
teardown does not slow the next one down. The first size also checks that
the script and dsrlab build the same network (links, addresses, routes of
every host) before anything is timed.

Prints the table; writes bench/results/scale.json. ``--sizes 4,16`` and
``--rounds N`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bringup import _remove_leftovers, ip_script, script_commands, time_dsrlab, time_script  # noqa: E402
from lab.datapath import build_object  # noqa: E402
from lab.env.netns import NetnsBackend  # noqa: E402
from lab.model.scale import PODS_PER_NODE, scale_topology  # noqa: E402
from lab.model.topology import Topology  # noqa: E402
from lab.plumbing import names  # noqa: E402

SIZES = (4, 16, 64, 256)
ROUNDS = {4: 7, 16: 7, 64: 5, 256: 3}
RESULTS = REPO / "bench" / "results" / "scale.json"
KINDS = ("script", "net", "full")


# -- settling between trials ------------------------------------------------------

def live_netns() -> int | None:
    """Network namespaces the kernel still holds (freed or not), from /proc/slabinfo."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def settle(before: int | None, created: int, cap_s: float) -> float:
    """Wait until the kernel has freed (nearly) all ``created`` namespaces of the
    last trial; returns the seconds waited (capped: other users' namespaces count too)."""
    t0 = time.monotonic()
    if before is None:
        time.sleep(min(cap_s, 0.2 + created / 500))
        return time.monotonic() - t0
    target = before + max(2, created // 20)
    while time.monotonic() - t0 < cap_s:
        now = live_netns()
        if now is None or now <= target:
            break
        time.sleep(0.02)
    return time.monotonic() - t0


# -- the three ways ----------------------------------------------------------------

def run_script(t: Topology) -> tuple[float, float]:
    up, down, _ = time_script(t, batch=True)
    return up, down


RUNNERS: dict[str, Callable[[Topology], tuple[float, float]]] = {
    "script": run_script,
    "net": lambda t: time_dsrlab(t, full=False),
    "full": lambda t: time_dsrlab(t, full=True),
}


# -- same network? ---------------------------------------------------------------

def _dump(ns: str) -> dict[str, Any]:
    """Links (name, kind, MTU, MAC of docker-style ones, state), addresses and routes of ``ns``."""
    def ip(*args: str) -> Any:
        out = subprocess.run(["ip", "-j", "-d", "-n", ns, *args], capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)
    links = sorted((x["ifname"], x.get("linkinfo", {}).get("info_kind"), x["mtu"],
                    x["address"] if x["address"].startswith("02:42:") else "",
                    "UP" in x["flags"], x.get("master"))
                   for x in ip("link", "show"))
    addrs = sorted((x["ifname"], a["local"], a["prefixlen"])
                   for x in ip("-4", "addr", "show") for a in x.get("addr_info", []))
    routes = sorted((r["dst"], r.get("gateway"), r.get("dev"), r.get("scope"))
                    for r in ip("-4", "route", "show"))
    return {"links": links, "addresses": addrs, "routes": routes}


def same_network(t: Topology) -> None:
    """Build ``t`` both ways and compare every host; raises on a difference."""
    lab = NetnsBackend(datapath=False, servers=False).up(t)
    try:
        ours = {h: _dump(lab.netns(h)) for h in t.host_names()}
    finally:
        lab.down()
    run_id = names.new_run_id()
    up, down = ip_script(t, run_id, batch=True)
    try:
        subprocess.run(["bash", "-c", up], check=True)
        theirs = {h: _dump(names.netns_name(run_id, h)) for h in t.host_names()}
        subprocess.run(["bash", "-c", down], check=True)
    finally:
        _remove_leftovers(run_id)
    diffs = [f"{h}: {k}: dsrlab {ours[h][k]} script {theirs[h][k]}"
             for h in t.host_names() for k in ours[h] if ours[h][k] != theirs[h][k]]
    if diffs:
        raise SystemExit("the script and dsrlab build different networks:\n  "
                         + "\n  ".join(diffs[:10]))


# -- main --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--rounds", type=int, default=0, help="rounds per size (default: by size)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    load_before = os.getloadavg()  # other work on the machine shows in every figure
    build_object()  # compile once, outside the timed part
    topos = {n: scale_topology(n) for n in sizes}
    same_network(topos[sizes[0]])
    time_dsrlab(topos[sizes[0]], full=True)  # warm-up: imports, first verifier run
    per_size: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    for n in sizes:
        t = topos[n]
        hosts = len(t.host_names())
        rounds = args.rounds or ROUNDS.get(n, 3)
        raw: dict[str, list[float]] = {f"{k}_{d}": [] for k in KINDS for d in ("up", "down")}
        settled = 0.0
        cap = 5.0 + hosts / 50
        for r in range(rounds):
            order = KINDS[r % 3:] + KINDS[:r % 3]  # rotate: drift hits every kind alike
            for kind in order:
                before = live_netns()
                up_s, down_s = RUNNERS[kind](t)
                raw[f"{kind}_up"].append(up_s * 1000)
                raw[f"{kind}_down"].append(down_s * 1000)
                settled += settle(before, hosts, cap)
            print(f"  {n} nodes, round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {raw[f'{k}_up'][-1]:.0f}/{raw[f'{k}_down'][-1]:.0f}" for k in KINDS),
                flush=True)
        med = {k: statistics.median(v) for k, v in raw.items()}
        per_node = {k: med[f"{k}_up"] / n for k in KINDS}
        up_script, _ = ip_script(t, "000000", batch=True)
        per_size[str(n)] = {
            "nodes": n, "pods": len(t.pods), "namespaces": hosts, "rounds": rounds,
            "script_ip_commands": script_commands(up_script),
            "median_ms": med, "per_node_up_ms": per_node, "raw_ms": raw,
            "settle_wait_s": round(settled, 2),
        }
        ratios[f"script_over_net_up_{n}"] = med["script_up"] / med["net_up"]
        ratios[f"script_over_net_down_{n}"] = med["script_down"] / med["net_down"]
        ratios[f"script_over_full_up_{n}"] = med["script_up"] / med["full_up"]
        ratios[f"script_over_full_down_{n}"] = med["script_down"] / med["full_down"]
    if "16" in per_size:
        for big in ("64", "256"):
            if big in per_size:
                for k in ("full", "net", "script"):
                    ratios[f"{k}_per_node_{big}_over_16"] = (
                        per_size[big]["per_node_up_ms"][k] / per_size["16"]["per_node_up_ms"][k])
    targets: dict[str, bool] = {}
    if "64" in per_size:
        full64 = per_size["64"]["median_ms"]["full_up"]
        ratios["full_up_64_target_1000ms_over_median"] = 1000.0 / full64
        targets["full_64_nodes_up_under_1s"] = full64 < 1000.0
    if "full_per_node_256_over_16" in ratios:
        targets["full_per_node_flat_16_to_256_within_1_5x"] = (
            ratios["full_per_node_256_over_16"] <= 1.5)
        targets["net_per_node_flat_16_to_256_within_1_5x"] = (
            ratios["net_per_node_256_over_16"] <= 1.5)
    targets["net_faster_than_script_at_every_size"] = all(
        ratios[f"script_over_net_up_{n}"] > 1.0 for n in sizes)
    targets["full_faster_than_script_at_every_size"] = all(
        ratios[f"script_over_full_up_{n}"] > 1.0 for n in sizes)
    result = {
        "benchmark": "scale",
        "unit": "ms (median)",
        "pods_per_node": PODS_PER_NODE,
        "cpus": os.cpu_count(),
        "load_average_before_after": [load_before, os.getloadavg()],
        "what": {
            "full": "NetnsBackend(): namespaces and wiring, the eBPF datapath loaded, its maps "
                    "filled and attached on every node's eth0, the pod server started (what "
                    "dsrlab up does)",
            "net": "NetnsBackend(datapath=False, servers=False): the network only, like for "
                   "like with the script",
            "script": "bash: ip -batch (netns add), ip netns exec NS sysctl per namespace, "
                      "ip -n NS -batch per namespace (links, addresses, routes), ip -batch "
                      "(netns del)",
            "per_node_up_ms": "median up time / nodes",
            "ratios": "script_over_net_*: like for like (> 1: dsrlab faster); "
                      "script_over_full_*: dsrlab doing more (BPF, servers) than the script; "
                      "*_per_node_N_over_16: per-node cost at N nodes over 16 (flat: <= 1.5)",
        },
        "sizes": per_size,
        "ratios": ratios,
        "targets": targets,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'nodes':>5} {'hosts':>5} | {'full up':>8} {'net up':>8} {'script up':>9} | "
          f"{'full dn':>7} {'net dn':>7} {'scr dn':>7} | per node: full / net / script")
    for n in sizes:
        s = per_size[str(n)]
        m, p = s["median_ms"], s["per_node_up_ms"]
        print(f"{n:>5} {s['namespaces']:>5} | {m['full_up']:>8.0f} {m['net_up']:>8.0f} "
              f"{m['script_up']:>9.0f} | {m['full_down']:>7.0f} {m['net_down']:>7.0f} "
              f"{m['script_down']:>7.0f} | {p['full']:.1f} / {p['net']:.1f} / "
              f"{p['script']:.1f} ms")
    for k, v in ratios.items():
        print(f"  ratio {k}: {v:.2f}")
    for k, ok in targets.items():
        print(f"  target {k}: {'met' if ok else 'NOT met'}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
