"""What a run holds outside its namespaces, tagged with its run id so that it is found.

Namespaces carry the run id in their name (:mod:`lab.plumbing.names`); two more
kinds of thing a run makes live outside them, and carry it too:

* **scratch directories** ``dsrlab-<run id>-<what>-XXXXXXXX`` in the temporary
  directory (Chromium's profile and its own temporary files, a download's body):
  :func:`scratch_dir` makes one, :func:`find_dirs` finds them by the exact run
  id in their name, :func:`remove_dir` removes one even while a late writer is
  still finishing in it (it retries on ``ENOTEMPTY``).
* **child processes** started in the root namespace (Chromium and its helpers):
  their environment holds ``DSRLAB_RUN=<run id>``, which every process they
  start inherits; :func:`find_pids` finds them by that exact entry in
  ``/proc/PID/environ``. :func:`run` starts one in a process group (and
  session) of its own, with a token of the call in its environment too
  (``DSRLAB_CALL``), and whatever ends the call (its exit, its time limit, an
  interrupt) stops the whole group and every process carrying the token (a
  helper that made a session of its own, or outlived its parent) before the
  call returns or raises.

Nothing here is matched by a glob or a command line: only by the run id.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from lab.plumbing import interrupts, names, procs

TAG_VAR = "DSRLAB_RUN"
CALL_VAR = "DSRLAB_CALL"  # one call of :func:`run`: what it started, whatever its group
_ENV_ENTRY = re.compile(rb"(?:^|\0)" + TAG_VAR.encode()
                        + rb"=(?P<run_id>[0-9a-f]{%d})(?:\0|$)" % names.RUN_ID_LEN)
_DIR_NAME = re.compile(rf"^{names.PREFIX}-(?P<run_id>[0-9a-f]{{{names.RUN_ID_LEN}}})"
                       r"-[a-z]+-[A-Za-z0-9_]+$")
GRACE_S = 2.0
_REMOVE_TRIES = 50  # x 20 ms: a second for a late writer to finish


def tag_env(run_id: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with the run's tag added."""
    out = dict(os.environ if env is None else env)
    out[TAG_VAR] = names.check_run_id(run_id)
    return out


def temp_roots() -> list[Path]:
    """Where scratch directories are made and looked for: the temporary directory,
    and ``/tmp`` (a run may have had another ``TMPDIR`` than the one cleaning)."""
    roots = [Path(tempfile.gettempdir()), Path("/tmp")]
    return list(dict.fromkeys(roots))


def scratch_dir(run_id: str, what: str) -> Path:
    """A new private directory ``dsrlab-<run id>-<what>-XXXXXXXX`` in the temporary
    directory (``what``: lowercase letters, e.g. ``chromium``)."""
    if not what.isalpha() or not what.islower():
        raise ValueError(f"scratch directory kind {what!r} is not lowercase letters")
    return Path(tempfile.mkdtemp(prefix=f"{names.PREFIX}-{names.check_run_id(run_id)}-{what}-"))


def find_dirs(run_ids: Iterable[str] | None = None) -> dict[str, list[Path]]:
    """Scratch directories by run id (only ``run_ids``, if given); links are not
    followed and anything but a directory is not the lab's."""
    wanted = set(run_ids) if run_ids is not None else None
    found: dict[str, list[Path]] = {}
    for root in temp_roots():
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for e in entries:
            m = _DIR_NAME.match(e.name)
            if m is None or (wanted is not None and m["run_id"] not in wanted):
                continue
            with contextlib.suppress(OSError):
                if e.is_dir(follow_symlinks=False):
                    found.setdefault(m["run_id"], []).append(root / e.name)
    return {k: sorted(set(v)) for k, v in found.items()}


def find_pids(run_ids: Iterable[str] | None = None) -> dict[str, list[int]]:
    """Running processes of a run, by run id (only ``run_ids``, if given; this process
    left out): those whose environment carries ``DSRLAB_RUN=<run id>``, and the
    other members of their sessions. A run's child starts in a session of its own
    (:func:`run`), and a process that rewrites its title over its environment
    (Chromium's renderers do) is still found by its session."""
    wanted = set(run_ids) if run_ids is not None else None
    me = os.getpid()
    sessions: dict[int, list[int]] = {}
    tagged: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            sessions.setdefault(os.getsid(pid), []).append(pid)
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        m = _ENV_ENTRY.search(env)
        if m is not None and (wanted is None or m["run_id"].decode() in wanted):
            tagged[pid] = m["run_id"].decode()
    found: dict[str, set[int]] = {}
    for pid, run_id in tagged.items():
        try:
            sid = os.getsid(pid)
        except OSError:
            continue
        members = sessions.get(sid, []) if sid in tagged else []  # a session of the run's
        found.setdefault(run_id, set()).update([pid, *members])
    return {k: sorted(p for p in v if procs.running(p)) for k, v in found.items()}


def remove_dir(path: Path) -> str | None:
    """Remove ``path`` and everything in it; None when it is gone, else the reason.

    A writer that was stopped a moment ago may still have a file appear in a
    folder being removed (``ENOTEMPTY``): that is tried again, for a second.
    """
    for _ in range(_REMOVE_TRIES):
        try:
            shutil.rmtree(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EBUSY):
                return f"{exc.strerror}: {exc.filename or path}"
            time.sleep(0.02)
    return f"still being written to: {path}"


def _started_by(token: str, sid: int) -> list[int]:
    """The running processes of session ``sid`` (the one :func:`run` made: its number
    cannot be another's while a member lives) or whose environment carries
    ``DSRLAB_CALL=<token>`` (a helper that made a session of its own)."""
    entry = f"{CALL_VAR}={token}".encode()
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            if os.getsid(pid) == sid:
                found.append(pid)
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if entry in env.split(b"\0"):
            found.append(pid)
    return [p for p in found if procs.running(p)]


def stop_group(proc: subprocess.Popen[bytes], token: str) -> None:
    """Stop ``proc`` (a session and group leader started by :func:`run`), every process
    of its group and session and every process carrying the call's ``token``:
    SIGTERM, then SIGKILL after :data:`GRACE_S`; waits until they are gone."""
    pgid = proc.pid
    with interrupts.deferred():  # a second signal must not leave half the group
        if proc.returncode is None:  # not reaped yet: the group id is still ours
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGKILL)
                proc.wait()
        # helpers that outlived the leader or left its group: by the call's token, each
        # by PID and start time
        procs.stop(_started_by(token, pgid), grace=GRACE_S)


def run(argv: Sequence[str], *, run_id: str, env: Mapping[str, str] | None = None,
        timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` tagged with ``run_id``, in a session and group of its own, its
    output captured (in unnamed files: a helper that keeps them open cannot hold the
    call up the way it would hold a pipe's end).

    Returns once it has exited and every process it started has been stopped;
    raises :class:`subprocess.TimeoutExpired` after ``timeout``, and whatever
    interrupted the call, in both cases with the group stopped first.
    """
    token = os.urandom(8).hex()
    full_env = {**tag_env(run_id, env), CALL_VAR: token}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with interrupts.deferred():  # started and known, or not started
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=full_env,
                start_new_session=True)
        try:
            proc.wait(timeout)
        finally:
            stop_group(proc, token)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            list(argv), proc.returncode, out.read().decode(errors="replace"),
            err.read().decode(errors="replace"))


__all__ = ["TAG_VAR", "find_dirs", "find_pids", "remove_dir", "run", "scratch_dir",
           "stop_group", "tag_env", "temp_roots"]
