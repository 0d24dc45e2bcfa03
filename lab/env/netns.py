"""The embedded backend: every host of a topology is a network namespace.

Wiring, all over netlink from this process, no ``ip`` commands:

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
* every pod answers HTTP on its workload port, all of them served by one
  process per lab (:mod:`lab.env.podserver`).

Nothing is created in the root namespace: veth peers are created straight
into their target namespaces, and every netlink socket is opened inside the
namespace it configures. A start that fails half-way undoes what it did.

How it stays fast at scale: a namespace's sockets and sysctls are made
while the thread is in it for its creation (no second ``setns``); links get
the interface index the lab chooses, so nothing is looked up; each
namespace's links, addresses and routes go to the kernel as one netlink
batch (:class:`lab.plumbing.rtnl.Rtnl`); the nodes' datapath objects load
and fill their maps on worker threads while the network is wired; the pods'
sockets are made, bound and listening before the one server process starts,
so that start is not waited for.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO, Any

from lab.atomic import OutputError, check_folder, reason, write_text
from lab.datapath import BackendEntry, DatapathObject, build_object, maglev
from lab.datapath.fabric import FabricObject, FabricPort
from lab.env import podserver, resources
from lab.env.base import BackendError, HostKind, LabHost, LeftBy
from lab.env.cleanup import STATE_DIR, state_path
from lab.model.topology import Node, Pod, ServicePort, Topology
from lab.plumbing import interrupts, names, nsmark, nsutil, owner, procs, rtnl

BRIDGE_PREFIX = "br-"
NODE_IFNAME = "eth0"
POD_IFNAME = "eth0"
ROUTER_IFNAME = "cilium_host"
ROUTER_PEER_IFNAME = "cilium_net"
_TERM_GRACE_S = 2.0

# Interface indices, chosen by the lab (indices are per namespace; lo is 1, and
# 2..9 are left to devices a kernel module may add to every new namespace)
BRIDGE_INDEX = 10  # client: the bridge; its port to node i is BRIDGE_INDEX + 1 + i
NODE_ETH0_INDEX = 10
ROUTER_INDEX = 11  # node: cilium_host; cilium_net is ROUTER_INDEX + 1
LXC_FIRST_INDEX = 13  # node: the lxc veth of its j-th pod is LXC_FIRST_INDEX + j
POD_ETH0_INDEX = 10

HOST_SYSCTLS: dict[str, str | int] = {
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
    # IPv4 lab: no IPv6 link-local chatter (router solicitations, MLD) in the captures
    "net.ipv6.conf.all.disable_ipv6": 1,
    "net.ipv6.conf.default.disable_ipv6": 1,
    # TCP Fast Open as client and server (a pod's listener turns it on for itself;
    # a client uses it only when asked, e.g. curl --tcp-fastopen)
    "net.ipv4.tcp_fastopen": 3,
}
OPTIONAL_SYSCTLS = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6")
NODE_SYSCTLS: dict[str, str | int] = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
}


def bridge_ifname(topology: Topology) -> str:
    return names.check_ifname(f"{BRIDGE_PREFIX}{topology.network.name}"[: names.IFNAMSIZ])


def lxc_ifname(pod: Pod) -> str:
    """Cilium-style host-side veth name: ``lxc`` + 8 hex digits of the pod's name."""
    return "lxc" + hashlib.sha1(pod.name.encode()).hexdigest()[:8]


@dataclass
class _Undo:
    """Last-in-first-out undo steps; a failing step is reported, not swallowed."""

    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> list[str]:
        """Every step, last first; an interrupt arriving meanwhile is raised after the
        last one (a second Ctrl-C cannot leave half a lab)."""
        errors: list[str] = []
        with interrupts.deferred():
            while self.steps:
                what, fn = self.steps.pop()
                try:
                    fn()
                except Exception as exc:
                    errors.append(f"{what}: {exc}")
        return errors


