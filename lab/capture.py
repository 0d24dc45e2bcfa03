"""tcpdump at every hop, and the capture set it leaves on disk.

A :class:`CaptureSet` starts one tcpdump per :class:`CapturePoint` inside
the point's host, waits until every one of them says it is listening, and
on exit waits for the traffic to go quiet, stops them with SIGINT (so they
flush) and writes ``manifest.json``. The layout is::

    captures/<scenario>/<run-id>/<point>.pcap
    captures/<scenario>/<run-id>/manifest.json
    captures/<scenario>/latest -> <run-id>

The trace checker adds ``results.json`` and the report ``merged.pcapng``
(:data:`RESULTS`, :data:`MERGED`). Everything after this module reads only
that directory, never a live lab: :class:`CaptureDir` is the directory read
back, with the manifest's facts typed and each pcap's packets read once.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from lab import dsropt

if TYPE_CHECKING:
    from lab.packets import Pkt

Role = Literal["client", "lb-node", "backend-node", "pod"]
ROLES: tuple[Role, ...] = ("client", "lb-node", "backend-node", "pod")
MANIFEST = "manifest.json"
RESULTS = "results.json"  # the trace checker's verdicts
MERGED = "merged.pcapng"  # every hop in one file, for Wireshark
READY_TIMEOUT_S = 10.0
QUIET_S = 0.15
SETTLE_MAX_S = 3.0
_STATS_RE = re.compile(
    r"^(?P<n>\d+) packets? (?P<what>captured|received by filter|dropped by kernel)$",
    re.MULTILINE)


class CaptureError(RuntimeError):
    """A capture could not start, or stopped badly; carries tcpdump's stderr."""


