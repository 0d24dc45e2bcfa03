"""``dsrlab datapath``: the lab's tc programs on packets from a pcap (BPF_PROG_TEST_RUN).

A thin face over :mod:`lab.datapath.runner`; :mod:`lab.cli` mounts it as the
``datapath`` sub-command. The runner (pyroute2, libbpf) loads when ``datapath
run`` runs, not when ``dsrlab`` starts.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli.output import err, fail, need_root, one_line_errors, table

if TYPE_CHECKING:  # the runner (pyroute2, libbpf) loads when `datapath run` runs
    from lab.datapath.cilium.source import CiliumSource
    from lab.datapath.diff import PacketDiff
    from lab.datapath.runner import PacketResult, RunConfig, RunSummary
    from lab.datapath.verifier import VerifierReport
    from lab.wire.endpoint import Endpoint


app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Run the lab's eBPF programs on packets, without a topology.")


class Program(StrEnum):
    lb = "lb"
    backend = "backend"


class Datapath(StrEnum):
    lab = "lab"
    cilium = "cilium"


# --datapath of `datapath run` and `datapath verify`
DatapathOption = Annotated[Datapath, typer.Option(
    help="lab: the lab's own bpf/dsr.c; cilium: Cilium's own programs, built from "
    "--cilium-src")]


def _repeat(value: int) -> int:
    """``--repeat``: 1 up to what a test run asks the kernel for (checked when given)."""
    from lab.datapath.testrun import MAX_REPEAT

    if not 1 <= value <= MAX_REPEAT:
        raise typer.BadParameter(f"{value} is not in the range 1<=x<={MAX_REPEAT}.")
    return value


def _endpoint(text: str, option: str) -> Endpoint:
    from lab.wire.endpoint import Endpoint

    try:
        return Endpoint.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


RUN_HELP = """Feed every packet of a pcap, in order, through one of the lab's tc
programs.

Each packet goes through the real program with BPF_PROG_TEST_RUN (nothing
is sent anywhere); maps (services, backends, CT, learned DSR entries)
persist across the packets of one invocation. The output pcap holds, in
order, the frame the program left for every packet it did not drop. It is
written under a temporary name in its folder and renamed over OUT.pcap when
the run has finished (a failed run leaves OUT.pcap as it was); it cannot be
the input (also through a link), a directory or a device.

--program lb: the node receiving the NodePort request (dsr_from_netdev at
eth0 ingress), with --service and its --backend list installed (TCP and
UDP, DSR). --program backend: a backend's node, both programs on shared
maps: a packet whose IP source is a --backend address is a reply leaving
that pod (dsr_to_netdev, source rewritten to the service learned from the
option); every other packet arrives from the network (dsr_from_netdev).

IPv6: write the endpoints [ADDR]:PORT (e.g. --service [fd00::10]:80
--backend [fd00:1::5]:8080); the service and its backends are one family.
A DSR backend's packets then carry the 24-byte Destination Options
extension (option 0x1B: service address and port) instead of the IPv4
option; packets to the service with extension headers of their own are
dropped (reason ipv6_exthdr).

Runs in a scratch namespace (dsrlab-<id>-dprun, removed afterwards)
holding eth0 with the service address and a /32 (/128) route plus a
permanent neighbour (MAC 02:42:<ip>; IPv6: its last four bytes) per
backend, so a redirect names eth0.

Backend selection is random, as configured; --seed N makes the datapath
pick by a hash of the flow tuple seeded with N instead (same seed, same
choices).

--mtu N (default 1500) is eth0's MTU and the one the datapath checks: a
packet the DSR option (IPv6: extension) would grow beyond it is dropped
(reason frag_needed); --mtu 0 turns that check off.

IPv4 fragments are tracked, as Cilium's default: a later fragment is
translated with its datagram's first (run in order, as captured);
--no-fragment-tracking translates a first fragment only and lets the later
ones pass untranslated.

