"""A worker of ``dsrlab run --all -j N``: one scenario in a process of its own.

``python -m lab.cli.scenario_worker SCENARIO CAPTURES RESULT [--datapath D]
[--cilium-src S]`` runs the scenario in its own lab (its own run id and capture
set under CAPTURES) and writes its outcome to RESULT as JSON
(:class:`lab.cli.run_all.ScenarioOutcome`). A signal stops it as it stops
``dsrlab run``: the lab taken down, exit 128 + the signal.
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
    parser.add_argument("scenario", type=Path)
    parser.add_argument("captures", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--datapath", choices=[d.value for d in NodeDatapath])
    parser.add_argument("--cilium-src", type=Path)
    args = parser.parse_args()
    choice = Choice(args.captures, NodeDatapath(args.datapath) if args.datapath else None,
                    args.cilium_src)
    with one_line_errors():
        worker(args.scenario, choice, args.result)


if __name__ == "__main__":
    signals.run(_main)
