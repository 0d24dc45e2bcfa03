"""A worker of ``dsrlab run --all -j N``: scenarios in a process of their own.

``python -m lab.cli.scenario_worker CAPTURES RESULTS [--datapath D] [--cilium-src
S]`` imports the lab once, then runs each scenario given on its stdin (a line
``INDEX PATH``) in a lab of its own (its own run id and capture set under
CAPTURES), writes its outcome to ``RESULTS/INDEX.json``
(:class:`lab.cli.run_all.ScenarioOutcome`) and answers ``INDEX`` on stdout; it
exits at the end of its stdin. A signal stops it as it stops ``dsrlab run``: the
lab taken down, exit 128 + the signal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli import signals


def _main() -> None:
    from lab.cli.datapath_choice import NodeDatapath
    from lab.cli.output import one_line_errors
    from lab.cli.run_all import Choice, worker

    parser = argparse.ArgumentParser(prog="python -m lab.cli.scenario_worker")
    parser.add_argument("captures", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--datapath", choices=[d.value for d in NodeDatapath])
    parser.add_argument("--cilium-src", type=Path)
    args = parser.parse_args()
    choice = Choice(args.captures, NodeDatapath(args.datapath) if args.datapath else None,
                    args.cilium_src)
    with one_line_errors():
        worker(choice, args.results)


if __name__ == "__main__":
    signals.run(_main)