class PodServers:
    """The lab's one pod server process, seen from the lab: start, command, stop.

    The listening sockets are made by the lab (one per pod and protocol, each
    inside its pod's namespace) and inherited by the process; a unix socket
    pair carries the spec (which descriptor is which pod) and then commands
    such as ``stop POD``. The process is started inside the lab namespace
    ``netns``, where ``dsrlab clean`` finds it.
    """

    def __init__(self, proc: subprocess.Popen[bytes], control: socket.socket,
                 pods: list[str]) -> None:
        self.proc = proc
        self.pods = pods
        self._control: socket.socket | None = control
        self._rfile = control.makefile("rb")
        self._ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, netns: str,
              listeners: list[tuple[Pod, list[tuple[socket.socket, str]]]]) -> PodServers:
        """Start the process in ``netns`` serving ``listeners`` (pod, [(socket, proto)]).

        The sockets stay open in this process; close them once this returns
        (the server must hold the only copies for a stopped pod to stop listening).
        """
        spec = {"pods": [{"name": pod.name, "ip": str(pod.ip),
                          "listeners": [{"fd": s.fileno(), "proto": proto} for s, proto in socks]}
                         for pod, socks in listeners]}
        fds = [s.fileno() for _, socks in listeners for s, _ in socks]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # forked from a thread inside the namespace, the process starts there: no
            # nsenter, and no moment in which cleanup could miss it
            with nsutil.in_netns(netns):
                proc = subprocess.Popen(
                    [sys.executable, "-I", podserver.__file__, "--control", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(), *fds),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        servers = cls(proc, ours, [pod.name for pod, _ in listeners])
        try:
            data = json.dumps(spec).encode() + b"\n"
            if len(data) > 64 * 1024:  # hand it over at once, not as the child starts reading
                with contextlib.suppress(OSError):
                    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * len(data))
            ours.sendall(data)
        except BaseException:
            servers.stop()
            raise
        return servers

    def _readline(self, timeout: float) -> str:
        if self._control is None:
            raise BackendError("the pod server's control channel is closed (lab detached?)")
        self._control.settimeout(timeout)
        try:
            line = self._rfile.readline()
        except TimeoutError:
            raise BackendError(f"pod server (pid {self.pid}) did not answer in {timeout:g} s") \
                from None
        if not line:
            raise BackendError(f"pod server (pid {self.pid}) closed its control channel "
                               f"(exit status {self.proc.poll()})")
        return line.decode(errors="replace").strip()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the process serves every pod (``up`` need not: the sockets
        listen already, and connections queue until it accepts them)."""
        if self._ready:
            return
        line = self._readline(timeout)
        if not line.startswith("ready "):
            raise BackendError(f"pod server (pid {self.pid}): {line}")
        self._ready = True

    def command(self, line: str, timeout: float = 5.0) -> str:
        """Send one control command and return its one-line answer."""
        self.wait_ready(max(timeout, 10.0))
        assert self._control is not None
        self._control.sendall(line.strip().encode() + b"\n")
        return self._readline(timeout)

    def stop_pod(self, pod: str) -> None:
        """Stop serving ``pod`` only: it stops listening and drops its connections."""
        reply = self.command(f"stop {pod}")
        if reply != f"stopped {pod}":
            raise BackendError(f"pod server: stop {pod}: {reply}")

    def serving(self) -> list[str]:
        """The pods still being served."""
        return self.command("pods").split()[1:]

    def release(self) -> None:
        """Close the control channel; the process goes on serving (a detached lab)."""
        if self._control is not None:
            self._rfile.close()
            self._control.close()
            self._control = None

    def stop(self) -> None:
        """SIGTERM and reap it; SIGKILL after the grace period."""
        self.release()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(_TERM_GRACE_S)


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
        self.pids: dict[str, int] = {}  # pod name -> pid of the process serving it
        self.datapath: dict[str, DatapathObject] = {}  # node name -> loaded datapath object
        self.fabric: FabricObject | None = None  # the topology's fabric, when it has one
        self.servers: PodServers | None = None
        self._undo = _Undo()
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

    # -- pods ------------------------------------------------------------------
    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the pods' server accepts connections (``up`` returns before:
        the sockets listen already). Traffic whose timeouts must not include the
        server's start (a slow machine, a kernel under emulation) waits first."""
        if self.servers is not None:
            self.servers.wait_ready(timeout)

    def stop_pod_server(self, pod: str) -> None:
        """Stop serving one pod (it stops listening, its connections drop); the
        other pods go on. Needs the lab's own process (not after :meth:`detach`)."""
        if self.servers is None:
            raise BackendError(f"lab {self.run_id} runs no pod servers")
        if pod not in self.servers.pods:
            raise BackendError(f"no pod {pod!r} in lab {self.run_id}")
        self.servers.stop_pod(pod)

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
        """Stop the pod server, drop the datapath, remove every namespace (LIFO)."""
        if self._closed:
            return
        self._closed = True
        errors = self._undo.run()
        with contextlib.suppress(FileNotFoundError):
            state_path(self.run_id).unlink()
        if errors:
            raise BackendError(f"teardown of lab {self.run_id} was incomplete:\n  "
                               + "\n  ".join(errors))

    def detach(self, *, by: LeftBy = "up") -> Path:
        """Leave the lab running; write its state for ``dsrlab down``; return the file.

        The process gives up its claim: the lab now belongs to whoever runs
        ``dsrlab down`` or ``dsrlab clean``. Every namespace records that it was
        left up, and by what (``by``: ``dsrlab up`` or ``run --keep``), where every
        state directory sees it (:mod:`lab.plumbing.nsmark`). An interrupt
        meanwhile is raised once the state is written (the lab is then up, as
        asked, and findable).
        """
        with interrupts.deferred():
            try:
                path = self.write_state(by)
            except BaseException as exc:  # not left up unfindable: taken down instead
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
            self.close_handles()
            self._closed = True
            self._undo.steps.clear()
            me = owner.Holder.this_process()
            mark = nsmark.Mark(self.run_id, by, me.pid, me.process.start_time,
                               me.stop_signal)
            for ns in nsutil.list_netns():
                parsed = names.parse_netns_name(ns)
                if parsed is not None and parsed.run_id == self.run_id:
                    with contextlib.suppress(nsutil.NetnsError):
                        nsutil.write_mark(ns, mark)
            owner.release(self.run_id)
        return path

    def close_handles(self) -> None:
        """Close this process's BPF handles and the pod server's control channel
        (the lab, its datapath and its server stay up)."""
        for dp in self.datapath.values():
            dp.close()
        if self.fabric is not None:
            self.fabric.close()
        if self.servers is not None:
            self.servers.release()

    def write_state(self, by: LeftBy = "up") -> Path:
        try:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(STATE_DIR, f"cannot create: {reason(exc)}") from None
        path = state_path(self.run_id)
        state = {
            "run_id": self.run_id,
            "backend": self.backend,
            "left_up_by": nsmark.LEFT_UP_BY[by],
            "topology": str(self.topology.source) if self.topology.source else None,
            "topology_name": self.topology.name,
            "namespaces": {h.name: h.netns for h in self.hosts.values()},
            "pids": self.pids,
            "created": time.time(),
        }
        return write_text(path, json.dumps(state, indent=2))