--json prints one JSON object per packet: index, program, verdict (ok,
redirect, drop, ...; rejected = the kernel refused the frame, the program
never ran), length, redirect (interface), reason (drop reason). --repeat N
also runs each packet N times with the kernel's repeat and reports
ns_per_pkt.
"""


@app.command("run", help=RUN_HELP)
def run(
    *,
    program: Annotated[Program, typer.Option(help="lb: the NodePort node; backend: a "
                                             "backend's node")],
    service: Annotated[str, typer.Option(metavar="VIP:PORT",
                                         help="the NodePort service, e.g. 172.18.0.2:32000 "
                                         "or [fd00::10]:80")],
    backend: Annotated[list[str], typer.Option(metavar="IP:PORT",
                                               help="a backend (repeat for several), "
                                               "IPv6 as [ADDR]:PORT")],
    input_path: Annotated[Path, typer.Option("--input", metavar="IN.pcap", readable=False,
                                             help="packets to feed (pcap or pcapng, Ethernet)")],
    output_path: Annotated[Path, typer.Option("--output", metavar="OUT.pcap", readable=False,
                                              help="where the packets that come out go")],
    repeat: Annotated[int, typer.Option(callback=_repeat,
                                        help="perf mode: the kernel runs each packet N "
                                        "times; reports ns per packet")] = 1,
    seed: Annotated[int | None, typer.Option(min=0, max=0xFFFFFFFF,
                                             help="reproducible backend selection: a flow "
                                             "hash seeded with N instead of random")] = None,
    mtu: Annotated[int, typer.Option(min=0, max=0xFFFF,
                                     help="eth0's MTU: a packet the DSR option would grow "
                                     "beyond it is dropped (0: no check)")] = 1500,
    fragment_tracking: Annotated[bool, typer.Option(
        help="translate a datagram's later fragments with its first")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per packet on "
                                          "stdout")] = False,
    datapath: DatapathOption = Datapath.lab,
    cilium_src: Annotated[Path | None, typer.Option(
        metavar="PATH", help="with --datapath cilium: a Cilium checkout, its bpf/, or a "
        "bpf/ tarball (default: $DSRLAB_CILIUM_SRC)")] = None,
) -> None:
    from lab.datapath.errors import DatapathError
    from lab.datapath.runner import FrameRunner, run_pcap
    from lab.wire.pcapread import PcapError

    config = _config(program, service, backend, seed=seed, repeat=repeat, mtu=mtu,
                     fragment_tracking=fragment_tracking)
    _check_paths(input_path, output_path)
    runner = None
    if datapath is Datapath.cilium:
        from lab.datapath.cilium.runner import CiliumRunner
        from lab.datapath.cilium.source import choose

        with one_line_errors(DatapathError):
            source = choose(cilium_src)

        def runner(c: RunConfig) -> FrameRunner:
            return CiliumRunner(c, source)
    elif cilium_src is not None:
        fail("--cilium-src is for --datapath cilium", 2)
    need_root("dsrlab datapath run needs root (BPF, network namespaces)")
    with one_line_errors(PcapError, DatapathError, OSError):
        summary = run_pcap(config, input_path, output_path,
                           on_packet=_print_json if as_json else _print_packet, runner=runner)
    err.print(_summary(summary, output_path, repeat), markup=False)


def _check_paths(input_path: Path, output_path: Path) -> None:
    """A usage error (exit 2) for an --input that is not a regular file, or an --output
    that is the input, a directory or a device, in a missing or read-only folder."""
    from lab.wire.paths import PathError, check_input, check_output

    try:
        check_input(input_path)
    except PathError as exc:
        fail(f"--input {exc}", 2)
    try:
        check_output(output_path, inputs=[input_path])
    except PathError as exc:
        fail(f"--output {exc}", 2)


def _config(program: Program, service: str, backends: list[str], *, seed: int | None,
            repeat: int, mtu: int, fragment_tracking: bool = True) -> RunConfig:
    """The run's configuration from the options (a bad value: a usage error, exit 2)."""
    from lab.datapath.loader import MIN_MTU
    from lab.datapath.runner import IPV6_MIN_MTU, RunConfig

    svc = _endpoint(service, "--service")
    eps = tuple(_endpoint(b, "--backend") for b in backends)
    if 0 < mtu < MIN_MTU:
        raise typer.BadParameter(f"{mtu} is below IPv4's minimum MTU {MIN_MTU} (0 turns the "
                                 "check off)", param_hint="'--mtu'")
    if svc.is_ipv6 and 0 < mtu < IPV6_MIN_MTU:
        raise typer.BadParameter(f"{mtu} is below IPv6's minimum MTU {IPV6_MIN_MTU} (0 turns "
                                 "the check off)", param_hint="'--mtu'")
    try:
        return RunConfig(program="lb" if program is Program.lb else "backend", service=svc,
                         backends=eps, seed=seed, repeat=repeat, mtu=mtu,
                         fragment_tracking=fragment_tracking)
    except ValueError as exc:  # a backend of the other family
        raise typer.BadParameter(str(exc), param_hint="'--backend'") from None


