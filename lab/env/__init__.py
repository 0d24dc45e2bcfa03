"""Running labs: the backend contract (:mod:`lab.env.base`) and its backends.

:func:`get_backend` is how the scenario runner, the CLI and the pytest
plugin choose one by name.
"""

from __future__ import annotations

from typing import Any

from lab.env.base import Backend, BackendError, Lab, LabHost

BACKENDS = ("netns", "kind")


def get_backend(name: str, **options: Any) -> Backend:
    """The backend called ``name`` (``netns``), built with ``options``."""
    if name == "netns":
        from lab.env.netns import NetnsBackend  # noqa: PLC0415  (pyroute2 loads on use)

        return NetnsBackend(**options)
    if name == "kind":
        from lab.env.kind.backend import KindBackend  # noqa: PLC0415

        return KindBackend(**options)
    raise BackendError(f"no backend {name!r} (known: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "BackendError", "Lab", "LabHost", "get_backend"]
