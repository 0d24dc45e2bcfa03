"""Where the lab keeps its state: the folder (``/run/dsrlab``, or ``$DSRLAB_STATE_DIR``)
and a detached lab's state file in it. A leaf: the backends write there and
:mod:`lab.env.cleanup`, which reads every backend's residue, looks there."""

from __future__ import annotations

from pathlib import Path

from lab.plumbing import names, owner

STATE_DIR: Path = owner.OWNER_DIR  # /run/dsrlab, or $DSRLAB_STATE_DIR


def state_path(run_id: str) -> Path:
    """Where a detached lab's state lives: ``/run/dsrlab/<run id>.json``."""
    return STATE_DIR / f"{names.check_run_id(run_id)}.json"
