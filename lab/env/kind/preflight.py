"""Whether the kind backend can run on this machine, and if not, exactly why."""

from __future__ import annotations

import shutil

TOOLS = ("docker", "kind", "kubectl", "helm")


def kind_unavailable() -> str | None:
    """None when docker (with a daemon answering the SDK's ping), kind, kubectl and
    helm are all here; else the first reason, in one sentence."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (f"the kind backend needs {', '.join(TOOLS)}: no {', '.join(missing)} "
                "binary on PATH")
    from lab.env.base import BackendError  # noqa: PLC0415
    from lab.env.kind.containers import Docker  # noqa: PLC0415

    try:
        Docker().ping()
    except BackendError as exc:
        return f"the kind backend: {exc}"
    return None
