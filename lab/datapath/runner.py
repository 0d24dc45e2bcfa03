"""Feed a pcap, packet by packet, through the lab's tc programs (BPF_PROG_TEST_RUN).

The library behind ``dsrlab datapath run``: no topology, no traffic on any
wire; each input frame goes through the real program with
BPF_PROG_TEST_RUN and the frame the program leaves, its verdict and its drop
reason or redirect target come back. Maps (services, backends, CT, the
backend's learned entries, counters) persist across the packets of one run.

Two roles (:data:`PROGRAM_KINDS`):

``lb``
    the node that receives the NodePort request: every frame goes through
    ``dsr_from_netdev`` (eth0 ingress), with the service and its backends
    installed.
``backend``
    a backend's node: both programs share one set of maps; a frame whose
    IPv4 source is one of the backend addresses is a reply leaving the pod
    and goes through ``dsr_to_netdev`` (eth0 egress, source rewritten to the
    service learned from the option); every other frame arrives from the
    network and goes through ``dsr_from_netdev`` (which learns the service
    from the DSR option). The service is installed here too, as Cilium
    installs every service on every node.

Where it runs: a scratch namespace ``dsrlab-<id>-dprun`` that exists for the
run only (``dsrlab clean`` finds it by its tag if the process is killed).
It holds one veth ``eth0`` (peer ``peer0``), up, MAC ``02:42:<service ip>``,
with the service address as a /32, IPv4 forwarding on, and for every backend
a /32 route on eth0 plus a permanent neighbour entry (MAC
``02:42:<backend ip>``). So the LB's ``bpf_fib_lookup`` succeeds, the
program redirects to ``eth0`` with those MACs, and the test runs never see
the machine's own routes.

IPv6: a service written ``[addr]:port`` (and backends of its family) goes into
the IPv6 maps; eth0 then holds the service address as a /128 (no duplicate
address detection), IPv6 forwarding is on, and every backend has a /128
route and a permanent neighbour with MAC ``02:42:`` + the address's last four
bytes. IPv6 frames go through the same programs; in the backend role a
frame whose IPv6 source is a backend is a reply.

MTU: eth0's MTU and the datapath's (``dsr_config.mtu``) are ``mtu``, 1500
by default: a packet the DSR option would grow beyond it is dropped with
reason ``frag_needed``. ``mtu=0`` turns the datapath's check off (eth0
stays at 1500, so the FIB lookup then leaves a too-big packet to the
stack: verdict ``ok``).

Selection: the service's backends are chosen at random, as configured;
``seed`` switches the datapath to a seeded hash of the flow tuple
(:mod:`lab.datapath.selection`), so a run is reproducible.

Perf: with ``repeat`` > 1 every frame is also run ``repeat`` times by the
kernel (one BPF_PROG_TEST_RUN) on a second, identically configured object,
and the kernel's ns per run is reported. The kernel re-runs the program on
the frame the previous repetition left; ``repeat_same_frame`` says whether
the program leaves the frame unchanged (then every repetition did the same
work), else the figure mixes the first repetition's path with what the
program does to its own output. The results, the output and the maps of the
run itself come from a single ordinary run of each frame.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import statistics
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from lab.datapath.errors import DatapathError, TestRunRefused
from lab.datapath.loader import MAX_MTU, MIN_MTU, DatapathObject
from lab.datapath.maps import BackendEntry
from lab.datapath.tc import current_netns_inode
from lab.datapath.testrun import ETH_HLEN, MAX_REPEAT, TestRunResult
from lab.plumbing import nsutil
from lab.plumbing.names import docker_mac, netns_name, new_run_id
from lab.wire.dsropt import OptionOrder
from lab.wire.endpoint import Endpoint
from lab.wire.pcapio import PcapWriter, read_frames

ProgramKind = Literal["lb", "backend"]
PROGRAM_KINDS: tuple[ProgramKind, ...] = ("lb", "backend")
INGRESS = "dsr_from_netdev"
EGRESS = "dsr_to_netdev"
NETNS_HOST = "dprun"
NEIGH_PERMANENT = 0x80
RT_SCOPE_LINK = 253
IFA_F_NODAD = 0x02
AF_INET, AF_INET6 = 2, 10

DEFAULT_MTU = 1500
IPV6_MIN_MTU = 1280  # a link below it carries no IPv6 (RFC 8200)
REJECTED = "rejected"  # BPF_PROG_TEST_RUN refused the frame: the program never ran
NOT_EMITTED = frozenset({"drop", "stolen", "queued", "trap", REJECTED})


@dataclass(frozen=True)
class RunConfig:
    """What ``dsrlab datapath run`` sets up: role, service, backends, seed, repeat, MTU,
    fragment tracking."""

    program: ProgramKind
    service: Endpoint
    backends: tuple[Endpoint, ...]
    seed: int | None = None
    repeat: int = 1
    option_order: OptionOrder = "host"
    mtu: int = DEFAULT_MTU
    fragment_tracking: bool = True  # Cilium's default: later fragments follow their first

    def __post_init__(self) -> None:
        if self.program not in PROGRAM_KINDS:
            raise ValueError(f"program must be one of {', '.join(PROGRAM_KINDS)}")
        if not self.backends:
            raise ValueError("at least one backend is needed")
        if len(self.backends) > 0xFFFF:
            raise ValueError("at most 65535 backends")
        if not 1 <= self.repeat <= MAX_REPEAT:
            raise ValueError(f"repeat must be in 1..{MAX_REPEAT}")
        if self.seed is not None and not 0 <= self.seed <= 0xFFFFFFFF:
            raise ValueError("seed must be in 0..4294967295")
        if self.mtu != 0 and not MIN_MTU <= self.mtu <= MAX_MTU:
            raise ValueError(f"mtu must be 0 (no check) or in {MIN_MTU}..{MAX_MTU}")
        family = ip_family(self.service.ip)
        if family == 6 and 0 < self.mtu < IPV6_MIN_MTU:
            raise ValueError(f"mtu must be 0 (no check) or at least {IPV6_MIN_MTU} for an "
                             "IPv6 service")
        for b in self.backends:
            if ip_family(b.ip) != family:
                raise ValueError(f"backend {b} is IPv{ip_family(b.ip)}, the service "
                                 f"{self.service} IPv{family}: both must be one family")


@dataclass(frozen=True)
class PacketResult:
    """What the datapath did with one frame.

    ``verdict`` is tc's action name with ``shot`` reported as ``drop``
    (``ok``, ``redirect``, ``drop``, ``pipe``, …), or ``rejected`` when
    BPF_PROG_TEST_RUN refused the frame (shorter than Ethernet, an IPv4
    header the kernel cannot pull, larger than a test run takes): the
    program never saw it. ``length`` is the frame's length after the program
    (for ``rejected``: the input's). ``redirect`` is the interface the
    program redirected to, ``reason`` the datapath's drop reason or why the
    kernel refused the frame. ``data`` is the frame after the program
    (``None`` when rejected), ``data_in`` the frame as fed. ``index`` counts from
    0; :attr:`frame` is the input file's frame number (Wireshark's, from 1).
    """

    index: int
    program: str
    verdict: str
    length: int
    redirect: str | None = None
    redirect_ifindex: int | None = None
    reason: str | None = None
    data: bytes | None = None
    repeat: int = 1
    ns_per_pkt: int | None = None
    repeat_same_frame: bool | None = None
    data_in: bytes | None = None

    @property
    def frame(self) -> int:
        """The packet's frame number in the input file, as Wireshark numbers it."""
        return self.index + 1

    @property
    def emitted(self) -> bool:
        """The frame leaves the program (it goes into the output pcap)."""
        return self.verdict not in NOT_EMITTED

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "index": self.index,
            "frame": self.frame,
            "program": self.program,
            "verdict": self.verdict,
            "length": self.length,
            "redirect": self.redirect,
            "redirect_ifindex": self.redirect_ifindex,
            "reason": self.reason,
        }
        if self.repeat > 1:
            out["repeat"] = self.repeat
            out["ns_per_pkt"] = self.ns_per_pkt
            out["repeat_same_frame"] = self.repeat_same_frame
        return out


