"""tcpdump at every hop of a running lab, written as a capture set.

A :class:`CaptureSet` starts one tcpdump per :class:`CapturePoint` on the
point's host (through the lab's backend: ``start`` runs a command there),
waits until every one of them says it is listening, and on exit waits for
the traffic to go quiet, stops them with SIGINT (so they flush) and writes
``manifest.json`` (:class:`~lab.capture.manifest.Manifest`). tcpdump writes
the pcap to its standard output, which is the local file: the same on a
namespace, a kind node container or any host a backend can run a command on.
The layout is::

    captures/<scenario>/<run-id>/<host>--<ifname>.pcap
    captures/<scenario>/<run-id>/manifest.json
    captures/<scenario>/latest -> <run-id>   (moved by the runner when a run is complete)

Everything after this reads only that directory, never a live lab
(:class:`~lab.capture.capdir.CaptureDir`).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from lab.capture.layout import CaptureError, Role
from lab.capture.manifest import Manifest, ManifestPoint

# a dead tcpdump is seen at once (EOF); a matrix guest under TCG on a loaded host
# took over 10 s to start a scenario's seven
READY_TIMEOUT_S = 60.0
# tcpdump's snap length and kernel ring: with its defaults (-s 0 and --immediate-mode,
# a 2 MiB ring of 256 KiB frames) the ring holds 8 packets, and a burst while tcpdump
# waits for a CPU is dropped by the kernel (1,968 of 2,000 datagrams here, under load).
# 9216 bytes keeps every frame of a 1500- or 9000-byte MTU whole (veth's GSO
# super-frames, up to 64 KiB, are cut there; their IP header still gives their
# length); 32 MiB makes room for thousands. The kernel allocates every ring whole
# when tcpdump starts, so the rings share one budget (ring_sizes): the client and the
# LB node see every flow and get the full ring; the other points (a backend's node
# and pod see their share of the flows) split the rest, down to RING_MIN_KIB each.
# libpcap lays a ring out in frames of the snap length plus a header, one per block of
# the next power of two (16 KiB here): the kernel holds ~1.8 x what -B asks for
# (ring_memory; 32 MiB asked is 56 MiB held). A seed run keeps 32 MiB everywhere;
# 300 nodes' 901 points hold ~1 GiB of rings, not 50.
SNAPLEN = 9216
RING_KIB = 32768  # one point's ring at most
RING_MIN_KIB = 512  # and at least (over fifty full-size frames)
RING_BUDGET_KIB = 256 * 1024  # every ring of a capture set together, while above the minimum
BUSY_ROLES: frozenset[Role] = frozenset({"client", "lb-node"})  # every flow passes there
QUIET_S = 0.15
SETTLE_MAX_S = 3.0
DRAIN_MAX_S = 30.0  # how long tcpdump may take to write what the kernel already gave it
# (it returns as soon as all is written: the bound matters only on a loaded machine, where
# tcpdump was seen 5 s behind the traffic)
# tcpdump's answer to SIGUSR1: its counters so far, on one line
_PROGRESS_RE = re.compile(r"(?P<cap>\d+) packets? captured, (?P<recv>\d+) packets? received "
                          r"by filter")
_STATS_RE = re.compile(
    r"^(?P<n>\d+) packets? (?P<what>captured|received by filter|dropped by kernel)$",
    re.MULTILINE)


def ring_sizes(roles: list[Role], most: int = RING_KIB) -> list[int]:
    """Each point's kernel ring in KiB (tcpdump's ``-B``), for points of these roles:
    the busy ones (:data:`BUSY_ROLES`) get ``most`` (at most :data:`RING_KIB`), the
    others share what is left of :data:`RING_BUDGET_KIB`, between :data:`RING_MIN_KIB`
    and ``most``."""
    most = max(RING_MIN_KIB, min(most, RING_KIB))
    busy = sum(1 for r in roles if r in BUSY_ROLES)
    others = len(roles) - busy
    left = max(0, RING_BUDGET_KIB - busy * most)
    share = most if others == 0 else max(RING_MIN_KIB, min(most, left // others))
    return [most if r in BUSY_ROLES else share for r in roles]


def ring_for_frames(frames: int | None, snaplen: int = SNAPLEN) -> int:
    """The ring (KiB) that holds ``frames`` whole frames twice over even if tcpdump
    read none of them meanwhile; :data:`RING_KIB` when the traffic has no bound
    (``None``: a transfer, a replayed capture). The kernel's ring is allocated and
    cleared whole when tcpdump starts: seven 32 MiB rings cost 130 ms of CPU, seven
    of 4 MiB 60 ms, for a run of a few dozen packets."""
    if frames is None:
        return RING_KIB
    return max(RING_MIN_KIB, min(RING_KIB, -(-2 * frames * _frame_bytes(snaplen) // 1024)))


def _readable(fd: int, wait: float) -> bool:
    """Whether ``fd`` has something to read (or its end) within ``wait`` seconds.

    poll, not select: select() refuses descriptors of 1024 and above, and a lab of
    hundreds of capture points holds that many pipes.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(0.0, wait) * 1000))