def _remove_namespaces(created: list[str]) -> None:
    """Stop whatever still runs in the namespaces (a capture or server whose own stop
    was cut short), then remove them: a process would keep a removed namespace
    alive, out of sight of ``dsrlab clean``."""
    try:
        found = nsutil.pids_in_each(created)
    except (OSError, nsutil.NetnsError):
        found = {}
    stray = [pid for pids in found.values() for pid in pids]
    if stray:
        procs.stop(stray, grace=_TERM_GRACE_S)
    errors = nsutil.remove_all(reversed(created))
    created.clear()
    if errors:
        raise BackendError("namespaces not removed: " + "; ".join(errors))


@dataclass
class _Wiring:
    """What the lab holds of one namespace while wiring it: a batched netlink
    socket there, the namespace itself (for veth peers created into it) and,
    for a pod, its listening sockets (made inside, bound once its address is up)."""

    rtnl: rtnl.Rtnl
    fd: int
    listeners: list[tuple[socket.socket, str]] = field(default_factory=list)

    def close(self) -> None:
        self.rtnl.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        for sock, _ in self.listeners:
            sock.close()


def _new_host(ns: str, sysctls: nsutil.SysctlPlan, protos: tuple[str, ...]) -> _Wiring:
    """Runs inside the new namespace: sysctls, a netlink socket, the pod's sockets."""
    sysctls.apply_here()
    wiring = _Wiring(rtnl.Rtnl.here(ns), -1)
    try:
        wiring.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        for proto in protos:
            kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
            wiring.listeners.append((socket.socket(socket.AF_INET, kind), proto))
    except BaseException:
        wiring.close()
        raise
    return wiring