@dataclass
class RunSummary:
    """Totals of one run."""

    packets: int = 0
    emitted: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    ns_per_pkt: list[int] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def add(self, res: PacketResult) -> None:
        self.packets += 1
        self.emitted += res.emitted
        self.verdicts[res.verdict] += 1
        if res.reason:
            self.reasons[res.reason] += 1
        if res.ns_per_pkt is not None:
            self.ns_per_pkt.append(res.ns_per_pkt)

    @property
    def median_ns_per_pkt(self) -> float | None:
        return statistics.median(self.ns_per_pkt) if self.ns_per_pkt else None

    def to_json(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "emitted": self.emitted,
            "verdicts": dict(self.verdicts),
            "reasons": dict(self.reasons),
            "median_ns_per_pkt": self.median_ns_per_pkt,
            "counters": {k: v for k, v in self.counters.items() if v},
        }


def json_verdict(tc_verdict: str) -> str:
    return "drop" if tc_verdict == "shot" else tc_verdict


def ipv4_source(frame: bytes) -> str | None:
    """The IPv4 source address of an untagged Ethernet/IPv4 frame, else None."""
    if len(frame) < ETH_HLEN + 20 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    return str(ipaddress.IPv4Address(frame[26:30]))


def ip_source(frame: bytes) -> str | None:
    """The source address of an untagged Ethernet/IPv4 or IPv6 frame, else None."""
    if len(frame) >= ETH_HLEN + 40 and frame[12:14] == b"\x86\xdd" and frame[14] >> 4 == 6:
        return str(ipaddress.IPv6Address(frame[22:38]))
    return ipv4_source(frame)


