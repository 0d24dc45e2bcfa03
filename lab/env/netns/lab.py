"""A topology brought up in network namespaces (:class:`NetnsLab`), and the
undo stack that takes it down (:class:`_Undo`): every step of a bring-up
records its undo, so a start that fails half-way undoes what it did.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lab.atomic import OutputError, reason, write_text
from lab.capture.dpevents import DatapathEvents
from lab.datapath import DatapathObject
from lab.datapath.fabric import FabricObject
from lab.env.base import BackendError, LabHost, LeftBy
from lab.env.netns.datapath import NodeDatapaths
from lab.env.netns.servers import PodServers
from lab.env.state import STATE_DIR, state_path
from lab.model.topology import Topology
from lab.plumbing import interrupts, names, nsmark, nsutil, owner


@dataclass
class _Undo:
    """Last-in-first-out undo steps; a failing step is reported, not swallowed."""

    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> list[str]:
        """Every step, last first; an interrupt arriving meanwhile is raised after the
        last one (a second Ctrl-C cannot leave half a lab)."""
        errors: list[str] = []
        with interrupts.deferred():
            while self.steps:
                what, fn = self.steps.pop()
                try:
                    fn()
                except Exception as exc:
                    errors.append(f"{what}: {exc}")
        return errors


class NetnsLab:
    """A topology brought up in network namespaces (a context manager).

    ``with NetnsBackend().up(topo) as lab:`` tears the lab down on exit;
    :meth:`detach` leaves it running for ``dsrlab down`` / ``dsrlab clean``.
    """

    backend = "netns"

    def __init__(self, topology: Topology, run_id: str) -> None:
        self.topology = topology
        self.run_id = run_id
        self.hosts: dict[str, LabHost] = {}
        self.pids: dict[str, int] = {}  # pod name -> pid of the process serving it
        self.datapath: dict[str, DatapathObject] = {}  # node name -> loaded datapath object
        self.fabric: FabricObject | None = None  # the topology's fabric, when it has one
        self.servers: PodServers | None = None
        self.datapaths: NodeDatapaths | None = None  # the nodes' datapath, when loaded
        self._undo = _Undo()
        self._closed = False

    # -- the Lab interface ---------------------------------------------------
    def netns(self, host: str) -> str:
        try:
            return self.hosts[host].netns
        except KeyError:
            raise BackendError(f"no host {host!r} in lab {self.run_id}") from None

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        return nsutil.exec_argv(self.netns(host), argv)

    def run(
        self, host: str, argv: list[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.exec_argv(host, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.exec_argv(host, argv), stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr)

    # -- pods ------------------------------------------------------------------
    def datapath_record(self) -> dict[str, str]:
        """What the nodes run (``{}`` for a lab brought up without a datapath)."""
        return self.datapaths.describe() if self.datapaths is not None else {}

    def open_datapath_events(self) -> None:
        """Keep what the nodes' datapath says from now on (a run's captures start)."""
        if self.datapaths is not None:
            self.datapaths.open_events()

    def datapath_events(self) -> DatapathEvents | None:
        """What it said since :meth:`open_datapath_events` (None: no datapath)."""
        return self.datapaths.take_events() if self.datapaths is not None else None

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the pods' server accepts connections (``up`` returns before:
        the sockets listen already). Traffic whose timeouts must not include the
        server's start (a slow machine, a kernel under emulation) waits first."""
        if self.servers is not None:
            self.servers.wait_ready(timeout)

    def stop_pod_server(self, pod: str) -> None:
        """Stop serving one pod (it stops listening, its connections drop); the
        other pods go on. Needs the lab's own process (not after :meth:`detach`)."""
        if self.servers is None:
            raise BackendError(f"lab {self.run_id} runs no pod servers")
        if pod not in self.servers.pods:
            raise BackendError(f"no pod {pod!r} in lab {self.run_id}")
        self.servers.stop_pod(pod)

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        try:
            self.down()
        except BackendError as teardown:
            if exc is None:
                raise
            exc.add_note(f"and the teardown was incomplete: {teardown}")

    def down(self) -> None:
        """Stop the pod server, drop the datapath, remove every namespace (LIFO)."""
        if self._closed:
            return
        errors = self.abort()
        with contextlib.suppress(FileNotFoundError):
            state_path(self.run_id).unlink()
        if errors:
            raise BackendError(f"teardown of lab {self.run_id} was incomplete:\n  "
                               + "\n  ".join(errors))

    def abort(self) -> list[str]:
        """Run the undo (every step, last first) and mark the lab closed; return
        the steps that failed (a failed bring-up reports them with its cause)."""
        self._closed = True
        return self._undo.run()

    def detach(self, *, by: LeftBy = "up") -> Path:
        """Leave the lab running; write its state for ``dsrlab down``; return the file.

        The process gives up its claim: the lab now belongs to whoever runs
        ``dsrlab down`` or ``dsrlab clean``. Every namespace records that it was
        left up, and by what (``by``: ``dsrlab up`` or ``run --keep``), where every
        state directory sees it (:mod:`lab.plumbing.nsmark`). An interrupt
        meanwhile is raised once the state is written (the lab is then up, as
        asked, and findable).
        """
        with interrupts.deferred():
            try:
                path = self.write_state(by)
            except BaseException as exc:  # not left up unfindable: taken down instead
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
            self.close_handles()
            self._closed = True
            self._undo.steps.clear()
            me = owner.Holder.this_process()
            mark = nsmark.Mark(self.run_id, by, me.pid, me.process.start_time,
                               me.stop_signal)
            for ns in nsutil.list_netns():
                parsed = names.parse_netns_name(ns)
                if parsed is not None and parsed.run_id == self.run_id:
                    with contextlib.suppress(nsutil.NetnsError):
                        nsutil.write_mark(ns, mark)
            owner.release(self.run_id)
        return path

    def close_handles(self) -> None:
        """Close this process's BPF handles and the pod server's control channel
        (the lab, its datapath and its server stay up)."""
        for dp in self.datapath.values():
            dp.close()
        if self.fabric is not None:
            self.fabric.close()
        if self.servers is not None:
            self.servers.release()

    def write_state(self, by: LeftBy = "up") -> Path:
        try:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(STATE_DIR, f"cannot create: {reason(exc)}") from None
        path = state_path(self.run_id)
        state = {
            "run_id": self.run_id,
            "backend": self.backend,
            "left_up_by": nsmark.LEFT_UP_BY[by],
            "topology": str(self.topology.source) if self.topology.source else None,
            "topology_name": self.topology.name,
            "namespaces": {h.name: h.netns for h in self.hosts.values()},
            "pids": self.pids,
            "created": time.time(),
        }
        return write_text(path, json.dumps(state, indent=2))