def _print_json(res: PacketResult) -> None:
    sys.stdout.write(json.dumps(res.to_json()) + "\n")
    sys.stdout.flush()


def _print_packet(res: PacketResult) -> None:
    """Three lines a packet: its frame number in the input file (Wireshark's), the
    program and its verdict; what went in; what came out (or that nothing did)."""
    from lab.wire.ipv4 import frame_summary as summary4
    from lab.wire.ipv6 import frame_summary6

    def frame_summary(frame: bytes) -> str:
        return frame_summary6(frame) if frame[12:14] == b"\x86\xdd" else summary4(frame)

    extra = f" -> {res.redirect}" if res.redirect else ""
    extra += f" ({res.reason})" if res.reason else ""
    if res.ns_per_pkt is not None:
        extra += f"  {res.ns_per_pkt} ns/pkt"
        extra += "" if res.repeat_same_frame else " (frame changes across repeats)"
    out = frame_summary(res.data) if res.emitted and res.data is not None else \
        f"nothing ({res.verdict})"
    sys.stdout.write(f"frame {res.frame} {res.program}: {res.verdict}, {res.length} bytes"
                     f"{extra}\n"
                     f"  in:  {frame_summary(res.data_in) if res.data_in else '?'}\n"
                     f"  out: {out}\n")


def _summary(summary: RunSummary, output_path: Path, repeat: int) -> str:
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(summary.verdicts.items())) or "none"
    line = (f"{summary.packets} packets ({verdicts}); {summary.emitted} written to "
            f"{output_path}")
    if summary.median_ns_per_pkt is not None:
        line += f"; median {summary.median_ns_per_pkt:g} ns/pkt over {repeat} repeats"
    return line


VERIFY_HELP = """Load the datapath through this kernel's verifier and say what it made of it.

Per program: the instructions the verifier processed (its complexity
figure; the limit is 1,000,000; kernels before 5.16 do not report it) and
the instructions of the loaded program. A rejection prints the program,
the count and the tail of the verifier's log, and exits 1; a kernel older
than the minimum bpf/dsr.h states is refused with the reason, exit 1.

--datapath cilium: Cilium's own objects as the seed topology's nodes load
them (every node's bpf_host, each pod's bpf_lxc), built for this kernel's
probed features, a table per Cilium source of --cilium-src (or
$DSRLAB_CILIUM_SRC; a folder of bpf/ tarballs gives one per version),
programs named object/program (the largest count over the nodes).
"""


@app.command("verify", help=VERIFY_HELP)
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="the report as one JSON object "
                                          "on stdout (--datapath cilium: an array, one "
                                          "per version)")] = False,
    datapath: DatapathOption = Datapath.lab,
    cilium_src: Annotated[Path | None, typer.Option(
        metavar="PATH", help="with --datapath cilium: a Cilium checkout, its bpf/, a bpf/ "
        "tarball or a folder of them (default: $DSRLAB_CILIUM_SRC)")] = None,
) -> None:
    from lab.datapath.errors import DatapathError
    from lab.datapath.verifier import reports_json
    from lab.datapath.verifier import verify as verify_datapath

    need_root("dsrlab datapath verify needs root (BPF)")
    if datapath is Datapath.lab:
        if cilium_src is not None:
            fail("--cilium-src is for --datapath cilium", 2)
        with one_line_errors(DatapathError):
            report = verify_datapath()
        if as_json:
            sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        else:
            _show_report(report)
        if report.outcome != "pass":
            fail(report.summary())
        return
    from lab.datapath.cilium.source import ENV_VAR
    from lab.datapath.cilium.verify import SEED_TOPOLOGY, verify_sources
    from lab.model.topology import load_topology

    where = str(cilium_src) if cilium_src is not None else os.environ.get(ENV_VAR)
    if not where:
        fail(f"--datapath cilium needs a Cilium source: --cilium-src PATH or {ENV_VAR}", 2)
    with one_line_errors(DatapathError):
        reports = verify_sources(where, load_topology(SEED_TOPOLOGY))
    if as_json:
        sys.stdout.write(reports_json(reports))
    else:
        for report in reports:
            _show_report(report)
    bad = [r for r in reports if r.outcome != "pass"]
    if bad:
        fail("; ".join(f"{r.datapath}: {r.summary()}" for r in bad))


