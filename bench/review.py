"""Benchmark: ``dsrlab review`` against tshark on a 1,000,000-packet pcap.

The capture is generated here, deterministically (a fixed seed), by writing
the pcap bytes directly (no scapy): Ethernet + IPv4 + TCP/UDP, mixed
ordinary traffic and Cilium-style DSR flows (~2.6% of the packets carry the
DSR option, host byte order; some flows are UDP, some answer from the
pod's address, i.e. broken DSR, some get no reply). Clients of DSR flows
also talk ordinary traffic, so the review's 4-tuple lookups are exercised.
The file lives in a temporary directory and is deleted afterwards.

Timed on the same file in the same run, each ``ROUNDS`` times (median):

* ``dsrlab review FILE --json`` as a subprocess (process start included):
  the CLI figure, the one the target is about;
* :func:`lab.check.review.review` in this process (the library figure);
* ``tshark -r FILE -Y 'ip[20:2] == 9a:08'``: a native display filter for
  "first IPv4 option is type 0x9a length 8", the baseline of the ratio;
* ``tshark -r FILE -Y 'ip.opt.type == 0x9a'``: the filter one would write
  first; Wireshark 4.0 gives unknown options no field at all, so it matches
  nothing (recorded, and timed, but not usable for the count check);
* ``tshark -X lua_script:dsr_option.lua -Y dsropt``: the shipped dissector.

Checks that dsrlab and tshark count the same option-carrying packets and
that the review finds the generated flows; prints the ratios; writes
bench/results/review.json.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.check.review import review  # noqa: E402
from lab.check.wireshark import lua_path  # noqa: E402
from lab.wire import dsropt  # noqa: E402

PACKETS = 1_000_000
SEED = 20240917
ROUNDS = 3
RESULTS = REPO / "bench" / "results" / "review.json"
TARGET_RATIO = 5.0

SERVICE = ("172.18.0.2", 32000)
UDP_SERVICE = ("172.18.0.2", 32053)

_ETH_IP = bytes.fromhex("0242ac120004" "0242ac120002" "0800")
_PCAP_HDR = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
_REC = struct.Struct("<IIII")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def _a(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


class Writer:
    """Appends Ethernet/IPv4 packets as pcap records to one bytearray."""

    def __init__(self) -> None:
        self.out = bytearray(_PCAP_HDR)
        self.n = 0
        self.option_packets = 0
        self.t = 1_700_000_000.0

    def packet(self, proto: int, src: bytes, dst: bytes, sport: int, dport: int, *,
               flags: int = ACK, payload: bytes = b"", option: bytes = b"", ttl: int = 63,
               ) -> None:
        if proto == 6:
            l4 = _TCP.pack(sport, dport, 1, 1, 5 << 4, flags, 64240, 0, 0) + payload
        else:
            l4 = _UDP.pack(sport, dport, 8 + len(payload), 0) + payload
        ihl = 5 + len(option) // 4
        ip = _IP.pack(0x40 | ihl, 0, ihl * 4 + len(l4), self.n & 0xFFFF, 0x4000, ttl, proto, 0,
                      src, dst) + option
        frame = _ETH_IP + ip + l4
        self.t += 0.00001
        sec = int(self.t)
        self.out += _REC.pack(sec, int((self.t - sec) * 1e6), len(frame), len(frame))
        self.out += frame
        self.n += 1
        if option[:2] == b"\x9a\x08":
            self.option_packets += 1


def generate(path: Path, packets: int = PACKETS, seed: int = SEED) -> dict[str, int]:
    """Write the benchmark pcap; return what it holds (the expected review)."""
    rnd = random.Random(seed)
    w = Writer()
    clients = [_a(f"10.{rnd.randrange(1, 250)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}")
               for _ in range(3000)]
    others = [_a(f"192.168.{rnd.randrange(256)}.{rnd.randrange(1, 255)}") for _ in range(3000)]
    backends = [_a(f"10.0.{i}.{rnd.randrange(2, 250)}") for i in range(40)]
    svc, svc_port = _a(SERVICE[0]), SERVICE[1]
    usvc, usvc_port = _a(UDP_SERVICE[0]), UDP_SERVICE[1]
    opt_tcp = dsropt.encode(*SERVICE)
    opt_udp = dsropt.encode(*UDP_SERVICE)
    req, resp = b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\nhello" * 4
    want = {"dsr_flows": 0, "tcp_flows": 0, "udp_flows": 0, "broken_flows": 0,
            "noreply_flows": 0}
    eph = 10000  # ordinary flows' client ports (reused, as on a busy host)
    dsr_eph = 10000  # DSR flows' client ports: unique, so every DSR flow is its own 4-tuple
    while w.n < packets:
        r = rnd.random()
        eph = eph + 1 if eph < 60999 else 10000
        if r < 0.14:
            dsr_eph += 1
            if dsr_eph > 65535:
                raise ValueError("too many DSR flows for unique client ports")
        if r < 0.12:  # a DSR TCP flow, ~9 packets, 1 with the option
            c, b = rnd.choice(clients), rnd.choice(backends)
            broken = rnd.random() < 0.02
            noreply = not broken and rnd.random() < 0.01
            rs, rp = (b, 80) if broken else (svc, svc_port)
            w.packet(6, c, b, dsr_eph, 80, flags=SYN, option=opt_tcp)
            if not noreply:
                w.packet(6, rs, c, rp, dsr_eph, flags=SYN | ACK)
            w.packet(6, c, b, dsr_eph, 80)
            w.packet(6, c, b, dsr_eph, 80, flags=PSH | ACK, payload=req)
            if not noreply:
                w.packet(6, rs, c, rp, dsr_eph)
                w.packet(6, rs, c, rp, dsr_eph, flags=PSH | ACK, payload=resp)
                w.packet(6, rs, c, rp, dsr_eph, flags=FIN | ACK)
            w.packet(6, c, b, dsr_eph, 80, flags=FIN | ACK)
            w.packet(6, c, b, dsr_eph, 80)
            want["dsr_flows"] += 1
            want["tcp_flows"] += 1
            want["broken_flows"] += broken
            want["noreply_flows"] += noreply
        elif r < 0.14:  # a DSR UDP flow: every datagram carries the option
            c, b = rnd.choice(clients), rnd.choice(backends)
            for _ in range(2):
                w.packet(17, c, b, dsr_eph, 53, payload=b"q" * 30, option=opt_udp)
                w.packet(17, usvc, c, usvc_port, dsr_eph, payload=b"a" * 60)
            want["dsr_flows"] += 1
            want["udp_flows"] += 1
        elif r < 0.54:  # ordinary TCP, some from DSR clients
            c = rnd.choice(clients) if rnd.random() < 0.3 else rnd.choice(others)
            s = rnd.choice(others)
            w.packet(6, c, s, eph, 443, flags=SYN, ttl=64)
            w.packet(6, s, c, 443, eph, flags=SYN | ACK, ttl=64)
            for _ in range(rnd.randrange(1, 8)):
                w.packet(6, c, s, eph, 443, flags=PSH | ACK, payload=req, ttl=64)
                w.packet(6, s, c, 443, eph, flags=PSH | ACK, payload=resp, ttl=64)
        else:  # ordinary UDP (DNS-like)
            c = rnd.choice(clients) if rnd.random() < 0.3 else rnd.choice(others)
            s = rnd.choice(others)
            w.packet(17, c, s, eph, 53, payload=b"q" * 30, ttl=64)
            w.packet(17, s, c, 53, eph, payload=b"a" * 60, ttl=64)
    path.write_bytes(w.out)
    want["packets"] = w.n
    want["option_packets"] = w.option_packets
    want["bytes"] = len(w.out)
    return want


def _time(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, out


def _tshark_count(argv: list[str]) -> tuple[float, int]:
    secs, out = _time(argv)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr}")
    return secs, sum(1 for line in out.stdout.splitlines() if line.strip())


def main() -> int:
    if shutil.which("tshark") is None:
        print("bench: tshark not found (apt-get install tshark)", file=sys.stderr)
        return 2
    dsrlab = str(Path(sys.executable).with_name("dsrlab"))
    with tempfile.TemporaryDirectory(prefix="dsrlab-bench-review-") as tmp:
        pcap = Path(tmp) / "mixed-1m.pcap"
        t0 = time.perf_counter()
        want = generate(pcap)
        gen_s = time.perf_counter() - t0
        tiny = Path(tmp) / "tiny.pcap"  # the CLI's fixed cost: process start and imports
        generate(tiny, packets=100)
        print(f"generated {want['packets']} packets ({want['bytes'] / 1e6:.0f} MB, "
              f"{want['option_packets']} with the DSR option, {want['dsr_flows']} DSR flows) "
              f"in {gen_s:.1f} s")
        runs: dict[str, list[float]] = {"review_cli": [], "review_cli_100_packets": [],
                                        "review_lib": [],
                                        "tshark_ip_slice": [], "tshark_ip_opt_type": [],
                                        "tshark_lua_dsropt": []}
        counts: dict[str, int] = {}
        lib = None
        cli_doc: dict[str, object] = {}
        lua = str(lua_path())
        tshark_cmds = {
            "tshark_ip_slice": ["tshark", "-r", str(pcap), "-Y", "ip[20:2] == 9a:08"],
            "tshark_ip_opt_type": ["tshark", "-r", str(pcap), "-Y", "ip.opt.type == 0x9a"],
            "tshark_lua_dsropt": ["tshark", "-X", f"lua_script:{lua}", "-r", str(pcap),
                                  "-Y", "dsropt.service == \"172.18.0.2:32000\" || "
                                  "dsropt.service == \"172.18.0.2:32053\""],
        }
        for rnd in range(ROUNDS):
            secs, out = _time([dsrlab, "review", str(pcap), "--json", "--no-progress"])
            if out.returncode not in (0, 1):
                raise RuntimeError(f"dsrlab review failed: {out.stderr}")
            runs["review_cli"].append(secs)
            cli_doc = json.loads(out.stdout)["files"][0]
            secs, out = _time([dsrlab, "review", str(tiny), "--json", "--no-progress"])
            runs["review_cli_100_packets"].append(secs)
            t0 = time.perf_counter()
            lib = review(pcap)
            runs["review_lib"].append(time.perf_counter() - t0)
            for name, argv in tshark_cmds.items():
                secs, n = _tshark_count(argv)
                runs[name].append(secs)
                counts[name] = n
            print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()))
    assert lib is not None
    med = {k: statistics.median(v) for k, v in runs.items()}
    statuses: dict[str, int] = {}
    for f in lib.flows:
        statuses[f.status] = statuses.get(f.status, 0) + 1
    found = {
        "packets": lib.packets,
        "option_packets": lib.option_packets,
        "flows": len(lib.flows),
        "statuses": statuses,
        "not_rewritten_findings": sum(1 for x in lib.findings if x.kind == "not-rewritten"),
        "no_reply_findings": sum(1 for x in lib.findings if x.kind == "no-reply"),
        "cli_flows": len(cli_doc.get("flows", [])),  # type: ignore[arg-type]
        "cli_option_packets": cli_doc.get("option_packets"),
    }
    same_option_count = (lib.option_packets == counts["tshark_ip_slice"]
                         == want["option_packets"] == cli_doc.get("option_packets"))
    flows_ok = (len(lib.flows) == want["dsr_flows"]
                and statuses.get("not-rewritten", 0) == want["broken_flows"]
                and statuses.get("no-reply", 0) == want["noreply_flows"])
    ratios = {
        "tshark_over_review_cli": med["tshark_ip_slice"] / med["review_cli"],
        "tshark_over_review_lib": med["tshark_ip_slice"] / med["review_lib"],
        "tshark_opt_type_over_review_cli": med["tshark_ip_opt_type"] / med["review_cli"],
        "tshark_lua_over_review_cli": med["tshark_lua_dsropt"] / med["review_cli"],
    }
    result = {
        "benchmark": "review",
        "what": "dsrlab review (CLI subprocess incl. process start, and library call) vs "
                "tshark display filters on the same generated pcap",
        "rounds": ROUNDS,
        "unit": "seconds (median)",
        "file": {"packets": want["packets"], "bytes": want["bytes"],
                 "option_packets": want["option_packets"], "dsr_flows": want["dsr_flows"],
                 "tcp_dsr_flows": want["tcp_flows"], "udp_dsr_flows": want["udp_flows"],
                 "broken_flows": want["broken_flows"], "noreply_flows": want["noreply_flows"],
                 "seed": SEED, "generate_seconds": gen_s},
        "seconds": med,
        "raw_seconds": runs,
        "tshark_matched": counts,
        "review_found": found,
        "same_option_packet_count": same_option_count,
        "flows_as_generated": flows_ok,
        "ratios": ratios,
        "targets": {"cli_at_least_5x_faster_than_tshark":
                    ratios["tshark_over_review_cli"] >= TARGET_RATIO,
                    "library_at_least_5x_faster_than_tshark":
                    ratios["tshark_over_review_lib"] >= TARGET_RATIO},
        "notes": [
            "review_cli runs .venv/bin/dsrlab as a subprocess: process start, importing "
            "lab.cli (all commands' modules), the review, and printing the JSON of every "
            "flow; review_cli_100_packets is that fixed cost on a 100-packet file",
            "tshark baseline filter: ip[20:2] == 9a:08 (first IPv4 option type 0x9a, length 8)",
            "ip.opt.type == 0x9a matches nothing in Wireshark 4.0: unknown IPv4 options get "
            "a text item, no ip.opt.type field",
        ],
        "tshark": subprocess.run(["tshark", "-v"], capture_output=True, text=True,
                                 check=False).stdout.splitlines()[0],
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"dsrlab review (CLI, with process start): {med['review_cli']:.2f} s "
          f"(on 100 packets: {med['review_cli_100_packets']:.2f} s); "
          f"library: {med['review_lib']:.2f} s")
    print(f"tshark -Y 'ip[20:2] == 9a:08': {med['tshark_ip_slice']:.2f} s "
          f"({counts['tshark_ip_slice']} packets)")
    print(f"tshark -Y 'ip.opt.type == 0x9a': {med['tshark_ip_opt_type']:.2f} s "
          f"({counts['tshark_ip_opt_type']} packets: no field for unknown options in 4.0)")
    print(f"tshark + dsr_option.lua -Y dsropt.service: {med['tshark_lua_dsropt']:.2f} s "
          f"({counts['tshark_lua_dsropt']} packets)")
    print(f"review: {lib.option_packets} option packets, {len(lib.flows)} flows {statuses}; "
          f"same option count as tshark: {same_option_count}; flows as generated: {flows_ok}")
    for k, v in ratios.items():
        print(f"  ratio {k}: {v:.1f}x")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0 if same_option_count and flows_ok else 1


if __name__ == "__main__":
    sys.exit(main())