def ip_family(ip: str) -> int:
    """4 or 6."""
    return ipaddress.ip_address(ip).version


def node_mac(ip: str) -> str:
    """The MAC the scratch namespace gives an address: Docker's ``02:42:<ipv4>``, for
    IPv6 ``02:42:`` and the address's last four bytes."""
    if ip_family(ip) == 4:
        return docker_mac(ip)
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv6Address(ip).packed[-4:])


def setup_namespace(name: str, service: Endpoint, backends: Sequence[Endpoint],
                    mtu: int = DEFAULT_MTU) -> int:
    """Shape the scratch namespace ``name`` (see the module doc); eth0's ifindex.

    ``mtu`` is the veth pair's MTU (0: the default, 1500)."""
    mtu = mtu or DEFAULT_MTU
    v6 = ip_family(service.ip) == 6
    nsutil.write_sysctl(name, "net.ipv4.ip_forward", 1)
    if v6:
        nsutil.write_sysctl(name, "net.ipv6.conf.all.forwarding", 1)
    host_len = 128 if v6 else 32
    with nsutil.open_iproute(name) as ipr:
        ipr.link("add", ifname="eth0", kind="veth", mtu=mtu, peer={"ifname": "peer0", "mtu": mtu})
        idx = int(ipr.link_lookup(ifname="eth0")[0])
        ipr.link("set", index=idx, address=node_mac(service.ip), state="up")
        ipr.link("set", index=ipr.link_lookup(ifname="peer0")[0], state="up")
        addr_flags = {"flags": IFA_F_NODAD} if v6 else {}
        ipr.addr("add", index=idx, address=service.ip, prefixlen=host_len, **addr_flags)
        for ip in dict.fromkeys(b.ip for b in backends):
            if ip == service.ip:
                continue
            ipr.route("add", dst=ip, dst_len=host_len, oif=idx, scope=RT_SCOPE_LINK,
                      family=AF_INET6 if v6 else AF_INET)
            ipr.neigh("add", dst=ip, lladdr=node_mac(ip), ifindex=idx, state=NEIGH_PERMANENT,
                      family=AF_INET6 if v6 else AF_INET)
    return idx


def interface_names(name: str) -> dict[int, str]:
    with nsutil.open_iproute(name) as ipr:
        return {int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}