def _map_sizes(t: Topology) -> dict[str, int]:
    """Map sizes for a lab node: a lab's flows and backends are few (the object's
    defaults, 65,536 entries each, cost ~15 MB and ~6 ms of kernel time a node)."""
    ports = [p for s in t.services for p in s.all_ports]
    backends = sum(len(t.backends(s.name)) * len(s.all_ports) for s in t.services)
    tables = len(ports) if t.load_balancer.algorithm == "maglev" else 0
    return {"lb_ct": 4096, "dsr_revnat": 4096, "lb_snat": 4096,
            "lb_backends": max(1024, 2 * backends),
            "lb_maglev": max(1, tables) * t.load_balancer.maglev_table_size}


@dataclass(frozen=True)
class _Frontend:
    """One service port as one node's datapath holds it."""

    port: ServicePort
    backends: list[BackendEntry]  # in slot order (Maglev's table order when it has one)
    forwarding: str  # "dsr" or "snat" for remote backends
    local_only: bool
    maglev: list[int] | None  # the table: indexes into backends


def _frontends(t: Topology, node: Node) -> list[_Frontend]:
    """Every service port with the backends ``node`` sends it to: all of them, or with
    externalTrafficPolicy=Local its own only; with Maglev, the table over them."""
    lb = t.load_balancer
    out = []
    for svc in t.services:
        local_only = svc.external_traffic_policy == "Local"
        pods = t.backends_from(svc.name, node.name)
        for port in svc.all_ports:
            entries = {f"{p.ip}:{port.target_port}": BackendEntry(
                str(p.ip), port.target_port, local=p.node == node.name) for p in pods}
            table = None
            if lb.algorithm == "maglev" and entries:
                built = maglev.build_table(list(entries), lb.maglev_table_size,
                                           lb.maglev_hash_seed)
                order = list(built.backends)
                table = list(built.entries)
            else:
                order = list(entries)
            out.append(_Frontend(port, [entries[n] for n in order],
                                 lb.forwarding(port.protocol), local_only, table))
    return out


