"""Benchmark: what DSR saves the node the client addresses, against SNAT (the baseline).

One run, the seed topology, for each load-balancer mode (snat, dsr, hybrid):
the client downloads a 100 MB HTTP response from the NodePort of the
control-plane (which runs no pod, so every flow goes to another node) while
tcpdump on the control-plane's eth0 records headers; the bytes and packets
there are summed per direction (client -> backend, backend -> client). Then
1,000 short requests, each a new connection from a kernel socket in the
client's namespace, give the latency's p50 and p99 (see
:mod:`lab.runner.compare`).

Ratios (mode / snat, the same run): all bytes through the LB node (the
headline: what is left is the client's ACKs), reply bytes (0 under DSR),
and p50/p99 latency. Checks that DSR leaves no reply byte at the LB node.
Prints the table and the ratios; writes bench/results/modes.json and the
plot bench/results/modes.svg. Needs root.

    .venv/bin/python bench/modes.py [--bytes N] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.model.topology import load_topology  # noqa: E402
from lab.runner.compare import (  # noqa: E402
    DEFAULT_REQUESTS,
    DEFAULT_TRANSFER,
    compare_modes,
    plot_modes,
)

RESULTS = REPO / "bench" / "results"
MODES = ("snat", "dsr", "hybrid")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", type=int, default=DEFAULT_TRANSFER)
    ap.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    args = ap.parse_args()
    topo = load_topology(REPO / "topologies" / "seed.yaml")
    start = time.monotonic()
    work = RESULTS / "modes-work"
    figures = compare_modes(topo, MODES, work, transfer_bytes=args.bytes,
                            requests=args.requests, progress=lambda m: print(f"  {m}"))
    for pcap in work.glob("*.pcap"):
        pcap.unlink()
    work.rmdir()
    by = {f.mode: f for f in figures}
    base = by["snat"]
    print(f"{'mode':8} {'LB bytes':>12} {'req bytes':>10} {'reply bytes':>12} "
          f"{'packets':>8} {'transfer s':>10} {'p50 ms':>7} {'p99 ms':>7}")
    for f in figures:
        print(f"{f.mode:8} {f.lb_bytes:>12,} {f.request_bytes:>10,} {f.reply_bytes:>12,} "
              f"{f.request_packets + f.reply_packets:>8,} {f.transfer_s:>10.3f} "
              f"{f.latency_p50_ms:>7.3f} {f.latency_p99_ms:>7.3f}")
    ratios: dict[str, float] = {}
    for f in figures:
        if f.mode == "snat":
            continue
        ratios[f"{f.mode}_lb_bytes_vs_snat"] = round(f.lb_bytes / base.lb_bytes, 5)
        ratios[f"{f.mode}_reply_bytes_vs_snat"] = round(f.reply_bytes / base.reply_bytes, 5)
        ratios[f"{f.mode}_p50_vs_snat"] = round(f.latency_p50_ms / base.latency_p50_ms, 3)
        ratios[f"{f.mode}_p99_vs_snat"] = round(f.latency_p99_ms / base.latency_p99_ms, 3)
    for name, value in ratios.items():
        print(f"{name}: {value}")
    ok = by["dsr"].reply_bytes == 0 and by["hybrid"].reply_bytes == 0
    svg = plot_modes(figures, RESULTS / "modes.svg")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "modes.json").write_text(json.dumps({
        "benchmark": "modes",
        "transfer_bytes": args.bytes,
        "requests": args.requests,
        "seconds": round(time.monotonic() - start, 1),
        "modes": [f.as_dict() for f in figures],
        "dsr_reply_bytes_at_lb_node_is_zero": ok,
        "plot": str(svg.relative_to(REPO)),
        "ratios": ratios,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS / 'modes.json'} and {svg}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
