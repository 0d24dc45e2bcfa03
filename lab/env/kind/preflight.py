"""Whether the kind backend can run on this machine, and if not, exactly why."""

from __future__ import annotations

import shutil
import subprocess

TOOLS = ("docker", "kind", "kubectl", "helm")


def kind_unavailable() -> str | None:
    """None when docker (with a daemon answering), kind, kubectl and helm are all
    here; else the first reason, in one sentence."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (f"the kind backend needs {', '.join(TOOLS)}: no {', '.join(missing)} "
                "binary on PATH")
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the kind backend needs a Docker daemon: docker info failed ({exc})"
    if proc.returncode != 0 or not proc.stdout.strip():
        last = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"the kind backend needs a Docker daemon: docker info says: {last}"
    return None