class _DatapathLoads:
    """Every node's datapath object, loaded (verifier, maps) and configured on
    worker threads while the main thread wires the network; :meth:`take` waits
    for one. :meth:`close` closes every object loaded (taken or not)."""

    def __init__(self, t: Topology, workers: int) -> None:
        sizes = _map_sizes(t)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsrlab-bpf")
        self._loaded: list[DatapathObject] = []
        self._futures: dict[str, Future[DatapathObject]] = {}
        # the build check (hash the sources, ask clang its version) runs on a worker too
        built = self._pool.submit(build_object)

        def load(node: Node) -> DatapathObject:
            dp = DatapathObject.load(built.result(), max_entries=sizes)
            self._loaded.append(dp)
            dp.set_option_order(t.load_balancer.option_byte_order)
            dp.set_mtu(t.datapath_mtu)  # the DSR option must fit in it
            dp.set_icmp_errors(t.load_balancer.dsr_icmp_errors)
            dp.set_fragment_tracking(t.load_balancer.fragment_tracking)
            dp.set_node_addr(str(node.ip))  # SNAT's source, where SNATed replies return
            dp.set_maglev_seed(t.load_balancer.maglev_hash_seed)
            for f in _frontends(t, node):
                dp.add_service(vip=str(node.ip), port=f.port.node_port,
                               proto="tcp" if f.port.protocol == "TCP" else "udp",
                               dsr=f.forwarding == "dsr", snat=f.forwarding == "snat",
                               local_only=f.local_only, maglev=f.maglev, backends=f.backends)
            return dp

        for node in t.nodes:
            self._futures[node.name] = self._pool.submit(load, node)

    def take(self, node: str) -> DatapathObject:
        return self._futures[node].result()

    def finish(self) -> None:
        """Every object is taken: let the worker threads go."""
        self._pool.shutdown(wait=True)

    def close(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._pool.shutdown(wait=True)
        for dp in self._loaded:
            dp.close()


def _bpf_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class NetnsBackend:
    """Brings a :class:`Topology` up as namespaces (see the module docstring)."""

    name = "netns"

    def __init__(self, *, datapath: bool = True, servers: bool = True,
                 checksum_offload: bool = False) -> None:
        self.with_datapath = datapath
        self.with_servers = servers
        self.checksum_offload = checksum_offload

    def up(self, topology: Topology, *, run_id: str | None = None) -> NetnsLab:
        if topology.load_balancer.dispatch != "opt":
            raise BackendError(
                f"{topology.source or topology.name}: load_balancer.dispatch: the netns "
                f"datapath carries the service in an IPv4 option (opt) only, not "
                f"{topology.load_balancer.dispatch}")
        check_folder(STATE_DIR, "state folder")  # claims and state go there: checked first
        # memory and open files for it, or one line saying what is missing (before anything)
        resources.check(resources.lab_needs(topology, datapath=self.with_datapath,
                                            servers=self.with_servers))
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
        run_id = lab.run_id
        lab._undo.push(f"release the claim on run {run_id}",
                       lambda: nsutil.release_if_done(run_id))
        loads: _DatapathLoads | None = None
        if self.with_datapath:
            with interrupts.deferred():  # started and its undo recorded, or neither
                loads = _DatapathLoads(t, _bpf_workers())
                lab._undo.push("close the datapath objects", loads.close)
        wiring: dict[str, _Wiring] = {}
        layout = _Layout.of(t)
        try:
            self._create_hosts(lab, layout, wiring)
            self._wire_client(lab, wiring)
            if self.with_datapath:
                self._attach_fabric(lab)
            node_routes = {n.name: rtnl.prepare_route(n.pod_cidr, NODE_ETH0_INDEX,
                                                        gateway=n.ip) for n in t.nodes}
            for node in t.nodes:
                self._wire_node(lab, node, layout.pods_by_node[node.name], wiring, node_routes)
            for pod in layout.pods:
                self._wire_pod(lab, pod, layout, wiring[pod.name])
            if loads is not None:
                for node in t.nodes:
                    self._attach_datapath(lab, node, loads.take(node.name))
                loads.finish()
            if self.with_servers:
                self._start_servers(lab, layout.pods, wiring)
        finally:
            for w in wiring.values():
                w.close()

    def _create_hosts(self, lab: NetnsLab, layout: _Layout,
                      wiring: dict[str, _Wiring]) -> None:
        t = lab.topology
        hosts: list[tuple[str, HostKind, IPv4Address, str]] = [
            (t.client.name, "client", t.client.ip, bridge_ifname(t)),
            *((n.name, "node", n.ip, NODE_IFNAME) for n in t.nodes),
            *((p.name, "pod", p.ip, POD_IFNAME) for p in layout.pods),
        ]
        host_sysctls = nsutil.SysctlPlan(HOST_SYSCTLS, optional=OPTIONAL_SYSCTLS)
        node_sysctls = nsutil.SysctlPlan({**HOST_SYSCTLS, **NODE_SYSCTLS},
                                         optional=OPTIONAL_SYSCTLS)
        created: list[str] = []  # removed last-made first, all in one undo step
        lab._undo.push("remove the namespaces", functools.partial(_remove_namespaces, created))
        for name, kind, ip, ifname in hosts:
            ns = names.netns_name(lab.run_id, name)
            sysctls = node_sysctls if kind == "node" else host_sysctls
            want = layout.protos[name] if kind == "pod" and self.with_servers else ()
            with interrupts.deferred():  # made and recorded for the undo, or neither
                w = nsutil.create(ns, functools.partial(_new_host, ns, sysctls, want))
                assert w is not None
                created.append(ns)
                wiring[name] = w
            lab.hosts[name] = LabHost(name=name, kind=kind, ip=ip, ifname=ifname, netns=ns)

    def _wire_client(self, lab: NetnsLab, wiring: dict[str, _Wiring]) -> None:
        t = lab.topology
        mtu = t.network.mtu
        br = bridge_ifname(t)
        rt = wiring[t.client.name].rtnl
        rt.set_up(rtnl.LOOPBACK_INDEX)
        rt.add_bridge(rtnl.LinkSpec(br, BRIDGE_INDEX, mac=names.docker_mac(t.client.ip),
                                      mtu=mtu))
        rt.add_address(BRIDGE_INDEX, t.client.ip, t.network.subnet.prefixlen)
        for i, node in enumerate(t.nodes):
            rt.add_veth(
                rtnl.LinkSpec(f"veth{i}", BRIDGE_INDEX + 1 + i, mtu=mtu, master=BRIDGE_INDEX),
                rtnl.LinkSpec(NODE_IFNAME, NODE_ETH0_INDEX, mac=names.docker_mac(node.ip),
                                mtu=mtu, netns_fd=wiring[node.name].fd))
        if t.client.routes_to_pods:
            rt.set_up(BRIDGE_INDEX)  # (up before its routes; the bring-up sets it up anyway)
            for node in t.nodes:
                rt.add_route(str(node.pod_cidr), BRIDGE_INDEX, gateway=node.ip)
        rt.commit()
        if not self.checksum_offload:
            nsutil.set_tx_checksum_via(rt.sock, br, False, where=lab.netns(t.client.name))

    def _attach_fabric(self, lab: NetnsLab) -> None:
        """The topology's fabric on the bridge ports of the nodes it names (tc ingress
        in the client's namespace: the frames each node sends)."""
        t = lab.topology
        named = set(t.fabric.strip_ip_options) | set(t.fabric.source_dest_check)
        if not named:
            return
        with interrupts.deferred():  # loaded and its close recorded, or neither
            fabric = FabricObject.load()
            lab._undo.push("close the fabric object", fabric.close)
        lab.fabric = fabric
        with nsutil.in_netns(lab.netns(t.client.name)):
            for i, node in enumerate(t.nodes):
                if node.name not in named:
                    continue
                port = BRIDGE_INDEX + 1 + i
                fabric.set_port(FabricPort(
                    port, str(node.ip), str(node.pod_cidr),
                    strip_options=node.name in t.fabric.strip_ip_options,
                    source_dest_check=node.name in t.fabric.source_dest_check))
                fabric.attach(port)

    def _wire_node(self, lab: NetnsLab, node: Node, pods: list[Pod],
                   wiring: dict[str, _Wiring],
                   node_routes: dict[str, rtnl.PreparedRoute]) -> None:
        t = lab.topology
        mtu = t.network.mtu
        rt = wiring[node.name].rtnl
        rt.set_up(rtnl.LOOPBACK_INDEX)
        rt.set_up(NODE_ETH0_INDEX)
        rt.add_address(NODE_ETH0_INDEX, node.ip, t.network.subnet.prefixlen)
        # Cilium's cilium_host/cilium_net veth pair holds the node's router address
        rt.add_veth(rtnl.LinkSpec(ROUTER_IFNAME, ROUTER_INDEX),
                    rtnl.LinkSpec(ROUTER_PEER_IFNAME, ROUTER_INDEX + 1))
        rt.set_up(ROUTER_INDEX + 1)
        rt.add_address(ROUTER_INDEX, node.router_ip, 32)
        # autoDirectNodeRoutes: the other nodes' pod CIDRs via their addresses
        rt.add_routes([r for name, r in node_routes.items() if name != node.name])
        for j, pod in enumerate(pods):
            lxc = LXC_FIRST_INDEX + j
            rt.add_veth(rtnl.LinkSpec(lxc_ifname(pod), lxc, mtu=mtu),
                        rtnl.LinkSpec(POD_IFNAME, POD_ETH0_INDEX, mtu=mtu,
                                        netns_fd=wiring[pod.name].fd))
            rt.add_route(f"{pod.ip}/32", lxc, scope=rtnl.SCOPE_LINK)
        rt.commit()

    def _wire_pod(self, lab: NetnsLab, pod: Pod, layout: _Layout, w: _Wiring) -> None:
        router = layout.routers[pod.node]
        rt = w.rtnl
        rt.set_up(rtnl.LOOPBACK_INDEX)
        rt.set_up(POD_ETH0_INDEX)
        rt.add_address(POD_ETH0_INDEX, pod.ip, 32)
        rt.add_route(f"{router}/32", POD_ETH0_INDEX, scope=rtnl.SCOPE_LINK)
        rt.add_route("0.0.0.0/0", POD_ETH0_INDEX, gateway=router)
        rt.commit()
        if not self.checksum_offload:
            nsutil.set_tx_checksum_via(rt.sock, POD_IFNAME, False, where=lab.netns(pod.name))
        port = layout.ports[pod.name]
        for sock, proto in w.listeners:
            if proto == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(pod.ip), port))
            if proto == "tcp":
                sock.listen(128)

    def _attach_datapath(self, lab: NetnsLab, node: Node, dp: DatapathObject) -> None:
        lab.datapath[node.name] = dp
        with nsutil.in_netns(lab.netns(node.name)):
            dp.attach_tc(NODE_ETH0_INDEX, "ingress", "dsr_from_netdev")
            dp.attach_tc(NODE_ETH0_INDEX, "egress", "dsr_to_netdev")

    def _start_servers(self, lab: NetnsLab, pods: list[Pod],
                       wiring: dict[str, _Wiring]) -> None:
        listeners = [(pod, wiring[pod.name].listeners) for pod in pods]
        if not listeners:
            return
        netns = lab.netns(lab.topology.client.name)
        with interrupts.deferred():  # started and its stop recorded, or neither
            servers = PodServers.start(netns, listeners)
            lab.servers = servers
            lab._undo.push(f"stop the pod server (pid {servers.pid})", servers.stop)
        lab.pids.update({pod.name: servers.pid for pod in pods})


