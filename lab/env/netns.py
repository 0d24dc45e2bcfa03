"""The embedded backend: every host of a topology is a network namespace.

Wiring, all over netlink from this process (pyroute2), no ``ip`` commands:

* the client namespace holds the bridge (kind's docker bridge) with the
  client's address; each node's ``eth0`` is a veth whose peer is a port of
  that bridge;
* a pod is a namespace behind its node, as Cilium wires it: ``eth0`` with a
  /32 address and a default route via the node's router address (held by
  the ``cilium_host``/``cilium_net`` veth pair), and a host-side ``lxc…``
  veth with a /32 route;
* every node routes the other nodes' pod CIDRs via their node addresses
  (``autoDirectNodeRoutes``);
* each node runs the lab's DSR datapath on ``eth0`` (tc ingress + egress);
* each pod runs a real HTTP server on its workload port.

Nothing is created in the root namespace: veth peers are created straight
into their target namespaces, and every netlink socket is opened inside the
namespace it configures. A start that fails half-way undoes what it did.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO, Any

from pyroute2 import IPRoute

from lab.datapath import BackendEntry, DatapathObject, build_object
from lab.env.base import BackendError, HostKind, LabHost
from lab.model.topology import Node, Pod, Topology
from lab.plumbing import names, nsutil, owner

STATE_DIR = Path("/run/dsrlab")
BRIDGE_PREFIX = "br-"
NODE_IFNAME = "eth0"
POD_IFNAME = "eth0"
ROUTER_IFNAME = "cilium_host"
ROUTER_PEER_IFNAME = "cilium_net"
_TERM_GRACE_S = 2.0


def bridge_ifname(topology: Topology) -> str:
    return names.check_ifname(f"{BRIDGE_PREFIX}{topology.network.name}"[: names.IFNAMSIZ])


def lxc_ifname(pod: Pod) -> str:
    """Cilium-style host-side veth name: ``lxc`` + 8 hex digits of the pod's name."""
    return "lxc" + hashlib.sha1(pod.name.encode()).hexdigest()[:8]


def state_path(run_id: str) -> Path:
    return STATE_DIR / f"{names.check_run_id(run_id)}.json"


@dataclass
class _Undo:
    """Last-in-first-out undo steps; a failing step is reported, not swallowed."""

    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> list[str]:
        errors: list[str] = []
        while self.steps:
            what, fn = self.steps.pop()
            try:
                fn()
            except Exception as exc:
                errors.append(f"{what}: {exc}")
        return errors


