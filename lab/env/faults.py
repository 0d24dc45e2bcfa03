"""Faults on purpose (issue 11, item 7): being built. Until then every fault is
reported unavailable, with that reason, by :func:`inject`."""

from __future__ import annotations

from collections.abc import Callable

from lab.env.base import Lab
from lab.errors import LabError
from lab.model.scenario import Fault


class FaultUnavailable(LabError, RuntimeError):
    """A fault this kernel or backend cannot make; the message is the reason."""


def inject(lab: Lab, fault: Fault) -> Callable[[], None]:
    raise FaultUnavailable("fault injection is not built yet")