def _show_report(report: VerifierReport) -> None:
    from lab.datapath.verifier import COMPLEXITY_LIMIT

    if report.outcome == "pass":
        what = "the datapath" if report.datapath == "lab" else report.datapath
        table(("program", "insns processed", "of the limit", "insns loaded"), [
            [p.program, "-" if p.verified_insns is None else str(p.verified_insns),
             "-" if p.verified_insns is None else f"{p.verified_insns / COMPLEXITY_LIMIT:.2%}",
             str(p.xlated_insns)] for p in report.programs],
            title=f"{what} under kernel {report.kernel}'s verifier")
    else:
        for line in report.log_tail:
            err.print(line, markup=False, highlight=False)


DIFF_HELP = """Feed every frame of a pcap through the lab's datapath and through
Cilium's own programs, and compare what comes out, frame by frame.

Both run their entry programs with BPF_PROG_TEST_RUN (nothing is sent
anywhere), configured from the same options as `datapath run`: --program
lb (the NodePort node: the lab's dsr_from_netdev, Cilium's cil_from_netdev)
or backend (a backend's node: a frame from a --backend address is that
pod's reply, the others come from the network), --service, --backend,
--mtu, --fragment-tracking. Maps persist across the frames of one pass.
IPv6: a service written [addr]:port and backends of its family (IPv6
frames compare as IPv4 ones do, e.g. "[IPv6].hlim lab 63 cilium 64").

Backends: Cilium picks among several at random, so with --program lb give
exactly one --backend (several are refused): both datapaths then send to
the same one and their outputs are comparable. --program backend takes
several (each is a pod on the node; nothing is chosen there).

Per frame, one kind: equal (same bytes, same verdict; "unchanged" when
both left it as it came), different (both let it through, differently),
dropped by the lab only, dropped by Cilium only, dropped by both (a frame
the kernel refuses to test-run counts as dropped). Each different frame is
printed with the fields that differ, decoded with scapy, e.g. "[IP].ttl lab
63 cilium 64"; a checksum right on both sides that changed with another
field is marked (follows) and never counts alone.

--cilium-src PATH (repeatable): a Cilium checkout, its bpf/, a bpf/
tarball, or a folder of cilium-<tag>-bpf.tar.gz (each is compared);
default $DSRLAB_CILIUM_SRC. Accepting differences: --ignore-field NAME
(repeatable: a field as printed, [IP].ttl, its own name, ttl, or a layer,
[DSR]) and --accept-known (the documented differences of that Cilium
version and role; --list-known prints them) turn those differences into
"accepted": counted and named in the summary, not a failure.

--json prints one JSON object per frame and Cilium source (frame, kind,
both verdicts and reasons, the differing fields) and one summary object
per source ("summary": true); --output-dir DIR writes lab.pcap and
cilium-<version>.pcap there (each datapath's output frames, in order).

Exit status: 0 when the datapaths agree on every frame (equal, unchanged,
accepted or dropped by both), 1 when any frame differs or is dropped by one
only, 2 on bad input or when a datapath cannot run (one error line).
"""


