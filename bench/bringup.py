"""Benchmark: seed topology up and down, dsrlab (netlink) against a plain ``ip`` script,
and ``dsrlab up`` / ``dsrlab down`` as the whole commands a user runs.

In-process part, interleaved round after round in one run: the baseline is
a bash script of ``ip`` commands (one process per command) generated from
the same topology file, so it cannot drift from what dsrlab builds: the
namespaces of the client, nodes and pods, the bridge, the veths, addresses,
routes and the per-namespace sysctls. ``dsrlab`` is the netns backend
building the same network (``NetnsBackend(datapath=False, servers=False)``,
like for like with the script); ``dsrlab_full`` is what ``dsrlab up`` does
(the eBPF datapath loaded and attached on every node, the pod server
started), reported beside it (the script cannot load BPF).

CLI part: ``dsrlab up topologies/seed.yaml`` then ``dsrlab down RUN_ID``,
each a fresh process timed by wall clock, several rounds; the run id is
taken from the state file that appeared in /run/dsrlab (not from the
output, whose format is the CLI's business). Baselines in the same run: a
bare interpreter start and ``dsrlab --help`` (the CLI's own start-up), so
the down figure can be read against the floor any command pays. Target:
``dsrlab down`` of the seed under 200 ms wall.

Prints the medians and ratios; writes bench/results/bringup.json.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.datapath import build_object  # noqa: E402
from lab.env import cleanup  # noqa: E402
from lab.env.netns import (  # noqa: E402
    NODE_IFNAME,
    POD_IFNAME,
    ROUTER_IFNAME,
    ROUTER_PEER_IFNAME,
    NetnsBackend,
    bridge_ifname,
    lxc_ifname,
)
from lab.model.topology import Topology, load_topology  # noqa: E402
from lab.plumbing import names, nsutil  # noqa: E402

ROUNDS = 10
RESULTS = REPO / "bench" / "results" / "bringup.json"


def ip_script(t: Topology, run_id: str, *, batch: bool = False) -> tuple[str, str]:
    """Bash scripts (up, down) doing with ``ip`` what the netns backend does.

    ``batch=False``: one ``ip`` process per command (the seed baseline).
    ``batch=True``: the same commands, but the namespace adds and deletes in
    one ``ip -batch`` each and every namespace's link/address/route commands
    in one ``ip -n NS -batch`` (a far stronger baseline at scale, where one
    process per route would mean N x (N-1) processes).
    """
    ns = {h: names.netns_name(run_id, h) for h in t.host_names()}
    br = bridge_ifname(t)
    mtu = t.network.mtu
    plen = t.network.subnet.prefixlen
    node_names = {n.name for n in t.nodes}
    per_ns: dict[str, list[str]] = {h: [] for h in t.host_names()}  # ip commands, no "ip -n X"
    sysctl_lines = []
    for host in t.host_names():
        per_ns[host].append("link set lo up")
        sysctls = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                   "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
        if host in node_names:
            sysctls += ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                        "net.ipv4.conf.default.send_redirects=0"]
        sysctl_lines.append(f"ip netns exec {ns[host]} sysctl -qw {' '.join(sysctls)}")
    c = t.client.name
    per_ns[c] += [f"link add {br} address {names.docker_mac(t.client.ip)} mtu {mtu} type bridge",
                  f"addr add {t.client.ip}/{plen} dev {br}",
                  f"link set {br} up"]
    for i, node in enumerate(t.nodes):
        n = node.name
        per_ns[c] += [f"link add veth{i} mtu {mtu} type veth peer name {NODE_IFNAME} "
                      f"netns {ns[n]} address {names.docker_mac(node.ip)} mtu {mtu}",
                      f"link set veth{i} master {br} up"]
        per_ns[n] += [f"addr add {node.ip}/{plen} dev {NODE_IFNAME}",
                      f"link set {NODE_IFNAME} up",
                      f"link add {ROUTER_IFNAME} type veth peer name {ROUTER_PEER_IFNAME}",
                      f"addr add {node.router_ip}/32 dev {ROUTER_IFNAME}",
                      f"link set {ROUTER_PEER_IFNAME} up",
                      f"link set {ROUTER_IFNAME} up"]
    for node in t.nodes:
        n = node.name
        for other in t.nodes:
            if other.name != n:
                per_ns[n].append(f"route add {other.pod_cidr} via {other.ip} dev {NODE_IFNAME}")
        for pod in t.pods_on(n):
            lxc = lxc_ifname(pod)
            per_ns[n] += [f"link add {lxc} mtu {mtu} type veth peer name {POD_IFNAME} "
                          f"netns {ns[pod.name]} mtu {mtu}",
                          f"link set {lxc} up",
                          f"route add {pod.ip}/32 dev {lxc} scope link"]
            per_ns[pod.name] += [f"addr add {pod.ip}/32 dev {POD_IFNAME}",
                                 f"link set {POD_IFNAME} up",
                                 f"route add {node.router_ip}/32 dev {POD_IFNAME} scope link",
                                 f"route add default via {node.router_ip} dev {POD_IFNAME}"]
    # order: the client (node eth0s appear), then each node (its pods' eth0s appear), then pods
    order = [c, *(n.name for n in t.nodes), *(p.name for p in t.pods)]
    up = ["set -e"]
    if batch:
        up += ["ip -batch - <<'EOF'", *(f"netns add {ns[h]}" for h in t.host_names()), "EOF"]
        up += sysctl_lines
        for h in order:
            up += [f"ip -n {ns[h]} -batch - <<'EOF'", *per_ns[h], "EOF"]
        down = ["ip -batch - <<'EOF'", *(f"netns del {ns[h]}" for h in reversed(t.host_names())),
                "EOF"]
    else:
        up += [f"ip netns add {ns[h]}" for h in t.host_names()]
        up += sysctl_lines
        for h in order:
            up += [f"ip -n {ns[h]} {cmd}" for cmd in per_ns[h]]
        down = [f"ip netns del {ns[h]}" for h in reversed(t.host_names())]
    return "\n".join(up) + "\n", "\n".join(down) + "\n"


def script_commands(up: str) -> int:
    """``ip`` commands in a script (a batch line counts as one)."""
    return sum(1 for line in up.splitlines()
               if line and line not in ("set -e", "EOF") and not line.endswith("<<'EOF'"))


def _remove_leftovers(run_id: str) -> None:
    """After a failed script: remove whatever namespaces carry its run id (by name)."""
    prefix = f"{names.PREFIX}-{run_id}-"
    for ns in nsutil.list_netns():
        if ns.startswith(prefix):
            nsutil.remove(ns)


def time_script(t: Topology, *, batch: bool = False) -> tuple[float, float, int]:
    run_id = names.new_run_id()
    up, down = ip_script(t, run_id, batch=batch)
    with tempfile.TemporaryDirectory() as d:
        up_f, down_f = Path(d) / "up.sh", Path(d) / "down.sh"
        up_f.write_text(up)
        down_f.write_text(down)
        try:
            t0 = time.perf_counter()
            subprocess.run(["bash", str(up_f)], check=True)
            t1 = time.perf_counter()
            subprocess.run(["bash", str(down_f)], check=True)
            t2 = time.perf_counter()
        finally:
            _remove_leftovers(run_id)
    return t1 - t0, t2 - t1, script_commands(up)


def time_dsrlab(t: Topology, *, full: bool) -> tuple[float, float]:
    backend = NetnsBackend(datapath=full, servers=full)
    t0 = time.perf_counter()
    lab = backend.up(t)
    t1 = time.perf_counter()
    lab.down()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


CLI_ROUNDS = 7
STATE_DIR = cleanup.STATE_DIR  # where `dsrlab up` writes <run id>.json


def _cli(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0, proc


def _state_files() -> set[str]:
    return {p.stem for p in STATE_DIR.glob("*.json")} if STATE_DIR.is_dir() else set()


def _cli_up() -> tuple[float, str]:
    """``dsrlab up`` of the seed: (seconds, its run id).

    The run id is the state file that appeared in /run/dsrlab meanwhile; if
    someone else brought a lab up at the same moment, the one the output
    names (``lab <id>``, ``dsrlab down <id>``) among them. Only a lab known
    to be ours is ever taken down here.
    """
    before = _state_files()
    up_s, upped = _cli("up", str(REPO / "topologies" / "seed.yaml"))
    new = _state_files() - before
    named = set(re.findall(r"\b(?:lab|down) ([0-9a-f]{6})\b", upped.stdout))
    ours = sorted(new & named) if len(new) > 1 or named else sorted(new)
    if upped.returncode != 0 or len(ours) != 1:
        for run_id in ours if len(ours) == 1 else []:
            _cli("down", run_id)
        raise RuntimeError(f"dsrlab up failed or its lab is ambiguous (exit "
                           f"{upped.returncode}, new state files {sorted(new)}): {upped.stderr}")
    return up_s, names.check_run_id(ours[0])


def _check_gone(run_id: str) -> None:
    left = [ns for ns in nsutil.list_netns() if ns.startswith(f"{names.PREFIX}-{run_id}-")]
    if left or run_id in _state_files():
        raise RuntimeError(f"dsrlab down {run_id} left {left or 'its state file'}")


def time_cli_round() -> tuple[float, float, float, float, float]:
    """(interpreter start, dsrlab --help, dsrlab up, dsrlab down, the teardown that
    dsrlab down runs (cleanup.tear_down) timed in this process), seconds of wall time."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - t0
    help_s, helped = _cli("--help")
    if helped.returncode != 0:
        raise RuntimeError(f"dsrlab --help failed: {helped.stderr}")
    up_s, run_id = _cli_up()
    down_s, downed = _cli("down", run_id)
    if downed.returncode != 0:
        raise RuntimeError(f"dsrlab down {run_id} failed: {downed.stderr}")
    _check_gone(run_id)
    _, run_id = _cli_up()
    t0 = time.perf_counter()
    cleanup.tear_down(run_id)
    teardown_s = time.perf_counter() - t0
    _check_gone(run_id)
    return bare, help_s, up_s, down_s, teardown_s