def _frame_bytes(snaplen: int) -> int:
    """What one frame takes of the ring tcpdump asks for: the snap length and libpcap's
    header, 16-byte aligned."""
    return (snaplen + 96 + 15) // 16 * 16


def ring_memory(kib: int, snaplen: int = SNAPLEN) -> int:
    """Bytes the kernel allocates for a ring tcpdump asks ``kib`` KiB for (libpcap:
    frames of the snap length and its header, 16-byte aligned, each in a block of the
    next power of two, at least a page)."""
    frame = _frame_bytes(snaplen)
    block = 4096
    while block < frame:
        block *= 2
    return kib * 1024 // frame * block


class Starts(Protocol):
    """What a capture needs of a lab: start a long-running command on a host."""

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int) -> subprocess.Popen[bytes]: ...


@dataclass(frozen=True)
class CapturePoint:
    """Where to capture: an interface of a host, and what that hop is in the flow."""

    host: str
    ifname: str
    role: Role

    @property
    def name(self) -> str:
        """Hop name as Wireshark will show it, e.g. ``cilium-dsr-worker/eth0``."""
        return f"{self.host}/{self.ifname}"

    @property
    def filename(self) -> str:
        return f"{self.host}--{self.ifname}.pcap"


@dataclass
class Capture:
    """One tcpdump process on one capture point (a context manager)."""

    lab: Starts
    point: CapturePoint
    path: Path
    proc: subprocess.Popen[bytes] | None = None
    stderr: str = ""
    stats: dict[str, int] = field(default_factory=dict)
    # packets the filter had passed when the drain found them all written: the run's
    # window (what arrives between then and the stop, a late retransmission, is not
    # the run's and is no loss when tcpdump stops before writing it)
    drained_received: int | None = None
    snaplen: int = SNAPLEN  # bytes kept of each packet
    ring_kib: int = RING_KIB  # the kernel ring tcpdump asks for (-B)
    _interrupted: bool = False  # SIGINT sent

    def argv(self) -> list[str]:
        """tcpdump writing the pcap to stdout, a packet at a time (``-U``)."""
        return [
            "tcpdump", "-i", self.point.ifname, "-w", "-", "-U", "-n",
            "-s", str(self.snaplen), "-B", str(self.ring_kib), "-Z", "root", "--immediate-mode",
        ]

    def spawn(self) -> None:
        with self.path.open("xb") as out:  # the child holds its own copy of the descriptor
            self.proc = self.lab.start(self.point.host, self.argv(), stdout=out,
                                       stderr=subprocess.PIPE)

    def wait_listening(self, deadline: float) -> None:
        """Block until tcpdump prints ``listening on`` (its ready signal)."""
        if self.proc is None or self.proc.stderr is None:
            raise CaptureError(f"tcpdump on {self.point.name} was not started")
        fd = self.proc.stderr.fileno()
        buf = b""
        while b"listening on" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaptureError(
                    f"tcpdump on {self.point.name} did not report listening within "
                    f"{READY_TIMEOUT_S:.0f}s; stderr: {buf.decode(errors='replace')!r}")
            if _readable(fd, left):
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait()
                    raise CaptureError(f"tcpdump on {self.point.name} exited with "
                                       f"{self.proc.returncode}: {buf.decode(errors='replace')}")
                buf += chunk
        self.stderr = buf.decode(errors="replace")

    def drain(self, deadline: float) -> bool:
        """Wait until tcpdump has written every packet the kernel handed it (its
        SIGUSR1 counters: captured == received by filter), up to ``deadline``.

        A SIGINT makes tcpdump stop reading: what is still in its ring is lost
        (the counters then show fewer captured than received). Under load
        tcpdump lags the traffic by far more than a quiet pcap suggests.
        """
        proc = self.proc
        if proc is None or proc.stderr is None or proc.poll() is not None:
            return False
        fd = proc.stderr.fileno()
        while time.monotonic() < deadline:
            proc.send_signal(signal.SIGUSR1)
            got = self._read_stderr(fd, min(0.5, max(0.0, deadline - time.monotonic())))
            counts = _PROGRESS_RE.findall(got)
            if counts and int(counts[-1][0]) >= int(counts[-1][1]):
                self.drained_received = int(counts[-1][1])
                return True
            time.sleep(0.02)
        return False

    def _read_stderr(self, fd: int, wait: float) -> str:
        """What tcpdump wrote to stderr within ``wait`` seconds (kept in ``stderr``)."""
        chunks = []
        end = time.monotonic() + wait
        while True:
            if not _readable(fd, end - time.monotonic()):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            chunks.append(chunk.decode(errors="replace"))
            if "received by filter" in chunks[-1]:
                break
        text = "".join(chunks)
        self.stderr += text
        return text

    def interrupt(self) -> None:
        """SIGINT: tcpdump flushes, prints its counters and exits (:meth:`stop` waits)."""
        if self.proc is not None and not self._interrupted and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self._interrupted = True

    def stop(self) -> None:
        """SIGINT (unless :meth:`interrupt` sent it), then wait."""
        if self.proc is None:
            return
        self.interrupt()
        proc, self.proc = self.proc, None
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        self.stderr += err.decode(errors="replace")
        for m in _STATS_RE.finditer(self.stderr):
            self.stats[m["what"].replace(" ", "_")] = int(m["n"])

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def last_write(self) -> float:
        """When tcpdump last wrote to the pcap (seconds since the epoch; 0 if none)."""
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0


