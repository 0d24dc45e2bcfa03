"""What DSR saves, measured: the same topology under each load-balancer mode.

For each mode the topology is brought up with ``load_balancer.mode`` set to
it, and with real traffic from the client to the NodePort of a node that runs
no backend (so every flow is forwarded to another node):

* one large HTTP response (``GET /bytes/N`` from a pod), while tcpdump on
  the LB node's eth0 records every packet's headers; the bytes (IP total
  length) and packets are summed per direction: *request* (client to
  service, and the LB node's forwarded copies) and *reply* (backend to the
  LB node, and the LB node to the client). Under DSR the reply bytes there
  are 0: the backend's node answers the client directly.
* ``requests`` short requests, each a new TCP connection from a kernel
  socket in the client's namespace, timed from connect to the last byte:
  the latency's p50 and p99.

:func:`compare_modes` returns one :class:`ModeFigures` per mode;
:func:`plot_modes` draws them (matplotlib, SVG): bytes through the LB node
per direction and the latency percentiles, side by side.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path

from lab.atomic import AtomicFile
from lab.capture.layout import CaptureError
from lab.capture.live import Capture, CapturePoint
from lab.env import Backend, Lab, get_backend
from lab.model.topology import Topology
from lab.wire.pcapread import CaptureFile

Progress = Callable[[str], None]
DEFAULT_TRANSFER = 100 * 1024 * 1024  # the 100 MB response
DEFAULT_REQUESTS = 1000
SNAPLEN = 128  # headers are enough to count bytes and tell directions apart
LINKTYPE_ETHERNET = 1

# the client's side of the short requests: one new connection each, timed in-process
_LATENCIES = """
import json, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n"
out = []
for _ in range(n):
    t0 = time.perf_counter()
    s = socket.create_connection((ip, port), timeout=5)
    s.sendall(req)
    while s.recv(65536):
        pass
    s.close()
    out.append(time.perf_counter() - t0)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class ModeFigures:
    """One mode's traffic through the LB node and its request latency."""

    mode: str
    transfer_bytes: int  # the HTTP body the client downloaded
    transfer_s: float
    request_bytes: int  # at the LB node's eth0: client -> service, and forwarded on
    request_packets: int
    reply_bytes: int  # at the LB node's eth0: backend -> node, and node -> client
    reply_packets: int
    latency_p50_ms: float
    latency_p99_ms: float
    requests: int
    datapath: str = ""  # what the nodes ran: "lab", "cilium v1.16.0"

    @property
    def lb_bytes(self) -> int:
        return self.request_bytes + self.reply_bytes

    def as_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "lb_bytes": self.lb_bytes}


def with_mode(topology: Topology, mode: str) -> Topology:
    lb = topology.load_balancer.model_copy(update={"mode": mode})
    return topology.model_copy(update={"load_balancer": lb})


def lb_node_without_backend(topology: Topology, service: str) -> str:
    """A node running no pod of ``service``: all its flows go to other nodes."""
    busy = {p.node for p in topology.backends(service)}
    for n in topology.nodes:
        if n.name not in busy:
            return n.name
    raise ValueError(f"every node runs a pod of {service}: no node forwards all its flows")


def count_directions(pcap: Path, client: str, lb_ip: str) -> tuple[int, int, int, int]:
    """(request bytes, packets, reply bytes, packets) of the IPv4 packets in a capture
    of the LB node's eth0 (bytes: the IP total length, so a short snap length is
    enough). Request: from the client, or from the LB node to anyone but the client
    (its forwarded copies); reply: everything else (from a backend, to the client)."""
    cli, lb = IPv4Address(client).packed, IPv4Address(lb_ip).packed
    req_b = req_p = rep_b = rep_p = 0
    with CaptureFile(pcap) as cap:
        buf = cap.buf
        for linktype, off, caplen, _ in cap.records():
            if (linktype != LINKTYPE_ETHERNET or caplen < 34
                    or buf[off + 12:off + 14] != b"\x08\x00"):
                continue
            tot = int.from_bytes(buf[off + 16:off + 18], "big")
            src, dst = buf[off + 26:off + 30], buf[off + 30:off + 34]
            if src == cli or (src == lb and dst != cli):
                req_b, req_p = req_b + tot, req_p + 1
            else:
                rep_b, rep_p = rep_b + tot, rep_p + 1
    return req_b, req_p, rep_b, rep_p


