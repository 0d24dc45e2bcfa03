"""Find and remove what lab runs left behind, by run tag only.

A run's resources all carry its tag: namespaces are ``dsrlab-<run id>-<host>``
and ``/run/dsrlab/<run id>.json`` records what a detached lab holds. The
processes of a run are the ones whose network namespace *is* one of the
run's namespaces (compared by inode), so they are found and stopped by PID;
nothing is matched by command line. Devices, addresses, routes and tc
programs live inside the namespaces and go with them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.env.netns import STATE_DIR, state_path
from lab.plumbing import names, nsutil, owner

_GRACE_S = 2.0


@dataclass
class RunResidue:
    """What one run tag still holds on this machine."""

    run_id: str
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    state_file: Path | None = None
    owner_pid: int | None = None  # the live process that holds the run, if any

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.pids or self.state_file)


def find_runs() -> dict[str, RunResidue]:
    """Every run tag found in namespace names or state files."""
    runs: dict[str, RunResidue] = {}
    for ns in nsutil.list_netns():
        parsed = names.parse_netns_name(ns)
        if parsed is not None:
            runs.setdefault(parsed.run_id, RunResidue(parsed.run_id)).namespaces.append(ns)
    if STATE_DIR.is_dir():
        for f in STATE_DIR.glob("*.json"):
            try:
                run_id = names.check_run_id(f.stem)
            except ValueError:
                continue
            runs.setdefault(run_id, RunResidue(run_id)).state_file = f
    for res in runs.values():
        res.pids = sorted({pid for ns in res.namespaces for pid in _pids_in(ns)})
        res.owner_pid = owner.alive_owner(res.run_id)
    return runs


def _pids_in(ns: str) -> list[int]:
    try:
        return nsutil.pids_in(ns)
    except (OSError, nsutil.NetnsError):
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_pids(pids: list[int]) -> list[int]:
    """SIGTERM, wait, then SIGKILL what is left; returns the PIDs that were stopped."""
    stopped = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline and any(_alive(p) for p in stopped):
        time.sleep(0.02)
    for pid in stopped:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return stopped


def clean_run(res: RunResidue) -> list[str]:
    """Remove one run's processes, namespaces and state file; returns what was done."""
    done = []
    if res.pids:
        stopped = stop_pids(res.pids)
        done += [f"stopped pid {p}" for p in stopped]
    for ns in res.namespaces:
        nsutil.remove(ns)
        done.append(f"removed namespace {ns}")
    if res.state_file is not None:
        res.state_file.unlink(missing_ok=True)
        done.append(f"removed {res.state_file}")
    owner.forget(res.run_id)
    return done


def tear_down(run_id: str) -> list[str]:
    """``dsrlab down RUN_ID``: the run's state file and whatever carries its tag."""
    names.check_run_id(run_id)
    res = find_runs().get(run_id)
    if res is None:
        raise LookupError(f"no lab with run id {run_id} is up")
    # the state file's PIDs need no separate look: a lab process lives in one of the
    # run's namespaces, and find_runs already found every process there
    return clean_run(res)


__all__ = ["RunResidue", "clean_run", "find_runs", "state_path", "tear_down"]
