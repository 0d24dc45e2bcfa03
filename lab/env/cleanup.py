"""Find and remove what lab runs left behind, by run tag only.

A run's resources all carry its tag: namespaces are ``dsrlab-<run id>-<host>``,
and every file under ``/run/dsrlab`` (``$DSRLAB_STATE_DIR`` if set) is named
by its run id: ``<run id>.json`` records what a detached lab holds,
``<run id>.owner`` which process holds the run, and their temporary forms. The
processes of a run are the ones whose network namespace *is* one of the
run's namespaces (compared by device and inode, one pass over ``/proc`` for
all of them), so they are found and stopped by PID; nothing is matched by
command line. Outside the namespaces, a run's scratch directories
(``dsrlab-<run id>-<what>-*`` in the temporary directory) and the processes it
started there (Chromium: ``DSRLAB_RUN=<run id>`` in their environment) carry
the tag too (:mod:`lab.plumbing.runtags`). Devices, addresses, routes and tc
programs live inside the namespaces and go with them. A kind run's record (``<run id>.kind.json``,
:mod:`lab.env.kind.residue`) names its cluster (deleted by name) or the label of
its objects in an existing cluster (deleted by that label).

Whether a run is alive is the kernel's word, whichever state directory is
in use: each lab namespace records the process that drives its run (PID,
start time, :mod:`lab.plumbing.nsmark`) or that it was left up, and that
record is global like the namespace. The owner file of this state directory
is asked too (a run before its first namespace, a kind run). A live run is
never taken: ``dsrlab clean`` leaves it alone, ``clean RUN_ID`` refuses, and
``--force`` first asks its process to stop (:func:`stop_holder`), which then
undoes its own lab and says it was stopped by clean.

A stopped process counts as gone once it has exited: an orphan stays a
zombie until PID 1 reaps it, which can take seconds, and waiting for that
would only make ``dsrlab down`` slow (:mod:`lab.plumbing.procs`).

This module imports no netlink or BPF library: ``dsrlab down`` and
``dsrlab clean`` load only what they use.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.env.kind import residue as kind_residue
from lab.env.state import STATE_DIR, state_path
from lab.errors import LabError
from lab.plumbing import interrupts, names, nsmark, nsutil, owner, procs, runtags

_GRACE_S = 2.0
STOP_WAIT_S = 120.0  # how long clean --force waits for a live run to undo its lab
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, interrupts.STOP_BY_CLEAN})


class RunAlive(LabError):
    """The run is alive (its process runs): nothing of it is touched."""


@dataclass
class RunResidue:
    """What one run tag still holds on this machine."""

    run_id: str
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    state_file: Path | None = None
    holder: owner.Holder | None = None  # the live process that holds the run, if any
    left_up_by: str | None = None  # "dsrlab up", "dsrlab run --keep": left up on purpose
    files: list[Path] = field(default_factory=list)  # everything under STATE_DIR named by it
    temp_dirs: list[Path] = field(default_factory=list)  # its scratch directories

    @property
    def owner_pid(self) -> int | None:
        """The PID of the live process that holds the run (None: nobody does)."""
        return self.holder.pid if self.holder is not None else None

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.pids or self.files or self.temp_dirs)

    @property
    def alive(self) -> bool:
        """Its process still runs it (by the namespaces' record or the owner file)."""
        return self.holder is not None

    @property
    def left_up(self) -> bool:
        """Left running on purpose (``dsrlab up``, ``run --keep``): its namespaces say so,
        or it has a state file here."""
        return self.left_up_by is not None

    @property
    def dead(self) -> bool:
        """What a dead run left: no live owner, and not left up on purpose."""
        return self.holder is None and not self.left_up


def find_runs(run_ids: list[str] | None = None) -> dict[str, RunResidue]:
    """Every run tag found in namespace names or files under :data:`STATE_DIR`
    (only ``run_ids``, if given)."""
    wanted = set(run_ids) if run_ids is not None else None
    runs: dict[str, RunResidue] = {}
    for ns in nsutil.list_netns():
        parsed = names.parse_netns_name(ns)
        if parsed is not None and (wanted is None or parsed.run_id in wanted):
            runs.setdefault(parsed.run_id, RunResidue(parsed.run_id)).namespaces.append(ns)
    for run_id, files in owner.run_files().items():
        if wanted is None or run_id in wanted:
            res = runs.setdefault(run_id, RunResidue(run_id))
            res.files = files
            state = state_path(run_id)
            res.state_file = state if state in files else None
    for run_id, dirs in runtags.find_dirs(wanted).items():
        runs.setdefault(run_id, RunResidue(run_id)).temp_dirs = dirs
    tagged = runtags.find_pids(wanted)
    for run_id in tagged:
        runs.setdefault(run_id, RunResidue(run_id))
    pids = _pids_in_each([ns for res in runs.values() for ns in res.namespaces])
    for res in runs.values():
        res.pids = sorted({pid for ns in res.namespaces for pid in pids.get(ns, [])}
                          | set(tagged.get(res.run_id, [])))
        _liveness(res)
    return dict(sorted(runs.items()))


def _liveness(res: RunResidue) -> None:
    """Who holds the run, and whether it was left up: the namespaces' own record
    first (the kernel's, seen from every state directory), then the files here."""
    for ns in res.namespaces:
        mark = nsutil.read_mark(ns)
        if mark is None or mark.run_id != res.run_id:
            continue
        if mark.state == "run":
            res.holder = res.holder or owner.Holder.alive(mark.pid, mark.start_time,
                                                          mark.stop_signal)
        else:
            res.left_up_by = mark.left_up_by
        if res.holder is not None or res.left_up_by is not None:
            break
    res.holder = res.holder or owner.holder_of(res.run_id)
    if res.left_up_by is None and res.state_file is not None:
        res.left_up_by = _left_up_by(res.state_file)


def _left_up_by(state_file: Path) -> str:
    """What the state file says left the lab up (older ones say nothing: ``dsrlab up``)."""
    try:
        by = json.loads(state_file.read_text()).get("left_up_by")
    except (OSError, ValueError, AttributeError):
        by = None
    return by if by in nsmark.LEFT_UP_BY.values() else nsmark.LEFT_UP_BY["up"]


def check_stoppable(holder: owner.Holder) -> None:
    """:class:`RunAlive` for a record that names a process no run can be (PID 1, the
    process asking) or a signal no run is stopped with (only SIGINT, SIGTERM and
    SIGUSR2 are): a record is only as good as whoever wrote it."""
    if holder.pid in (1, os.getpid()) or holder.pid <= 0:
        raise RunAlive(f"the record names pid {holder.pid}, which is no run's: left alone")
    if holder.stop_signal not in _STOP_SIGNALS:
        raise RunAlive(f"the record asks for signal {holder.stop_signal} to stop pid "
                       f"{holder.pid}, which no run is stopped with: left alone")


def stop_holder(holder: owner.Holder, timeout: float = STOP_WAIT_S) -> float:
    """Ask a live run's process to stop (its own clean stop: it undoes its lab and
    says it was stopped by clean) and wait until it has exited; returns the seconds
    it took. :class:`RunAlive` when it is still running after ``timeout``."""
    check_stoppable(holder)
    t0 = time.monotonic()
    if holder.process.signal(holder.stop_signal):
        holder.process.signal(signal.SIGCONT)  # a stopped (^Z) run handles it at once
        if procs.wait_gone([holder.process], timeout):
            raise RunAlive(f"pid {holder.pid} did not stop within {timeout:g} s; "
                           "nothing of it was removed")
    return time.monotonic() - t0


def _pids_in_each(namespaces: list[str]) -> dict[str, list[int]]:
    try:
        return nsutil.pids_in_each(namespaces)
    except (OSError, nsutil.NetnsError):
        # one odd name must not hide the others' processes: look one by one
        found: dict[str, list[int]] = {}
        for ns in namespaces:
            try:
                found[ns] = nsutil.pids_in(ns)
            except (OSError, nsutil.NetnsError):
                found[ns] = []
        return found


def stop_pids(pids: list[int]) -> list[int]:
    """SIGTERM, wait until they have exited (zombies count), then SIGKILL what is
    left after the grace period; returns the PIDs that were signalled."""
    return procs.stop(pids, grace=_GRACE_S)


def clean_run(res: RunResidue) -> list[str]:
    """Remove one run's processes, namespaces and state file; returns what was done.

    :class:`RunAlive` for a run another live process holds: stop it first
    (:func:`stop_holder`), then find it again."""
    if res.holder is not None and res.holder.pid != os.getpid():
        raise RunAlive(f"run {res.run_id} is in use by pid {res.holder.pid}: left alone")
    done = []
    if res.pids:
        stopped = stop_pids(res.pids)
        done += [f"stopped pid {p}" for p in stopped]
    failed = {e.split(":", 1)[0]: f"could not remove namespace {e}"
              for e in nsutil.remove_all(res.namespaces)}
    done += [failed.get(ns, f"removed namespace {ns}") for ns in res.namespaces]
    if res.namespaces:
        nsutil.release_if_done(res.run_id)
    for f in res.files:  # a kind run's cluster or objects first, by its record
        if f.name.endswith(kind_residue.SUFFIX):
            done += kind_residue.remove(f)
    for f in res.files:  # each by its exact name, as find_runs listed it
        try:
            f.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            done.append(f"could not remove {f}: {exc.strerror}")
            continue
        done.append(f"removed {f}")
    for d in res.temp_dirs:
        problem = runtags.remove_dir(d)
        done.append(f"could not remove {d}: {problem}" if problem else f"removed {d}")
    owner.forget(res.run_id)
    return done


def tear_down(run_id: str) -> list[str]:
    """``dsrlab down RUN_ID``: the run's state file and whatever carries its tag."""
    names.check_run_id(run_id)
    res = find_runs([run_id]).get(run_id)
    if res is None or res.empty:
        raise LookupError(f"no lab with run id {run_id} is up")
    if res.holder is not None:
        raise RunAlive(f"run {run_id} is in use by pid {res.holder.pid} (a run in progress, "
                       f"not a lab left up): nothing taken down; "
                       f"dsrlab clean --force {run_id} stops it first")
    # the state file's PIDs need no separate look: a lab process lives in one of the
    # run's namespaces, and find_runs already found every process there
    return clean_run(res)


__all__ = ["STATE_DIR", "STOP_WAIT_S", "RunAlive", "RunResidue", "check_stoppable",
           "clean_run", "find_runs", "state_path", "stop_holder", "stop_pids", "tear_down"]
