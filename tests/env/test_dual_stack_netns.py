"""The netns backend wires a dual-stack topology in IPv6 as in IPv4 (real namespaces)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.datapath import DatapathError, DatapathObject, build_object
from lab.env import cleanup
from lab.env.faults import inject
from lab.env.netns import NetnsBackend, NetnsLab, lxc_ifname
from lab.env.netns.datapath import IPV6_MAPS_MISSING
from lab.env.podserver import body_for
from lab.errors import LabError
from lab.model.scenario import Fault
from lab.model.topology import Topology, load_topology
from lab.plumbing import names, nsutil, rootsnap
from tests.cli.helpers import dsrlab

pytestmark = pytest.mark.netns

DUAL_STACK = Path(__file__).resolve().parents[2] / "topologies" / "seed-dual-stack.yaml"
READY_S = 60.0

# one ICMPv6 echo request from a raw socket, the answer's source printed (exit 1: none)
_PING6 = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(2)
s.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x6d6c, 1) + b"dsrlab", (sys.argv[1], 0))
end = time.monotonic() + 2
while time.monotonic() < end:
    data, peer = s.recvfrom(2048)
    if data[0] == 129 and data[4:6] == b"\\x6d\\x6c":
        print(peer[0])
        sys.exit(0)
sys.exit(1)
"""


@pytest.fixture(scope="module")
def dual_topology() -> Topology:
    # the client routes to the pods' CIDRs, so that a pod's packet to it is answered
    t = load_topology(DUAL_STACK)
    return t.model_copy(update={"client": t.client.model_copy(update={"routes_to_pods": True})})


@pytest.fixture(scope="module")
def dual_lab(dual_topology: Topology) -> Iterator[NetnsLab]:
    """The dual-stack seed, no datapath (plain routing), its pods served."""
    with NetnsBackend(datapath=False).up(dual_topology) as lab:
        assert lab.servers is not None
        lab.servers.wait_ready(READY_S)
        yield lab


def _json(lab: NetnsLab, host: str, argv: list[str]) -> list[dict[str, object]]:
    data = json.loads(lab.run(host, argv).stdout)
    assert isinstance(data, list)
    return data


def _addrs6(lab: NetnsLab, host: str, ifname: str) -> list[tuple[object, object, bool]]:
    """(address, prefix length, nodad) of the interface's global IPv6 addresses."""
    out = _json(lab, host, ["ip", "-j", "-6", "addr", "show", "dev", ifname, "scope", "global"])
    return [(a["local"], a["prefixlen"], bool(a.get("nodad")))
            for a in out[0]["addr_info"] if "local" in a]  # type: ignore[union-attr,operator]


