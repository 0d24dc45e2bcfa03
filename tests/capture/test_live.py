"""The capture side of a run that needs no lab: point names, and ``latest`` moved atomically."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from lab.capture.layout import LATEST, mark_latest
from lab.capture.live import Capture, CapturePoint, CaptureSet, window_received
from lab.capture.manifest import Manifest, ManifestClient, ManifestPoint, ManifestService
from lab.env.netns import NetnsBackend
from lab.model.scale import scale_topology
from lab.plumbing import names, nsutil
from lab.pytest_plugin import require_root
from lab.wire.packets import read_pcap
from tests.seed import POD2_NODE


def test_a_capture_point_names_its_hop_and_file() -> None:
    p = CapturePoint(POD2_NODE, "eth0", "backend-node")
    assert p.name == f"{POD2_NODE}/eth0"
    assert p.filename == f"{POD2_NODE}--eth0.pcap"


def test_mark_latest_points_the_link_at_the_run(tmp_path: Path) -> None:
    first, second = tmp_path / "seed" / "aaaaaa", tmp_path / "seed" / "bbbbbb"
    first.mkdir(parents=True)
    second.mkdir()
    link = mark_latest(first)
    assert link == tmp_path / "seed" / LATEST
    assert link.is_symlink()
    assert os.readlink(link) == "aaaaaa"  # relative: the folder can move
    assert link.resolve() == first.resolve()
    assert mark_latest(second) == link
    assert os.readlink(link) == "bbbbbb"
    assert sorted(p.name for p in (tmp_path / "seed").iterdir()) == ["aaaaaa", "bbbbbb", LATEST]


def test_a_stale_temporary_link_is_replaced(tmp_path: Path) -> None:
    run = tmp_path / "cccccc"
    run.mkdir()
    (tmp_path / f".{LATEST}-cccccc").symlink_to("elsewhere")  # left by a killed run
    mark_latest(run)
    assert os.readlink(tmp_path / LATEST) == "cccccc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cccccc", LATEST]


def test_mark_latest_moves_the_link_atomically(tmp_path: Path) -> None:
    """A reader never finds ``latest`` missing or dangling while runs replace it."""
    runs = [tmp_path / f"{i:06x}" for i in range(2)]
    for r in runs:
        r.mkdir()
        (r / "manifest.json").write_text(r.name)
    mark_latest(runs[0])
    link = tmp_path / LATEST
    seen: set[str] = set()
    misses: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add((link / "manifest.json").read_text())
            except OSError as exc:
                misses.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1000):
            mark_latest(runs[i % 2])
    finally:
        stop.set()
        reader.join()
    assert misses == []
    assert seen == {r.name for r in runs}  # the reader did see the link move
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


class _InNetns:
    """The lab's ``start`` for one scratch namespace (what a backend gives a capture)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(nsutil.exec_argv(self.ns, argv), stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def _broadcasting(tmp_path: Path, label: str) -> Iterator[tuple[Capture,
                                                                 Callable[[bytes], None]]]:
    """A scratch namespace with a veth pair, tcpdump listening on ``vb`` and a sender of
    broadcast datagrams from ``va``; the capture is stopped on the way out."""
    ns = names.netns_name(names.new_run_id(), label)
    with nsutil.scratch(ns):
        with nsutil.open_iproute(ns) as ipr:
            ipr.link("add", ifname="va", kind="veth", peer={"ifname": "vb"})
            va, vb = ipr.link_lookup(ifname="va")[0], ipr.link_lookup(ifname="vb")[0]
            ipr.addr("add", index=va, address="10.9.0.1", prefixlen=24)
            ipr.link("set", index=va, state="up")
            ipr.link("set", index=vb, state="up")
        cap = Capture(_InNetns(ns), CapturePoint("h", "vb", "client"), tmp_path / "vb.pcap")
        cap.spawn()
        try:
            cap.wait_listening(time.monotonic() + 10)
            with nsutil.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)

                def send(data: bytes) -> None:
                    s.sendto(data, ("10.9.0.255", 9))

                yield cap, send
        finally:
            cap.stop()


@pytest.mark.netns
def test_a_burst_is_captured_whole_and_a_loss_would_be_counted(tmp_path: Path) -> None:
    """2,000 datagrams sent as fast as a socket goes: tcpdump is waited for until it
    wrote all the kernel gave it (drain), every one is in the pcap, and its counters
    say so. With tcpdump's own defaults the ring held 8 frames and lost most of such a
    burst when tcpdump waited for a CPU; stopped right away, it loses what it has not
    read yet."""
    require_root()
    with _broadcasting(tmp_path, "burst") as (cap, send):
        for i in range(2000):
            send(b"%06d" % i)
        assert cap.drain(time.monotonic() + 10)
    assert cap.stats.get("dropped_by_kernel") == 0
    assert cap.stats.get("captured") == cap.stats.get("received_by_filter")
    sent = [p for p in read_pcap(tmp_path / "vb.pcap") if p.dport == 9]
    assert len(sent) == 2000