def _download(lab: Lab, client: str, url: str) -> tuple[int, float]:
    proc = lab.run(client, ["curl", "-sS", "-4", "--noproxy", "*", "--max-time", "120",
                            "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
                   timeout=130)
    size, seconds = proc.stdout.split()
    return int(size), float(seconds)


def _latencies(lab: Lab, client: str, ip: str, port: int, n: int) -> list[float]:
    proc = lab.run(client, [sys.executable, "-c", _LATENCIES, ip, str(port), str(n)],
                   timeout=60 + n * 0.5)
    return [float(x) for x in json.loads(proc.stdout)]


def _percentile(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure_mode(topology: Topology, mode: str, workdir: Path, *,
                 transfer_bytes: int = DEFAULT_TRANSFER, requests: int = DEFAULT_REQUESTS,
                 service: str | None = None, node: str | None = None,
                 backend: Backend | None = None,
                 progress: Progress = lambda _m: None) -> ModeFigures:
    """``topology`` under ``mode``: the transfer's bytes at the LB node (``node``, by
    default one that runs no pod of the service), the latencies."""
    topo = with_mode(topology, mode)
    svc = topo.service(service or topo.services[0].name)
    port = next(p for p in svc.all_ports if p.protocol == "TCP")
    lb = node or lb_node_without_backend(topo, svc.name)
    lb_ip, client = str(topo.node(lb).ip), topo.client.name
    with (backend or get_backend("netns")).up(topo) as lab:
        progress(f"{mode}: {transfer_bytes:,} bytes from http://{lb_ip}:{port.node_port}/")
        pcap = workdir / f"compare-{mode}-{lb}.pcap"
        pcap.unlink(missing_ok=True)
        cap = Capture(lab, CapturePoint(lb, lab.hosts[lb].ifname, "lb-node"), pcap,
                      snaplen=SNAPLEN)
        cap.spawn()
        try:
            cap.wait_listening(time.monotonic() + 10)
            size, seconds = _download(lab, client,
                                      f"http://{lb_ip}:{port.node_port}/bytes/{transfer_bytes}")
            if not cap.drain(time.monotonic() + 30):
                raise CaptureError(f"tcpdump on {lb} did not catch up with the transfer "
                                   "within 30 s")
        finally:
            cap.stop()
        if cap.stats.get("dropped_by_kernel"):
            raise CaptureError(f"tcpdump on {lb} lost {cap.stats['dropped_by_kernel']} "
                               "packets (dropped by the kernel): the counts would be wrong")
        req_b, req_p, rep_b, rep_p = count_directions(pcap, str(topo.client.ip), lb_ip)
        progress(f"{mode}: {requests} short requests")
        lat = _latencies(lab, client, lb_ip, port.node_port, requests)
        ran = lab.datapath_record()
    return ModeFigures(mode=mode, transfer_bytes=size, transfer_s=seconds,
                       request_bytes=req_b, request_packets=req_p, reply_bytes=rep_b,
                       reply_packets=rep_p, latency_p50_ms=_percentile(lat, 50) * 1000,
                       latency_p99_ms=_percentile(lat, 99) * 1000, requests=len(lat),
                       datapath=" ".join(v for v in (ran.get("name", ""),
                                                     ran.get("version", "")) if v))


def compare_modes(topology: Topology, modes: Sequence[str], workdir: Path, *,
                  transfer_bytes: int = DEFAULT_TRANSFER, requests: int = DEFAULT_REQUESTS,
                  service: str | None = None, node: str | None = None,
                  progress: Progress = lambda _m: None,
                  backend: Backend | None = None) -> list[ModeFigures]:
    """:func:`measure_mode` for each mode, one lab after the other, on ``backend``
    (the scenario's own: the same datapath; default netns)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return [measure_mode(topology, m, workdir, transfer_bytes=transfer_bytes,
                         requests=requests, service=service, node=node, progress=progress,
                         backend=backend)
            for m in modes]


def plot_modes(figures: Sequence[ModeFigures], path: Path) -> Path:
    """Bytes through the LB node per direction, and latency p50/p99, per mode (SVG)."""
    import matplotlib  # noqa: PLC0415 (half a second to import: only when drawing)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    modes = [f.mode for f in figures]
    x = list(range(len(modes)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    mib = 1024 * 1024
    for offset, values, label in ((-0.2, [f.request_bytes for f in figures],
                                   "client -> backend"),
                                  (0.2, [f.reply_bytes for f in figures], "backend -> client")):
        bars = left.bar([i + offset for i in x], [v / mib for v in values], 0.4, label=label)
        left.bar_label(bars, labels=[f"{v / mib:.2f}" for v in values], fontsize=8)
    left.set_xticks(x, modes)
    left.set_ylabel("MiB through the LB node")
    left.set_title(f"{figures[0].transfer_bytes / mib:.0f} MiB HTTP response")
    left.legend(frameon=False)
    for offset, ms, label in ((-0.2, [f.latency_p50_ms for f in figures], "p50"),
                              (0.2, [f.latency_p99_ms for f in figures], "p99")):
        bars = right.bar([i + offset for i in x], ms, 0.4, label=label)
        right.bar_label(bars, fmt="%.2f", fontsize=8)
    right.set_xticks(x, modes)
    right.set_ylabel("ms per request (new connection)")
    right.set_title(f"{figures[0].requests} short requests")
    right.legend(frameon=False)
    fig.suptitle("dsrlab: what each load-balancer mode costs the node the client addressed")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with AtomicFile(path) as out:
            fig.savefig(out.file, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    return path