@dataclass(frozen=True)
class _Layout:
    """The topology's look-ups, computed once per bring-up (a 256-node lab has 512 pods)."""

    pods: list[Pod]
    pods_by_node: dict[str, list[Pod]]
    ports: dict[str, int]  # pod -> its workload's port
    routers: dict[str, IPv4Address]  # node -> its router address
    protos: dict[str, tuple[str, ...]]  # pod -> what it serves: tcp (HTTP), udp (echo)

    @classmethod
    def of(cls, t: Topology) -> _Layout:
        pods = t.pods
        by_node: dict[str, list[Pod]] = {n.name: [] for n in t.nodes}
        for p in pods:
            by_node[p.node].append(p)
        ports: dict[str, int] = {}
        protos: dict[str, tuple[str, ...]] = {}
        for w in t.workloads:
            # HTTP over TCP always; a UDP echo too when a UDP service selects the workload
            udp = any(s.selector == w.name and p.protocol == "UDP"
                      for s in t.services for p in s.all_ports)
            for p in w.pods:
                ports[p.name] = w.port
                protos[p.name] = ("tcp", "udp") if udp else ("tcp",)
        return cls(pods, by_node, ports, {n.name: n.router_ip for n in t.nodes}, protos)


@contextlib.contextmanager
def netns_lab(topology: Topology, **kwargs: Any) -> Iterator[NetnsLab]:
    """``with netns_lab(topo) as lab:`` brings the lab up and always down."""
    lab = NetnsBackend(**kwargs).up(topology)
    with lab:
        yield lab


__all__ = ["STATE_DIR", "NetnsBackend", "NetnsLab", "PodServers", "bridge_ifname", "lxc_ifname",
           "netns_lab", "state_path"]