class DatapathRunner:
    """A scratch namespace and a configured datapath object; :meth:`run` a frame.

    Use as a context manager: the namespace and the objects go away on exit.
    """

    def __init__(self, config: RunConfig, obj_path: Path | None = None) -> None:
        self.config = config
        self._obj_path = obj_path
        self._stack = contextlib.ExitStack()
        self.netns = netns_name(new_run_id(), NETNS_HOST)
        self.ifindex = 0
        self.ifnames: dict[int, str] = {}
        self._dp: DatapathObject | None = None
        self._perf: DatapathObject | None = None
        self._backend_ips = frozenset(b.ip for b in config.backends)
        self._next_index = 0

    # -- lifetime -----------------------------------------------------------

    def __enter__(self) -> DatapathRunner:
        try:
            self._stack.enter_context(nsutil.scratch(self.netns))
            self.ifindex = setup_namespace(self.netns, self.config.service, self.config.backends,
                                           self.config.mtu)
            self.ifnames = interface_names(self.netns)
            self._dp = self._stack.enter_context(self._configured())
            if self.config.repeat > 1:
                self._perf = self._stack.enter_context(self._configured())
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _configured(self) -> DatapathObject:
        cfg = self.config
        dp = DatapathObject.load(self._obj_path)
        try:
            dp.set_option_order(cfg.option_order)
            dp.set_selection_seed(cfg.seed)
            dp.set_mtu(cfg.mtu)
            dp.set_fragment_tracking(cfg.fragment_tracking)
            backends = [BackendEntry(b.ip, b.port) for b in cfg.backends]
            for proto in ("tcp", "udp"):
                dp.add_service(cfg.service.ip, cfg.service.port, proto, dsr=True,
                               backends=backends)
        except BaseException:
            dp.close()
            raise
        return dp

    def counters(self) -> dict[str, int]:
        """The datapath's counters (drops by reason among them)."""
        return self.datapath.counters()

    @property
    def datapath(self) -> DatapathObject:
        if self._dp is None:
            raise DatapathError("the runner is not set up (use it as a context manager)")
        return self._dp

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Enter the scratch namespace once for many :meth:`run` calls."""
        with nsutil.in_netns(self.netns):
            yield

    # -- running ------------------------------------------------------------

    def program_for(self, frame: bytes) -> str:
        """Which tc program a frame goes through in this role."""
        if self.config.program == "backend" and ip_source(frame) in self._backend_ips:
            return EGRESS
        return INGRESS

    def _test_run(self, dp: DatapathObject, program: str, frame: bytes,
                  repeat: int = 1) -> TestRunResult:
        return dp.test_run(program, frame, repeat=repeat, ifindex=self.ifindex)

    def run(self, frame: bytes, index: int | None = None) -> PacketResult:
        """Run one frame (call inside :meth:`inside`, or it enters the namespace itself)."""
        if index is None:
            index = self._next_index
        self._next_index = index + 1
        if nsutil.netns_inode(self.netns) != current_netns_inode():
            with self.inside():
                return self._run(frame, index)
        return self._run(frame, index)

    def _run(self, frame: bytes, index: int) -> PacketResult:
        return replace(self._result(frame, index), data_in=frame)

    def _result(self, frame: bytes, index: int) -> PacketResult:
        program = self.program_for(frame)
        if len(frame) < ETH_HLEN:
            return PacketResult(index, program, REJECTED, len(frame), reason="frame_too_short")
        try:
            res = self._test_run(self.datapath, program, frame)
        except TestRunRefused:
            return PacketResult(index, program, REJECTED, len(frame), reason="kernel_refused")
        redirect = None
        if res.redirect_ifindex is not None:
            redirect = self.ifnames.get(res.redirect_ifindex, f"if{res.redirect_ifindex}")
        ns_per_pkt = None
        same = None
        repeat = self.config.repeat
        if self._perf is not None:
            timed = self._test_run(self._perf, program, frame, repeat=repeat)
            ns_per_pkt = timed.duration_ns
            same = res.data == frame
        return PacketResult(
            index=index,
            program=program,
            verdict=json_verdict(res.verdict),
            length=len(res.data),
            redirect=redirect,
            redirect_ifindex=res.redirect_ifindex,
            reason=res.drop_reason,
            data=res.data,
            repeat=repeat,
            ns_per_pkt=ns_per_pkt,
            repeat_same_frame=same,
        )


class FrameRunner(Protocol):
    """What :func:`run_pcap` drives: :class:`DatapathRunner` (the lab's datapath) or
    :class:`lab.datapath.cilium.runner.CiliumRunner` (Cilium's)."""

    def __enter__(self) -> FrameRunner: ...

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def inside(self) -> contextlib.AbstractContextManager[None]: ...

    def run(self, frame: bytes, index: int | None = None) -> PacketResult: ...

    def counters(self) -> dict[str, int]: ...


def run_pcap(
    config: RunConfig,
    input_path: str | Path,
    output_path: str | Path,
    *,
    on_packet: Callable[[PacketResult], None] | None = None,
    obj_path: Path | None = None,
    runner: Callable[[RunConfig], FrameRunner] | None = None,
) -> RunSummary:
    """Run every frame of ``input_path`` in order; write the emitted ones to ``output_path``.

    ``on_packet`` sees each :class:`PacketResult` as it is made (the CLI
    prints JSON lines from it). Raises :class:`lab.wire.pcapio.PcapError`
    for an unreadable input or an unusable output (naming the file) before
    anything is set up: an output that is the input (through any link), a
    directory or a device, in a missing or read-only folder. The input is
    read whole before the output is touched; the output is written under a
    temporary name and replaces ``output_path`` only when the run succeeded
    (a failed run leaves no output and the old one as it was). ``runner`` makes
    the runner (default: the lab's datapath, :class:`DatapathRunner`).
    """
    frames = read_frames(input_path)
    first = next(frames, None)  # errors about the input surface before the namespace exists
    summary = RunSummary()
    with PcapWriter(output_path, inputs=[input_path]) as out, \
            (runner or (lambda c: DatapathRunner(c, obj_path)))(config) as frames_runner:
        with frames_runner.inside():
            stream = itertools.chain([first] if first else [], frames)
            for index, frame in enumerate(stream):
                res = frames_runner.run(frame.data, index)
                summary.add(res)
                if res.emitted and res.data is not None:
                    out.write(res.data, frame.ts_ns)
                if on_packet is not None:
                    on_packet(res)
        summary.counters = frames_runner.counters()
    return summary
