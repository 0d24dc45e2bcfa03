"""What a kind run holds, recorded before it makes anything, so that a crashed run
leaves nothing ``dsrlab clean`` cannot find by its run tag.

``<state dir>/<run id>.kind.json`` says which kind cluster the run created (it is
deleted by name; written only once ``kind create cluster`` succeeded, so a cluster of
the same name that was there before is never named) or, on an existing cluster,
which kubeconfig and which label its objects carry (they are deleted by that label,
nothing else). Standard
library only: ``dsrlab clean`` loads nothing more.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from lab.atomic import write_text

SUFFIX = ".kind.json"
DEADLINE_S = 300.0


def record(path: Path, *, cluster: str | None, kubeconfig: str | None,
           context: str | None,
           label: str) -> None:
    """Write the record: first with nothing of the lab's (``cluster`` None), again with
    the cluster once the lab has created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({"cluster": cluster, "kubeconfig": kubeconfig,
                                 "context": context, "label": label}, indent=2))


def removal_commands(data: dict[str, Any]) -> list[list[str]]:
    """The commands that remove what the record names, and only that (nothing, for a
    kind run that had not created its cluster yet)."""
    if data.get("cluster"):
        return [["kind", "delete", "cluster", "--name", str(data["cluster"])]]
    if not data.get("kubeconfig") and not data.get("context"):
        return []
    kubectl = ["kubectl"]
    if data.get("kubeconfig"):
        kubectl += ["--kubeconfig", str(data["kubeconfig"])]
    if data.get("context"):
        kubectl += ["--context", str(data["context"])]
    kinds = "daemonsets,deployments,services,configmaps"
    return [[*kubectl, "delete", kinds, "--all-namespaces", "-l", str(data["label"]),
             "--ignore-not-found", "--wait=false"]]


def remove(path: Path) -> list[str]:
    """Carry out a record's removal; what was done, a line each."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"could not read {path}: {exc}"]
    done = []
    for argv in removal_commands(data):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            done.append(f"could not run {' '.join(argv)}: {exc}")
            continue
        ok = proc.returncode == 0
        done.append(f"{'ran' if ok else 'failed'}: {' '.join(argv)}"
                    + ("" if ok else f" ({proc.stderr.strip().splitlines()[-1:]})"))
    return done
