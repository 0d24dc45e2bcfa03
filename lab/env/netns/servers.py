"""The lab's one pod server process, seen from the lab (:class:`PodServers`).

Every pod answers HTTP on its workload port, all of them served by one
process per lab (:mod:`lab.env.podserver`). The pods' sockets are made, bound
and listening before that process starts, so that start is not waited for.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys

from lab.env import podserver
from lab.env.base import BackendError
from lab.env.netns.layout import TERM_GRACE_S
from lab.model.topology import Pod
from lab.plumbing import nsutil


class PodServers:
    """The lab's one pod server process, seen from the lab: start, command, stop.

    The listening sockets are made by the lab (one per pod and protocol, each
    inside its pod's namespace) and inherited by the process; a unix socket
    pair carries the spec (which descriptor is which pod) and then commands
    such as ``stop POD``. The process is started inside the lab namespace
    ``netns``, where ``dsrlab clean`` finds it.
    """

    def __init__(self, proc: subprocess.Popen[bytes], control: socket.socket,
                 pods: list[str]) -> None:
        self.proc = proc
        self.pods = pods
        self._control: socket.socket | None = control
        self._rfile = control.makefile("rb")
        self._ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, netns: str,
              listeners: list[tuple[Pod, list[tuple[socket.socket, str]]]],
              keep_fds: tuple[int, ...] = ()) -> PodServers:
        """Start the process in ``netns`` serving ``listeners`` (pod, [(socket, proto)]).

        The sockets stay open in this process; close them once this returns
        (the server must hold the only copies for a stopped pod to stop listening).
        ``keep_fds`` are inherited and held, unused, for the process's life: the
        datapath's descriptors that must outlive this process (Cilium's prog arrays).
        """
        spec = {"pods": [{"name": pod.name, "ip": str(pod.ip),
                          "listeners": [{"fd": s.fileno(), "proto": proto} for s, proto in socks]}
                         for pod, socks in listeners]}
        fds = [s.fileno() for _, socks in listeners for s, _ in socks]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # forked from a thread inside the namespace, the process starts there: no
            # nsenter, and no moment in which cleanup could miss it
            with nsutil.in_netns(netns):
                proc = subprocess.Popen(
                    [sys.executable, "-I", podserver.__file__, "--control", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(), *fds, *keep_fds),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        servers = cls(proc, ours, [pod.name for pod, _ in listeners])
        try:
            data = json.dumps(spec).encode() + b"\n"
            if len(data) > 64 * 1024:  # hand it over at once, not as the child starts reading
                with contextlib.suppress(OSError):
                    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * len(data))
            ours.sendall(data)
        except BaseException:
            servers.stop()
            raise
        return servers

    def _readline(self, timeout: float) -> str:
        if self._control is None:
            raise BackendError("the pod server's control channel is closed (lab detached?)")
        self._control.settimeout(timeout)
        try:
            line = self._rfile.readline()
        except TimeoutError:
            raise BackendError(f"pod server (pid {self.pid}) did not answer in {timeout:g} s") \
                from None
        if not line:
            raise BackendError(f"pod server (pid {self.pid}) closed its control channel "
                               f"(exit status {self.proc.poll()})")
        return line.decode(errors="replace").strip()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the process serves every pod (``up`` need not: the sockets
        listen already, and connections queue until it accepts them)."""
        if self._ready:
            return
        line = self._readline(timeout)
        if not line.startswith("ready "):
            raise BackendError(f"pod server (pid {self.pid}): {line}")
        self._ready = True

    def command(self, line: str, timeout: float = 5.0) -> str:
        """Send one control command and return its one-line answer."""
        self.wait_ready(max(timeout, 10.0))
        assert self._control is not None
        self._control.sendall(line.strip().encode() + b"\n")
        return self._readline(timeout)

    def stop_pod(self, pod: str) -> None:
        """Stop serving ``pod`` only: it stops listening and drops its connections."""
        reply = self.command(f"stop {pod}")
        if reply != f"stopped {pod}":
            raise BackendError(f"pod server: stop {pod}: {reply}")

    def serving(self) -> list[str]:
        """The pods still being served."""
        return self.command("pods").split()[1:]

    def release(self) -> None:
        """Close the control channel; the process goes on serving (a detached lab)."""
        if self._control is not None:
            self._rfile.close()
            self._control.close()
            self._control = None

    def stop(self) -> None:
        """SIGTERM and reap it; SIGKILL after the grace period."""
        self.release()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TERM_GRACE_S)