def _ping6(lab: NetnsLab, host: str, addr: str) -> str:
    proc = lab.run(host, [sys.executable, "-c", _PING6, addr], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else f"no answer ({proc.returncode})"


def test_every_host_gets_its_ipv6_addresses_routes_and_sysctls(
        dual_lab: NetnsLab, dual_topology: Topology) -> None:
    t, lab = dual_topology, dual_lab
    assert _addrs6(lab, "client", "br-kind") == [("fc00:f853:ccd:e793::1", 64, True)]
    worker = t.node("cilium-dsr-worker")
    assert _addrs6(lab, worker.name, "eth0") == [("fc00:f853:ccd:e793::4", 64, True)]
    assert _addrs6(lab, worker.name, "cilium_host") == [("fd00:10:244:2::1", 128, True)]
    pod = t.pod("cni-8zxj9")
    assert _addrs6(lab, pod.name, "eth0") == [("fd00:10:244:2::7b", 128, True)]
    # no address is tentative: usable the moment up returns
    for host in lab.hosts.values():
        tentative = _json(lab, host.name, ["ip", "-j", "-6", "addr", "show", "tentative"])
        assert [a for a in tentative if a.get("addr_info")] == [], host.name
    # a node: the other nodes' pod CIDRs via their IPv6 addresses, its pods behind lxc
    routes = {r["dst"]: r for r in _json(lab, worker.name, ["ip", "-j", "-6", "route"])}
    assert routes["fd00:10:244::/64"]["gateway"] == "fc00:f853:ccd:e793::3"
    assert routes["fd00:10:244:1::/64"]["gateway"] == "fc00:f853:ccd:e793::2"
    assert routes["fd00:10:244:2::7b"]["dev"] == lxc_ifname(pod)
    # the pod: its default route via the node's router address, resolved ahead
    proutes = {r["dst"]: r for r in _json(lab, pod.name, ["ip", "-j", "-6", "route"])}
    assert proutes["default"]["gateway"] == "fd00:10:244:2::1"
    neigh = _json(lab, pod.name, ["ip", "-j", "-6", "neigh", "show", "fd00:10:244:2::1"])
    assert [n["state"] for n in neigh] == [["PERMANENT"]]
    # the client: with routes_to_pods, each IPv6 pod CIDR via its node
    croutes = {r["dst"]: r for r in _json(lab, "client", ["ip", "-j", "-6", "route"])}
    assert croutes["fd00:10:244:2::/64"]["gateway"] == "fc00:f853:ccd:e793::4"
    for host in lab.hosts.values():
        forwarding = nsutil.read_sysctl(host.netns, "net.ipv6.conf.all.forwarding")
        assert forwarding == ("1" if host.kind == "node" else "0"), host.name
        assert nsutil.read_sysctl(host.netns, "net.ipv6.conf.default.disable_ipv6") == "0"
        assert nsutil.read_sysctl(host.netns, "net.ipv6.conf.default.accept_ra") == "0"
        assert nsutil.read_sysctl(host.netns, "net.ipv6.conf.default.autoconf") == "0"
        assert nsutil.read_sysctl(host.netns, "net.ipv4.ip_forward") == (
            "1" if host.kind == "node" else "0")


def test_every_host_reaches_its_peers_over_ipv6(dual_lab: NetnsLab,
                                                dual_topology: Topology) -> None:
    t, lab = dual_topology, dual_lab
    pairs: list[tuple[str, str]] = []
    for node in t.nodes:
        assert node.ip6 is not None
        assert t.client.ip6 is not None
        pairs += [("client", str(node.ip6)), (node.name, str(t.client.ip6))]
        pairs += [(node.name, str(other.ip6)) for other in t.nodes if other is not node]
    for pod in t.pods:
        assert pod.ip6 is not None
        # node <-> pod: its own node, and every other node through autoDirectNodeRoutes
        pairs += [(node.name, str(pod.ip6)) for node in t.nodes]
        pairs += [(pod.name, str(node.ip6)) for node in t.nodes]
        # pod -> client via its node (the client answers through routes_to_pods)
        pairs += [(pod.name, str(t.client.ip6)), ("client", str(pod.ip6))]
        pairs += [(pod.name, str(other.ip6)) for other in t.pods if other is not pod]
    got = {(src, dst): _ping6(lab, src, dst) for src, dst in pairs}
    assert got == {pair: pair[1] for pair in pairs}


def test_the_pods_serve_http_over_ipv6_and_still_over_ipv4(dual_lab: NetnsLab,
                                                           dual_topology: Topology) -> None:
    for pod in dual_topology.pods:
        for url in (f"http://[{pod.ip6}]:80/", f"http://{pod.ip}:80/"):
            family = "-6" if "[" in url else "-4"
            out = dual_lab.run("client", ["curl", "-sS", family, "--max-time", "5", url],
                               check=False)
            assert (out.returncode, out.stdout) == (0, body_for(pod.name, str(pod.ip))), url
        # and from the node that hosts it
        out = dual_lab.run(pod.node, ["curl", "-sS", "-6", "--max-time", "5",
                                      f"http://[{pod.ip6}]/"], check=False)
        assert out.stdout == body_for(pod.name, str(pod.ip))


def test_a_dual_stack_lab_comes_up_and_goes_down_leaving_nothing() -> None:
    before = rootsnap.take()
    ours_before = set(nsutil.list_netns())
    lab = NetnsBackend(datapath=False).up(load_topology(DUAL_STACK))
    namespaces = {h.netns for h in lab.hosts.values()}
    assert namespaces <= set(nsutil.list_netns())
    lab.down()
    assert not namespaces & set(nsutil.list_netns())
    assert not {ns for ns in set(nsutil.list_netns()) - ours_before if lab.run_id in ns}
    assert rootsnap.diff(before, rootsnap.take()) == []


def test_dsrlab_up_and_down_of_the_dual_stack_seed_as_a_user() -> None:
    """``dsrlab up topologies/seed-dual-stack.yaml --run-id ID`` lists each host's
    IPv6 address too (piped: every value whole); ``dsrlab down ID`` leaves nothing."""
    run_id = names.new_run_id()
    try:
        out = dsrlab("up", "--datapath", "none", str(DUAL_STACK), "--run-id", run_id)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == f"lab {run_id} (cilium-dsr) is up"
        assert lines[1].split() == ["host", "kind", "address", "IPv6", "address", "interface",
                                    "namespace"]
        rows = {line.split()[0]: line.split() for line in lines[2:8]}
        assert rows["client"][2:4] == ["172.18.0.1", "fc00:f853:ccd:e793::1"]
        assert rows["cni-8zxj9"][2:4] == ["10.0.2.123", "fd00:10:244:2::7b"]
        client_ns = names.netns_name(run_id, "client")
        assert _ping6_in(client_ns, "fc00:f853:ccd:e793::2") == "fc00:f853:ccd:e793::2"
        down = dsrlab("down", run_id)
        assert down.returncode == 0, down.stderr
        assert down.stdout.splitlines()[-1] == f"lab {run_id} is down"
        assert not [ns for ns in nsutil.list_netns() if run_id in ns]
    finally:
        for res in cleanup.find_runs([run_id]).values():
            cleanup.clean_run(res)


def _ping6_in(netns: str, addr: str) -> str:
    proc = subprocess.run(nsutil.exec_argv(netns, [sys.executable, "-c", _PING6, addr]),
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip()


def test_the_lab_datapath_serves_the_ipv6_node_port_or_refuses_in_one_line() -> None:
    """With the lab's datapath, a dual-stack service answers at every node's IPv6
    address on its node port (DSR); a datapath object without IPv6 maps refuses the
    lab in one line, leaving nothing."""
    t = load_topology(DUAL_STACK)
    run_id = names.new_run_id()
    with DatapathObject.load(build_object()) as dp:
        try:
            dp.map("lb6_services")
        except DatapathError:
            has_ipv6_maps = False
        else:
            has_ipv6_maps = True
    if not has_ipv6_maps:
        with pytest.raises(LabError) as info:
            NetnsBackend().up(t, run_id=run_id)
        assert str(info.value) == IPV6_MAPS_MISSING
        assert not [ns for ns in nsutil.list_netns() if run_id in ns]
        return
    with NetnsBackend().up(t, run_id=run_id) as lab:
        lab.wait_serving(READY_S)
        for node in t.nodes:
            url = f"http://[{node.ip6}]:32000/"
            out = lab.run("client", ["curl", "-sS", "-6", "--max-time", "5", url], check=False)
            assert out.returncode == 0, (url, out.stderr)
            assert out.stdout.startswith("PodName: cni-"), out.stdout


@pytest.mark.parametrize("host", ["cni-8zxj9", "cilium-dsr-worker"])
def test_a_link_down_fault_puts_the_ipv6_routes_back_too(dual_lab: NetnsLab,
                                                          host: str) -> None:
    """A pod's eth0 or a node's eth0 down then up: its IPv6 addresses stay, and the
    IPv6 routes the kernel flushed (a pod's default route, a node's routes to the
    other nodes' pod CIDRs) are back as they were; the pod answers over IPv6 again."""
    lab, ifname = dual_lab, dual_lab.hosts[host].ifname

    def routes6() -> list[dict[str, object]]:
        return sorted(_json(lab, host, ["ip", "-j", "-6", "route", "show", "dev", ifname]),
                      key=json.dumps)

    before, addrs = routes6(), _addrs6(lab, host, ifname)
    undo = inject(lab, Fault(host=host, link_down=True))
    assert _ping6(lab, "client", "fd00:10:244:2::7b").startswith("no answer")
    undo()
    assert _addrs6(lab, host, ifname) == addrs
    assert routes6() == before
    # the far end of the link (the pod's lxc, the client's bridge port) readies itself
    # too: neighbour discovery may take its retransmissions (1 s apart) to get through
    answers = [_ping6(lab, "client", "fd00:10:244:2::7b") for _ in range(3)]
    assert "fd00:10:244:2::7b" in answers, answers


def _group_reports(pcap: Path) -> list[int]:
    """The frame numbers of IGMP and MLD reports (a link joining its groups) in ``pcap``."""
    from lab.wire.pcapread import open_capture  # noqa: PLC0415

    found = []
    with open_capture(pcap) as cap:
        for n, (_lt, off, caplen, _rec) in enumerate(cap.records(), start=1):
            frame = bytes(cap.buf[off:off + caplen])
            et = frame[12:14]
            igmp = et == b"\x08\x00" and frame[23] == 2
            # MLD: an ICMPv6 report behind the hop-by-hop header (router alert)
            mld = et == b"\x86\xdd" and frame[20] == 0 and frame[62:63] in (b"\x83", b"\x8f")
            if igmp or mld:
                found.append(n)
    return found


def test_the_links_group_reports_go_at_bring_up_not_into_a_runs_captures(
        tmp_path: Path) -> None:
    """MLD and IGMP reports used to come up to a second after the links did, in the
    middle of a run's captures (which then waited for them to stop)."""
    from lab.runner.scenario import run_scenario  # noqa: PLC0415

    run = run_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "ipv6"
                       / "seed-ipv6.yaml", captures_root=tmp_path)
    assert run.passed
    pcaps = sorted(run.capture_dir.glob("*.pcap"))
    assert pcaps
    assert {p.name: _group_reports(p) for p in pcaps} == {p.name: [] for p in pcaps}