@app.command("diff", help=DIFF_HELP)
def diff(
    pcap: Annotated[Path, typer.Argument(metavar="PCAP", help="the frames to feed (pcap or "
                                         "pcapng, Ethernet)", show_default=False)] = Path(),
    *,
    program: Annotated[Program, typer.Option(help="lb: the NodePort node; backend: a "
                                             "backend's node")] = Program.lb,
    service: Annotated[str | None, typer.Option(
        metavar="VIP:PORT", help="the NodePort service, e.g. 172.18.0.2:32000")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        metavar="IP:PORT", help="a backend (lb: exactly one; backend: repeat for several)")
    ] = None,
    mtu: Annotated[int, typer.Option(min=0, max=0xFFFF,
                                     help="eth0's MTU (0: no check)")] = 1500,
    fragment_tracking: Annotated[bool, typer.Option(
        help="translate a datagram's later fragments with its first")] = True,
    cilium_src: Annotated[list[Path] | None, typer.Option(
        metavar="PATH", help="a Cilium checkout, its bpf/, a bpf/ tarball or a folder of "
        "tarballs; repeat for several (default: $DSRLAB_CILIUM_SRC)",
        show_default=False)] = None,
    ignore_field: Annotated[list[str] | None, typer.Option(
        metavar="NAME", help="accept differences in this field ([IP].ttl, ttl, [DSR]); "
        "repeatable", show_default=False)] = None,
    accept_known: Annotated[bool, typer.Option(
        help="accept the documented differences of each Cilium version")] = False,
    list_known: Annotated[bool, typer.Option(
        help="print the documented differences and exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout")] = False,
    output_dir: Annotated[Path | None, typer.Option(
        metavar="DIR", help="write lab.pcap and cilium-<version>.pcap there",
        show_default=False)] = None,
) -> None:
    from lab.datapath.cilium.source import ENV_VAR, discover
    from lab.datapath.diff import KNOWN_DIFFERENCES, check_comparable, diff_frames
    from lab.datapath.errors import DatapathError
    from lab.wire.pcapio import read_frames
    from lab.wire.pcapread import PcapError

    if list_known:
        for k in KNOWN_DIFFERENCES:
            sys.stdout.write(k.describe() + "\n")
        return
    if pcap == Path():
        fail("give the PCAP to feed", 2)
    if service is None or not backend:
        fail("give --service VIP:PORT and --backend IP:PORT", 2)
    config = _config(program, service, backend, seed=None, repeat=1, mtu=mtu,
                     fragment_tracking=fragment_tracking)
    with one_line_errors(DatapathError, code=2):
        check_comparable(config)
    try:
        from lab.wire.paths import PathError, check_input
        check_input(pcap)
    except PathError as exc:
        fail(str(exc), 2)
    with one_line_errors(PcapError, code=2):
        frames = list(read_frames(pcap))
    if not frames:
        fail(f"{pcap}: no frames to feed", 2)
    wheres: list[Path | str] = list(cilium_src or [])
    if not wheres:
        env = os.environ.get(ENV_VAR)
        if not env:
            fail(f"no Cilium source: --cilium-src PATH or {ENV_VAR}", 2)
        wheres = [env]
    sources: list[CiliumSource] = []
    with one_line_errors(DatapathError, code=2):
        for where in wheres:
            sources += [s for s in discover(where) if s not in sources]
    if output_dir is not None:
        _check_output_dir(output_dir, pcap, [f"cilium-{s.version}.pcap" for s in sources])
    need_root("dsrlab datapath diff needs root (BPF, network namespaces)")

    def on_packet(source: CiliumSource, d: PacketDiff) -> None:
        if as_json:
            sys.stdout.write(json.dumps(d.to_json(str(source.version))) + "\n")
        elif d.kind not in ("equal", "unchanged", "dropped_by_both"):
            _print_diff(source, d)

    with one_line_errors(PcapError, DatapathError, OSError, code=2):
        summaries = diff_frames(config, frames, sources, ignore=ignore_field or (),
                                accept_known=accept_known, on_packet=on_packet,
                                output_dir=output_dir, input_path=pcap)
    for s in summaries:
        if as_json:
            sys.stdout.write(json.dumps(s.to_json()) + "\n")
        err.print(s.text(), markup=False, highlight=False, soft_wrap=True)
    sys.stdout.flush()
    if any(s.disagreements for s in summaries):
        raise typer.Exit(1)


def _check_output_dir(output_dir: Path, pcap: Path, names: list[str]) -> None:
    """--output-dir: made if missing (its parent must exist); each pcap it will hold
    must be writable and not the input (exit 2 otherwise)."""
    from lab.wire.paths import PathError, check_output

    if output_dir.exists() and not output_dir.is_dir():
        fail(f"--output-dir {output_dir}: not a folder", 2)
    try:
        output_dir.mkdir(exist_ok=True)
    except OSError as exc:
        fail(f"--output-dir {output_dir}: {exc.strerror or exc}", 2)
    for name in ["lab.pcap", *names]:
        try:
            check_output(output_dir / name, inputs=[pcap])
        except PathError as exc:
            fail(f"--output-dir {exc}", 2)


def _print_diff(source: CiliumSource, d: PacketDiff) -> None:
    from lab.wire.ipv4 import frame_summary
    from lab.wire.ipv6 import frame_summary6

    def side(r: PacketResult) -> str:
        return r.verdict + (f" ({r.reason})" if r.reason else "")

    head = f"frame {d.frame} [{source.version}]: {d.kind.replace('_', ' ')}"
    if d.kind.startswith("dropped"):
        head += f": lab {side(d.lab)}, cilium {side(d.cilium)}"
    else:
        head += f": {d.field_text()}"
    data_in = d.lab.data_in or b""
    summary = frame_summary6 if data_in[12:14] == b"\x86\xdd" and len(data_in) >= 14 \
        else frame_summary
    sys.stdout.write(f"{head}\n  in:  {summary(data_in) if data_in else '?'}\n")