def window_received(c: Capture) -> int | None:
    """What the filter passed within the run: at the drain when it completed (every one
    of them then written), else tcpdump's final count."""
    final = c.stats.get("received_by_filter")
    if c.drained_received is None or final is None:
        return final
    return min(final, c.drained_received)


@dataclass
class CaptureSet:
    """tcpdump on every point of a run; on exit, the pcaps and manifest.json.

    ``manifest`` is the run's record without the points (scenario, run id,
    backend, service, client, backends); the points are added on exit.
    """

    lab: Starts
    directory: Path
    points: list[CapturePoint]
    manifest: Manifest
    captures: list[Capture] = field(default_factory=list)
    ring_kib: int = RING_KIB  # the busiest point's ring (ring_for_frames: the traffic's)

    def __enter__(self) -> CaptureSet:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            rings = ring_sizes([p.role for p in self.points], self.ring_kib)
            for p, ring in zip(self.points, rings, strict=True):
                cap = Capture(self.lab, p, self.directory / p.filename, ring_kib=ring)
                self.captures.append(cap)
                cap.spawn()
            deadline = time.monotonic() + READY_TIMEOUT_S
            for cap in self.captures:
                cap.wait_listening(deadline)
        except BaseException:
            self._stop_all()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        try:
            try:
                self.settle()
                deadline = time.monotonic() + DRAIN_MAX_S
                for cap in self.captures:
                    cap.drain(deadline)
            finally:
                self._stop_all()
        except CaptureError as stopping:
            if exc is None:
                raise
            exc.add_note(f"and stopping the captures failed: {stopping}")
        self.write_manifest()

    def settle(self) -> None:
        """Wait until no capture file has been written for ``QUIET_S`` (traffic is
        over): counted from each file's last write, so quiet that began before the
        call counts too."""
        give_up = time.monotonic() + SETTLE_MAX_S
        while time.monotonic() < give_up:
            quiet = time.time() - max((c.last_write() for c in self.captures), default=0.0)
            if quiet >= QUIET_S:
                return
            time.sleep(min(QUIET_S - quiet, QUIET_S))

    def _stop_all(self) -> None:
        for cap in self.captures:  # every tcpdump flushes at once; then each is waited for
            cap.interrupt()
        errors = []
        for cap in self.captures:
            try:
                cap.stop()
            except Exception as exc:
                errors.append(f"{cap.point.name}: {exc}")
        if errors:
            raise CaptureError("stopping captures failed: " + "; ".join(errors))

    def write_manifest(self) -> Path:
        points = [ManifestPoint(name=c.point.name, host=c.point.host, ifname=c.point.ifname,
                                role=c.point.role, file=c.path.name,
                                packets=c.stats.get("captured"),
                                received=window_received(c),
                                dropped=c.stats.get("dropped_by_kernel"))
                  for c in self.captures]
        return self.manifest.model_copy(update={"points": points}).write(self.directory)