@pytest.mark.netns
def test_what_arrives_after_the_drain_is_no_loss_of_the_run(tmp_path: Path) -> None:
    """The run's window ends at the drain: a burst sent after it (a late
    retransmission, in a run) and cut off by the stop is not counted as packets the
    capture lost, however many tcpdump still wrote."""
    require_root()
    with _broadcasting(tmp_path, "late") as (cap, send):
        for i in range(200):
            send(b"%06d" % i)
        assert cap.drain(time.monotonic() + 10)
        for i in range(3000):  # after the run: stopped before all are read
            send(b"late%06d" % i)
    assert cap.drained_received is not None
    assert cap.drained_received >= 200
    window = window_received(cap)
    assert window == cap.drained_received
    written = cap.stats["captured"]
    assert written >= window  # every packet of the window is in the pcap
    point = ManifestPoint(name="h", host="h", ifname="vb", role="client", file="vb.pcap",
                          packets=written, received=window,
                          dropped=cap.stats.get("dropped_by_kernel"))
    assert point.missing == 0


# -- kernel rings sized to the lab ------------------------------------------------------

@pytest.mark.netns
def test_the_tcpdump_rings_share_one_budget_sized_to_the_lab(tmp_path: Path) -> None:
    """12 nodes with 2 pods each, captured at every hop of a scenario (client, LB node,
    11 other nodes, 24 pods): the client and the LB node keep 32 MiB rings, the others
    share what is left of 256 MiB (before: 37 x 32 MiB, 2 GiB of kernel memory)."""
    require_root()
    topo = scale_topology(12)
    manifest = Manifest(scenario="rings", run_id="abc123", backend="netns",
                        topology=topo.name,
                        service=ManifestService(ip="172.18.0.2", port=32000, name="websvc"),
                        client=ManifestClient(ip="172.18.0.1"), option_byte_order="host",
                        backends=[])
    with NetnsBackend(datapath=False, servers=False).up(topo) as lab:
        points = [CapturePoint("client", lab.hosts["client"].ifname, "client"),
                  CapturePoint("node-0", "eth0", "lb-node"),
                  *(CapturePoint(n.name, "eth0", "backend-node") for n in topo.nodes[1:]),
                  *(CapturePoint(p.name, "eth0", "pod") for p in topo.pods)]
        with CaptureSet(lab, tmp_path / "rings", points, manifest) as cs:
            rings = {}
            for cap in cs.captures:
                assert cap.proc is not None
                argv = Path(f"/proc/{cap.proc.pid}/cmdline").read_bytes().split(b"\0")
                assert argv[0].endswith(b"tcpdump")  # nsenter became tcpdump
                rings[cap.point.name] = int(argv[argv.index(b"-B") + 1])
    assert len(rings) == 37
    assert rings["client/br-kind"] == rings["node-0/eth0"] == 32768
    others = [kib for name, kib in rings.items() if name not in ("client/br-kind",
                                                                 "node-0/eth0")]
    assert all(512 <= kib < 32768 for kib in others)
    assert sum(rings.values()) <= 256 * 1024


@pytest.mark.netns
def test_a_capture_whose_pipe_is_descriptor_1024_or_above_works(tmp_path: Path) -> None:
    """A lab of hundreds of captures holds over a thousand descriptors: tcpdump's stderr
    pipe then has a number select() refuses (before: ``ValueError: filedescriptor out
    of range in select()`` at 300 nodes, with the lab up)."""
    require_root()
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    ns = names.netns_name(names.new_run_id(), "fds")
    try:
        with nsutil.scratch(ns):
            cap = Capture(_InNetns(ns), CapturePoint("h", "lo", "client"), tmp_path / "lo.pcap")
            cap.spawn()
            try:
                assert cap.proc is not None
                assert cap.proc.stderr is not None
                assert cap.proc.stderr.fileno() >= 1024
                cap.wait_listening(time.monotonic() + 10)
                assert cap.drain(time.monotonic() + 10)
            finally:
                cap.stop()
    finally:
        for fd in held:
            os.close(fd)
    assert "listening on lo" in cap.stderr
    assert "captured" in cap.stats or "received_by_filter" in cap.stats