def main() -> int:
    load_before = os.getloadavg()  # other work on the machine shows in every figure
    topo = load_topology(REPO / "topologies" / "seed.yaml")
    build_object()  # compile once, outside the timed part
    time_dsrlab(topo, full=True)  # warm-up: imports, first verifier run
    rows: dict[str, list[float]] = {k: [] for k in (
        "script_up", "script_down", "dsrlab_up", "dsrlab_down", "dsrlab_full_up",
        "dsrlab_full_down")}
    commands = 0
    for _ in range(ROUNDS):  # interleaved, so drift hits both sides alike
        su, sd, commands = time_script(topo)
        du, dd = time_dsrlab(topo, full=False)
        fu, fd = time_dsrlab(topo, full=True)
        for key, val in zip(rows, (su, sd, du, dd, fu, fd), strict=True):
            rows[key].append(val * 1000)
    cli_rows: dict[str, list[float]] = {k: [] for k in (
        "python_start", "cli_help", "cli_up", "cli_down", "teardown")}
    for _ in range(CLI_ROUNDS):
        for key, val in zip(cli_rows, time_cli_round(), strict=True):
            cli_rows[key].append(val * 1000)
    med = {k: statistics.median(v) for k, v in rows.items()}
    cli_med = {k: statistics.median(v) for k, v in cli_rows.items()}
    ratios = {
        "script_over_dsrlab_up": med["script_up"] / med["dsrlab_up"],
        "script_over_dsrlab_up_down": (med["script_up"] + med["script_down"])
        / (med["dsrlab_up"] + med["dsrlab_down"]),
        "script_over_dsrlab_full_up": med["script_up"] / med["dsrlab_full_up"],
        # >= 1: the target (dsrlab down of the seed under 200 ms wall) is met
        "cli_down_target_200ms_over_median": 200.0 / cli_med["cli_down"],
        # how much of dsrlab down is the command's own start-up (dsrlab --help)
        "cli_down_over_cli_help": cli_med["cli_down"] / cli_med["cli_help"],
        "cli_down_over_python_start": cli_med["cli_down"] / cli_med["python_start"],
        "cli_down_over_teardown": cli_med["cli_down"] / cli_med["teardown"],
    }
    result = {
        "benchmark": "bringup",
        "topology": "topologies/seed.yaml",
        "rounds": ROUNDS,
        "cli_rounds": CLI_ROUNDS,
        "cpus": os.cpu_count(),
        "load_average_before_after": [load_before, os.getloadavg()],
        "unit": "ms (median)",
        "script_commands": commands,
        "what": {
            "script": "bash script, one ip process per command (ip netns add, ip -n NS ..., "
                      "ip netns exec NS sysctl)",
            "dsrlab": "NetnsBackend(datapath=False, servers=False): the same network, in process",
            "dsrlab_full": "NetnsBackend(): the network, the eBPF datapath on every node and "
                           "the pod server (what dsrlab up does), in process; after the "
                           "warm-up each lab takes the objects the one before it left "
                           "(lab.env.netns.objpool): no verifier run",
            "cli_up": "dsrlab up topologies/seed.yaml, a whole process, wall time",
            "cli_down": "dsrlab down RUN_ID, a whole process, wall time",
            "cli_help": "dsrlab --help, a whole process (the CLI's start-up floor)",
            "teardown": "cleanup.tear_down(RUN_ID) in this process, of a lab brought up by "
                        "dsrlab up: the work dsrlab down does, without its start-up",
            "python_start": "python -c pass (the interpreter's floor)",
        },
        "median_ms": med,
        "cli_median_ms": cli_med,
        "raw_ms": rows,
        "cli_raw_ms": cli_rows,
        "ratios": ratios,
        "targets": {"dsrlab_no_slower_than_script": ratios["script_over_dsrlab_up_down"] >= 1.0,
                    "dsrlab_up_under_300ms": med["dsrlab_full_up"] < 300.0,
                    "cli_down_under_200ms": cli_med["cli_down"] < 200.0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"seed topology, {ROUNDS} rounds, medians:")
    print(f"  ip script ({commands} commands): up {med['script_up']:.1f} ms, "
          f"down {med['script_down']:.1f} ms")
    print(f"  dsrlab network:            up {med['dsrlab_up']:.1f} ms, "
          f"down {med['dsrlab_down']:.1f} ms")
    print(f"  dsrlab with datapath+pods: up {med['dsrlab_full_up']:.1f} ms, "
          f"down {med['dsrlab_full_down']:.1f} ms")
    print(f"commands, {CLI_ROUNDS} rounds, medians (wall):")
    print(f"  python -c pass {cli_med['python_start']:.0f} ms, dsrlab --help "
          f"{cli_med['cli_help']:.0f} ms")
    print(f"  dsrlab up {cli_med['cli_up']:.0f} ms, dsrlab down {cli_med['cli_down']:.0f} ms "
          f"(target < 200 ms), of which the teardown itself {cli_med['teardown']:.1f} ms")
    for k, v in ratios.items():
        print(f"  ratio {k}: {v:.2f}x")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
