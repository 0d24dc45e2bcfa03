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

A stopped process counts as gone once it has exited: an orphan stays a
zombie until PID 1 reaps it, which can take seconds, and waiting for that
would only make ``dsrlab down`` slow (:mod:`lab.plumbing.procs`).

This module imports no netlink or BPF library: ``dsrlab down`` and
``dsrlab clean`` load only what they use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.env.kind import residue as kind_residue
from lab.plumbing import names, nsutil, owner, procs, runtags

STATE_DIR: Path = owner.OWNER_DIR  # /run/dsrlab, or $DSRLAB_STATE_DIR
_GRACE_S = 2.0


def state_path(run_id: str) -> Path:
    """Where a detached lab's state lives: ``/run/dsrlab/<run id>.json``."""
    return STATE_DIR / f"{names.check_run_id(run_id)}.json"


@dataclass
class RunResidue:
    """What one run tag still holds on this machine."""

    run_id: str
    namespaces: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    state_file: Path | None = None
    owner_pid: int | None = None  # the live process that holds the run, if any
    files: list[Path] = field(default_factory=list)  # everything under STATE_DIR named by it
    temp_dirs: list[Path] = field(default_factory=list)  # its scratch directories

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.pids or self.files or self.temp_dirs)

    @property
    def left_up(self) -> bool:
        """Left running on purpose (``dsrlab up``, ``run --keep``): it has a state file."""
        return self.state_file is not None

    @property
    def dead(self) -> bool:
        """What a dead run left: no live owner, and not left up on purpose."""
        return self.owner_pid is None and not self.left_up


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
        res.owner_pid = owner.alive_owner(res.run_id)
    return dict(sorted(runs.items()))


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
    """Remove one run's processes, namespaces and state file; returns what was done."""
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
    # the state file's PIDs need no separate look: a lab process lives in one of the
    # run's namespaces, and find_runs already found every process there
    return clean_run(res)


__all__ = ["STATE_DIR", "RunResidue", "clean_run", "find_runs", "state_path", "stop_pids",
           "tear_down"]