class NetnsLab:
    """A topology brought up in network namespaces (a context manager).

    ``with NetnsBackend().up(topo) as lab:`` tears the lab down on exit;
    :meth:`detach` leaves it running for ``dsrlab down`` / ``dsrlab clean``.
    """

    backend = "netns"

    def __init__(self, topology: Topology, run_id: str) -> None:
        self.topology = topology
        self.run_id = run_id
        self.hosts: dict[str, LabHost] = {}
        self.pids: dict[str, int] = {}  # pod name -> HTTP server pid
        self.datapath: dict[str, DatapathObject] = {}  # node name -> loaded datapath object
        self._undo = _Undo()
        self._iproutes: dict[str, IPRoute] = {}
        self._closed = False

    # -- the Lab interface ---------------------------------------------------
    def netns(self, host: str) -> str:
        try:
            return self.hosts[host].netns
        except KeyError:
            raise BackendError(f"no host {host!r} in lab {self.run_id}") from None

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        return nsutil.exec_argv(self.netns(host), argv)

    def run(
        self, host: str, argv: list[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.exec_argv(host, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.exec_argv(host, argv), stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr)

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        try:
            self.down()
        except BackendError as teardown:
            if exc is None:
                raise
            exc.add_note(f"and the teardown was incomplete: {teardown}")

    def down(self) -> None:
        """Stop servers, drop the datapath, remove every namespace (LIFO)."""
        if self._closed:
            return
        self._closed = True
        errors = self._undo.run()
        with contextlib.suppress(FileNotFoundError):
            state_path(self.run_id).unlink()
        if errors:
            raise BackendError(f"teardown of lab {self.run_id} was incomplete:\n  "
                               + "\n  ".join(errors))

    def detach(self) -> Path:
        """Leave the lab running; write its state for ``dsrlab down``; return the file.

        The process gives up its claim: the lab now belongs to whoever runs
        ``dsrlab down`` or ``dsrlab clean``.
        """
        self.close_handles()
        self._closed = True
        self._undo.steps.clear()
        owner.release(self.run_id)
        return self.write_state()

    def close_handles(self) -> None:
        """Close this process's netlink sockets and BPF handles (the lab stays up)."""
        for ipr in self._iproutes.values():
            ipr.close()
        self._iproutes.clear()
        for dp in self.datapath.values():
            dp.close()

    def write_state(self) -> Path:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path = state_path(self.run_id)
        state = {
            "run_id": self.run_id,
            "backend": self.backend,
            "topology": str(self.topology.source) if self.topology.source else None,
            "topology_name": self.topology.name,
            "namespaces": {h.name: h.netns for h in self.hosts.values()},
            "pids": self.pids,
            "created": time.time(),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.rename(path)
        return path

    # -- helpers used while building -------------------------------------------
    def _iproute(self, host: str) -> IPRoute:
        return self._iproutes[host]

    def _add_host(self, name: str, kind: HostKind, ip: IPv4Address, ifname: str) -> str:
        ns = names.netns_name(self.run_id, name)
        nsutil.create(ns)
        self._undo.push(f"remove namespace {ns}", lambda: _remove_netns(ns, self))
        self.hosts[name] = LabHost(name=name, kind=kind, ip=ip, ifname=ifname, netns=ns)
        ipr = nsutil.open_iproute(ns)
        self._iproutes[name] = ipr
        self._undo.push(f"close netlink socket of {ns}", ipr.close)
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        nsutil.write_sysctl(ns, "net.ipv4.conf.all.rp_filter", 0)
        nsutil.write_sysctl(ns, "net.ipv4.conf.default.rp_filter", 0)
        # IPv4 lab: no IPv6 link-local chatter (router solicitations, MLD) in the captures
        with contextlib.suppress(FileNotFoundError):
            nsutil.write_sysctl(ns, "net.ipv6.conf.all.disable_ipv6", 1)
            nsutil.write_sysctl(ns, "net.ipv6.conf.default.disable_ipv6", 1)
        return ns


def _remove_netns(ns: str, lab: NetnsLab) -> None:
    # sockets of this process keep a namespace alive: close them first
    for host, ipr in list(lab._iproutes.items()):
        if lab.hosts[host].netns == ns:
            ipr.close()
            del lab._iproutes[host]
    nsutil.remove(ns)


def _link_index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise BackendError(f"interface {ifname} did not appear")
    return int(found[0])


def _disable_redirects(ns: str) -> None:
    for key in ("all", "default"):
        nsutil.write_sysctl(ns, f"net.ipv4.conf.{key}.send_redirects", 0)


class NetnsBackend:
    """Brings a :class:`Topology` up as namespaces (see the module docstring)."""

    name = "netns"

    def __init__(self, *, datapath: bool = True, servers: bool = True,
                 checksum_offload: bool = False) -> None:
        self.with_datapath = datapath
        self.with_servers = servers
        self.checksum_offload = checksum_offload

    def up(self, topology: Topology, *, run_id: str | None = None) -> NetnsLab:
        if topology.load_balancer.mode != "dsr" or topology.load_balancer.dispatch != "opt":
            raise BackendError(
                f"{topology.source or topology.name}: load_balancer: the netns datapath "
                f"implements mode=dsr with dispatch=opt only (got mode="
                f"{topology.load_balancer.mode}, dispatch={topology.load_balancer.dispatch})"
            )
        lab = NetnsLab(topology, run_id or names.new_run_id())
        try:
            self._build(lab)
        except BaseException as exc:
            errors = lab._undo.run()
            lab._closed = True
            if errors:
                raise BackendError(
                    f"bring-up of lab {lab.run_id} failed ({exc}) and its undo was "
                    "incomplete:\n  " + "\n  ".join(errors)
                ) from exc
            raise
        return lab

    # -- the steps ---------------------------------------------------------------
    def _build(self, lab: NetnsLab) -> None:
        t = lab.topology
        mtu = t.network.mtu
        plen = t.network.subnet.prefixlen
        br = bridge_ifname(t)
        client_ns = lab._add_host(t.client.name, "client", t.client.ip, br)
        cipr = lab._iproute(t.client.name)
        cipr.link("add", ifname=br, kind="bridge", address=names.docker_mac(t.client.ip), mtu=mtu)
        br_idx = _link_index(cipr, br)
        cipr.addr("add", index=br_idx, address=str(t.client.ip), prefixlen=plen)
        if not self.checksum_offload:
            nsutil.set_tx_checksum(client_ns, br, False)
        cipr.link("set", index=br_idx, state="up")

        for i, node in enumerate(t.nodes):
            self._build_node(lab, i, node, br_idx)
        for node in t.nodes:
            self._route_pod_cidrs(lab, node)
            for pod in t.pods_on(node.name):
                self._build_pod(lab, node, pod)
        if self.with_datapath:
            self._attach_datapath(lab)
        if self.with_servers:
            for pod in t.pods:
                self._start_server(lab, pod)

    def _build_node(self, lab: NetnsLab, index: int, node: Node, br_idx: int) -> None:
        t = lab.topology
        ns = lab._add_host(node.name, "node", node.ip, NODE_IFNAME)
        nsutil.write_sysctl(ns, "net.ipv4.ip_forward", 1)
        _disable_redirects(ns)
        cipr = lab._iproute(t.client.name)
        port = f"veth{index}"
        cipr.link("add", ifname=port, kind="veth", mtu=t.network.mtu,
                  peer={"ifname": NODE_IFNAME, "net_ns_fd": ns,
                        "address": names.docker_mac(node.ip), "mtu": t.network.mtu})
        port_idx = _link_index(cipr, port)
        cipr.link("set", index=port_idx, master=br_idx, state="up")
        nipr = lab._iproute(node.name)
        eth0 = _link_index(nipr, NODE_IFNAME)
        nipr.addr("add", index=eth0, address=str(node.ip), prefixlen=t.network.subnet.prefixlen)
        nipr.link("set", index=eth0, state="up")
        # Cilium's cilium_host/cilium_net veth pair holds the node's router address
        nipr.link("add", ifname=ROUTER_IFNAME, kind="veth", peer={"ifname": ROUTER_PEER_IFNAME})
        router = _link_index(nipr, ROUTER_IFNAME)
        nipr.addr("add", index=router, address=str(node.router_ip), prefixlen=32)
        nipr.link("set", index=_link_index(nipr, ROUTER_PEER_IFNAME), state="up")
        nipr.link("set", index=router, state="up")

    def _route_pod_cidrs(self, lab: NetnsLab, node: Node) -> None:
        """autoDirectNodeRoutes: the other nodes' pod CIDRs via their addresses."""
        nipr = lab._iproute(node.name)
        eth0 = _link_index(nipr, NODE_IFNAME)
        for other in lab.topology.nodes:
            if other.name != node.name:
                nipr.route("add", dst=str(other.pod_cidr), gateway=str(other.ip), oif=eth0)

    def _build_pod(self, lab: NetnsLab, node: Node, pod: Pod) -> None:
        t = lab.topology
        ns = lab._add_host(pod.name, "pod", pod.ip, POD_IFNAME)
        nipr = lab._iproute(node.name)
        lxc = lxc_ifname(pod)
        nipr.link("add", ifname=lxc, kind="veth", mtu=t.network.mtu,
                  peer={"ifname": POD_IFNAME, "net_ns_fd": ns, "mtu": t.network.mtu})
        lxc_idx = _link_index(nipr, lxc)
        nipr.link("set", index=lxc_idx, state="up")
        nipr.route("add", dst=f"{pod.ip}/32", oif=lxc_idx, scope=253)  # scope link
        pipr = lab._iproute(pod.name)
        eth0 = _link_index(pipr, POD_IFNAME)
        pipr.addr("add", index=eth0, address=str(pod.ip), prefixlen=32)
        if not self.checksum_offload:
            nsutil.set_tx_checksum(ns, POD_IFNAME, False)
        pipr.link("set", index=eth0, state="up")
        pipr.route("add", dst=f"{node.router_ip}/32", oif=eth0, scope=253)
        pipr.route("add", dst="0.0.0.0/0", gateway=str(node.router_ip), oif=eth0)

    def _attach_datapath(self, lab: NetnsLab) -> None:
        t = lab.topology
        obj_path = build_object()
        for node in t.nodes:
            dp = DatapathObject.load(obj_path)
            lab.datapath[node.name] = dp
            lab._undo.push(f"close datapath of {node.name}", dp.close)
            dp.set_option_order(t.load_balancer.option_byte_order)
            dp.set_mtu(t.network.mtu)  # eth0's MTU: the DSR option must fit in it
            for svc in t.services:
                backends = [
                    BackendEntry(ip=str(p.ip), port=svc.target_port, local=p.node == node.name)
                    for p in t.backends(svc.name)
                ]
                dp.add_service(vip=str(node.ip), port=svc.node_port,
                               proto="tcp" if svc.protocol == "TCP" else "udp", dsr=True,
                               backends=backends)
            ns = lab.netns(node.name)
            eth0 = _link_index(lab._iproute(node.name), NODE_IFNAME)
            with nsutil.in_netns(ns):
                dp.attach_tc(eth0, "ingress", "dsr_from_netdev")
                dp.attach_tc(eth0, "egress", "dsr_to_netdev")

    def _start_server(self, lab: NetnsLab, pod: Pod) -> None:
        t = lab.topology
        port = next(w.port for w in t.workloads if pod in w.pods)
        ns = lab.netns(pod.name)
        sock = nsutil.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(pod.ip), port))
            sock.listen(128)
            fd = sock.fileno()
            proc = subprocess.Popen(
                lab.exec_argv(pod.name, [sys.executable, "-m", "lab.env.podserver",
                                         "--name", pod.name, "--ip", str(pod.ip),
                                         "--fd", str(fd)]),
                pass_fds=(fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        lab.pids[pod.name] = proc.pid
        lab._undo.push(f"stop server of {pod.name} (pid {proc.pid})",
                       lambda: _stop_child(proc))


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(_TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_TERM_GRACE_S)


@contextlib.contextmanager
def netns_lab(topology: Topology, **kwargs: Any) -> Iterator[NetnsLab]:
    """``with netns_lab(topo) as lab:`` brings the lab up and always down."""
    lab = NetnsBackend(**kwargs).up(topology)
    with lab:
        yield lab
