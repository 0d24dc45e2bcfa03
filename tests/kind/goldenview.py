"""The kind plan as the golden files hold it: data, the pod server's source left out
(it has its own tests)."""

from __future__ import annotations

from typing import Any

from lab.env.kind.plan import build_plan
from lab.model.topology import Topology


def golden_view(t: Topology) -> dict[str, Any]:
    d = build_plan(t).as_dict()
    for m in d["manifests"]:
        if m["kind"] == "ConfigMap":
            m["data"] = dict.fromkeys(m["data"], "<lab/env/podserver.py>")
    return d