class _Runs(Protocol):
    def exec_argv(self, host: str, argv: list[str]) -> list[str]: ...


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

    lab: _Runs
    point: CapturePoint
    path: Path
    proc: subprocess.Popen[bytes] | None = None
    stderr: str = ""
    stats: dict[str, int] = field(default_factory=dict)

    def argv(self) -> list[str]:
        return [
            "tcpdump", "-i", self.point.ifname, "-w", str(self.path),
            "-U", "-n", "-s", "0", "-Z", "root", "--immediate-mode",
        ]

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            self.lab.exec_argv(self.point.host, self.argv()),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

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
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait()
                    raise CaptureError(f"tcpdump on {self.point.name} exited with "
                                       f"{self.proc.returncode}: {buf.decode(errors='replace')}")
                buf += chunk
        self.stderr = buf.decode(errors="replace")

    def stop(self) -> None:
        """SIGINT (tcpdump flushes and prints its counters), then wait."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
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


@dataclass
class CaptureSet:
    """tcpdump on every point of a run; on exit, the pcaps and manifest.json.

    ``info`` is the manifest without the points (scenario, run id, backend,
    service, client, ...); it is written as given, plus ``points``.
    """

    lab: _Runs
    directory: Path
    points: list[CapturePoint]
    info: dict[str, Any]
    captures: list[Capture] = field(default_factory=list)

    def __enter__(self) -> CaptureSet:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for p in self.points:
                cap = Capture(self.lab, p, self.directory / p.filename)
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
            finally:
                self._stop_all()
        except CaptureError as stopping:
            if exc is None:
                raise
            exc.add_note(f"and stopping the captures failed: {stopping}")
        self.write_manifest()

    def settle(self) -> None:
        """Wait until no capture file has grown for ``QUIET_S`` (traffic is over)."""
        last = [c.size() for c in self.captures]
        quiet_since = time.monotonic()
        give_up = quiet_since + SETTLE_MAX_S
        while time.monotonic() < give_up:
            time.sleep(0.02)
            now = [c.size() for c in self.captures]
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S:
                return

    def _stop_all(self) -> None:
        errors = []
        for cap in self.captures:
            try:
                cap.stop()
            except Exception as exc:
                errors.append(f"{cap.point.name}: {exc}")
        if errors:
            raise CaptureError("stopping captures failed: " + "; ".join(errors))

    def write_manifest(self) -> Path:
        manifest = {
            **self.info,
            "points": [
                {**asdict(c.point), "name": c.point.name, "file": c.path.name,
                 "packets": c.stats.get("captured")}
                for c in self.captures
            ],
        }
        path = self.directory / MANIFEST
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        link = self.directory.parent / "latest"
        tmp = self.directory.parent / f".latest-{self.directory.name}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.directory.name)
        tmp.replace(link)
        return path


@dataclass(frozen=True)
class PointFile:
    """A capture point as read back from a manifest."""

    name: str
    host: str
    ifname: str
    role: Role
    file: Path  # absolute


@dataclass(frozen=True)
class Service:
    """The service the client addressed (``""`` / 0 where the manifest does not say)."""

    ip: str
    port: int
    name: str
    protocol: str  # lower case: "tcp" or "udp"

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Backend:
    """One of the service's pods (``""`` / 0 where the manifest does not say)."""

    name: str
    ip: str
    port: int
    node: str


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _port(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class CaptureDir:
    """A capture set on disk: the manifest and its pcaps (no live lab needed).

    The points must be well formed; the other facts are read leniently, since
    captures brought from real clusters may lack them: a missing service,
    client or backend field is ``""`` or 0 here, and whoever needs it says so
    (the trace checker does). ``manifest`` is the raw document.
    """

    directory: Path
    manifest: dict[str, Any]
    points: list[PointFile]
    service: Service
    client_ip: str
    backends: list[Backend]
    option_order: dsropt.OptionOrder  # of the DSR option; host order unless it says network
    _packets: dict[str, list[Pkt]] = field(default_factory=dict, init=False, repr=False,
                                            compare=False)

    @classmethod
    def load(cls, directory: str | Path) -> CaptureDir:
        d = Path(directory).resolve()
        path = d / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CaptureError(f"{path}: cannot read manifest: {exc}") from None
        points = []
        for i, p in enumerate(manifest.get("points", [])):
            try:
                role = p["role"]
                if role not in ROLES:
                    raise CaptureError(f"{path}: points[{i}].role: {role!r} is not one of {ROLES}")
                points.append(PointFile(name=p["name"], host=p["host"], ifname=p["ifname"],
                                        role=role, file=d / p["file"]))
            except KeyError as exc:
                raise CaptureError(f"{path}: points[{i}]: missing {exc}") from None
        svc = _map(manifest.get("service"))
        backends = manifest.get("backends")
        return cls(
            directory=d, manifest=manifest, points=points,
            service=Service(_text(svc.get("ip")), _port(svc.get("port")), _text(svc.get("name")),
                            _text(svc.get("protocol") or "TCP").lower()),
            client_ip=_text(_map(manifest.get("client")).get("ip")),
            backends=[Backend(_text(b.get("name")), _text(b.get("ip")), _port(b.get("port")),
                              _text(b.get("node")))
                      for b in map(_map, backends if isinstance(backends, list) else [])],
            option_order="network" if manifest.get("option_byte_order") == "network" else "host",
        )

    def by_role(self, role: Role) -> Iterator[PointFile]:
        return (p for p in self.points if p.role == role)

    def point(self, name: str) -> PointFile:
        for p in self.points:
            if name in (p.name, p.host):
                return p
        raise KeyError(f"no capture point {name!r} in {self.directory}")

    def packets(self, point: PointFile) -> list[Pkt]:
        """The point's IPv4 packets (none when its pcap is absent), read once per instance."""
        if point.name not in self._packets:
            # scapy takes ~0.3 s to import: only the readers of packets pay for it
            from lab.packets import read_pcap  # noqa: PLC0415

            self._packets[point.name] = read_pcap(point.file) if point.file.exists() else []
        return self._packets[point.name]
