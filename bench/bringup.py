"""Benchmark: seed topology up and down, dsrlab (netlink) against a plain ``ip`` script.

Both sides build the same thing in the same run, round after round: the
namespaces of the client, nodes and pods, the bridge, the veths, addresses,
routes and the per-namespace sysctls. The baseline is a bash script of
``ip`` commands generated from the same topology file (so it cannot drift
from what dsrlab builds). A third figure, not part of the ratio, is dsrlab's
full bring-up with the eBPF datapath attached and the pod servers started.

Prints the medians and ratios; writes bench/results/bringup.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.datapath import build_object  # noqa: E402
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
from lab.plumbing import names  # noqa: E402

ROUNDS = 10
RESULTS = REPO / "bench" / "results" / "bringup.json"


def ip_script(t: Topology, run_id: str) -> tuple[str, str]:
    """Bash scripts (up, down) doing with ``ip`` what the netns backend does."""
    ns = {h: names.netns_name(run_id, h) for h in t.host_names()}
    br = bridge_ifname(t)
    mtu = t.network.mtu
    plen = t.network.subnet.prefixlen
    up = ["set -e"]
    node_names = {n.name for n in t.nodes}
    for host in t.host_names():
        n = ns[host]
        up += [f"ip netns add {n}", f"ip -n {n} link set lo up"]
        sysctls = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                   "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
        if host in node_names:
            sysctls += ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                        "net.ipv4.conf.default.send_redirects=0"]
        up.append(f"ip netns exec {n} sysctl -qw {' '.join(sysctls)}")
    c = ns[t.client.name]
    up += [f"ip -n {c} link add {br} address {names.docker_mac(t.client.ip)} mtu {mtu} type bridge",
           f"ip -n {c} addr add {t.client.ip}/{plen} dev {br}",
           f"ip -n {c} link set {br} up"]
    for i, node in enumerate(t.nodes):
        n = ns[node.name]
        up += [f"ip -n {c} link add veth{i} mtu {mtu} type veth peer name {NODE_IFNAME} "
               f"netns {n} address {names.docker_mac(node.ip)} mtu {mtu}",
               f"ip -n {c} link set veth{i} master {br} up",
               f"ip -n {n} addr add {node.ip}/{plen} dev {NODE_IFNAME}",
               f"ip -n {n} link set {NODE_IFNAME} up",
               f"ip -n {n} link add {ROUTER_IFNAME} type veth peer name {ROUTER_PEER_IFNAME}",
               f"ip -n {n} addr add {node.router_ip}/32 dev {ROUTER_IFNAME}",
               f"ip -n {n} link set {ROUTER_PEER_IFNAME} up",
               f"ip -n {n} link set {ROUTER_IFNAME} up"]
    for node in t.nodes:
        n = ns[node.name]
        for other in t.nodes:
            if other.name != node.name:
                up.append(f"ip -n {n} route add {other.pod_cidr} via {other.ip} dev {NODE_IFNAME}")
        for pod in t.pods_on(node.name):
            p = ns[pod.name]
            lxc = lxc_ifname(pod)
            up += [f"ip -n {n} link add {lxc} mtu {mtu} type veth peer name {POD_IFNAME} "
                   f"netns {p} mtu {mtu}",
                   f"ip -n {n} link set {lxc} up",
                   f"ip -n {n} route add {pod.ip}/32 dev {lxc} scope link",
                   f"ip -n {p} addr add {pod.ip}/32 dev {POD_IFNAME}",
                   f"ip -n {p} link set {POD_IFNAME} up",
                   f"ip -n {p} route add {node.router_ip}/32 dev {POD_IFNAME} scope link",
                   f"ip -n {p} route add default via {node.router_ip} dev {POD_IFNAME}"]
    down = [f"ip netns del {ns[h]}" for h in reversed(t.host_names())]
    return "\n".join(up) + "\n", "\n".join(down) + "\n"


def time_script(t: Topology) -> tuple[float, float, int]:
    run_id = names.new_run_id()
    up, down = ip_script(t, run_id)
    with tempfile.TemporaryDirectory() as d:
        up_f, down_f = Path(d) / "up.sh", Path(d) / "down.sh"
        up_f.write_text(up)
        down_f.write_text(down)
        t0 = time.perf_counter()
        subprocess.run(["bash", str(up_f)], check=True)
        t1 = time.perf_counter()
        subprocess.run(["bash", str(down_f)], check=True)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, up.count("\n")


def time_dsrlab(t: Topology, *, full: bool) -> tuple[float, float]:
    backend = NetnsBackend(datapath=full, servers=full)
    t0 = time.perf_counter()
    lab = backend.up(t)
    t1 = time.perf_counter()
    lab.down()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> int:
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
    med = {k: statistics.median(v) for k, v in rows.items()}
    ratios = {
        "script_over_dsrlab_up": med["script_up"] / med["dsrlab_up"],
        "script_over_dsrlab_up_down": (med["script_up"] + med["script_down"])
        / (med["dsrlab_up"] + med["dsrlab_down"]),
        "script_over_dsrlab_full_up": med["script_up"] / med["dsrlab_full_up"],
    }
    result = {
        "benchmark": "bringup",
        "topology": "topologies/seed.yaml",
        "rounds": ROUNDS,
        "unit": "ms (median)",
        "script_commands": commands,
        "median_ms": med,
        "raw_ms": rows,
        "ratios": ratios,
        "targets": {"dsrlab_no_slower_than_script": ratios["script_over_dsrlab_up_down"] >= 1.0,
                    "dsrlab_up_under_300ms": med["dsrlab_full_up"] < 300.0},
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
    for k, v in ratios.items():
        print(f"  ratio {k}: {v:.2f}x")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
