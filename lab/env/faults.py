"""Faults on purpose, under traffic: loss or delay on one host's lab interface, that
interface down, a pod's server killed.

:func:`inject` applies one :class:`~lab.model.scenario.Fault` now and returns its
undo (call it once or many times: the first call undoes, the others do nothing).
Every fault is made inside the namespace of a lab host (a node, a pod, the
client), on the interface the lab captures on (``LabHost.ifname``: a node's or
a pod's ``eth0``, the client's bridge); nothing touches the root namespace.

* **loss / delay**: a ``netem`` qdisc at the root of the interface (its egress:
  what the host sends), made with pyroute2's tc in the host's namespace. A
  kernel without ``sch_netem`` (found by trying: the kernel does not know the
  qdisc kind) still gets the loss, from the lab's fabric program
  (``bpf/fabric.c``, ``fabric_on_host`` at tc egress of the same interface, ahead
  of a node's own datapath, a frame lost when ``bpf_get_prandom_u32`` falls
  below the share asked); a delay has no such fallback and raises
  :class:`FaultUnavailable` with the reason :data:`NO_NETEM`.
* **link_down**: the interface set down (the undo sets it up again and puts
  back the routes through it that the kernel flushed: a node's routes to the
  other nodes' pod CIDRs, a pod's default route, in IPv6 too in a dual-stack lab,
  whose addresses stay).
* **kill_pod**: the pod's server stops serving it (the netns backend's one pod
  server process stops that pod: it stops listening and closes its
  connections). There is no undo: the lab cannot bring one pod back.

Whether a fault can be made at all is known before any lab exists:
:func:`check_available` (the runner calls it first) raises the same
:class:`FaultUnavailable` a fault step would, so a scenario this kernel cannot
run is skipped before its lab or its captures start, and leaves nothing.
:func:`netem_available` asks the kernel once per process, on the loopback of a
scratch namespace of its own (``dsrlab-<id>-netemprobe``, removed at once).

The undo returned is an :class:`Applied`; :meth:`Applied.release` instead keeps
the fault and lets go of this process's handles on it (a fault kept for the
rest of a lab's life: the namespaces take it with them on ``down``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# loaded with the module, not on the first fault: a fault lands when it is due
from pyroute2 import IPRoute, NetlinkError

from lab.env.base import Lab, LabHost, StopsPods
from lab.errors import LabError
from lab.model.scenario import Fault
from lab.plumbing import names, nsutil

NO_NETEM = "this kernel has no sch_netem (CONFIG_NET_SCH_NETEM)"
NETEM_HANDLE = 0x10000  # 1:
NUD_PERMANENT = 0x80
IFA_F_TENTATIVE = 0x40
LINK_READY_S = 10.0  # how long a link set up again may take to be usable
RTPROT_KERNEL = 2  # routes the kernel makes itself (an address's subnet) come back alone
MAIN_TABLE = 254
LOOPBACK_INDEX = 1


class FaultError(LabError, RuntimeError):
    """A fault that cannot be applied to this host (no such host, not a pod...)."""


class FaultUnavailable(FaultError):
    """A fault this kernel or backend cannot make; the message is the reason."""


Mechanism = Literal["netem", "fabric", "link", "pod-server"]


def _nothing() -> None:
    return None


@dataclass
class Applied:
    """A fault in place: call it to undo it (once; later calls do nothing)."""

    what: str  # "loss 10% on cilium-dsr-worker eth0 (netem)"
    mechanism: Mechanism
    _undo: Callable[[], None] = field(repr=False)
    _release: Callable[[], None] = field(default=_nothing, repr=False)
    # the fabric program's counters (passed, lost...), while its handles are held
    counters: Callable[[], dict[str, int]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _done: bool = False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            try:
                self._undo()
            finally:
                self._release()

    def release(self) -> None:
        """Keep the fault; close this process's handles on it (it lasts until the lab
        goes down)."""
        with self._lock:
            if self._done:
                return
            self._done = True
            self._release()


def inject(lab: Lab, fault: Fault) -> Applied:
    """Apply ``fault`` now; returns its undo. Raises :class:`FaultUnavailable` when the
    kernel or backend cannot make it, :class:`FaultError` for a host it cannot apply to."""
    host = _host(lab, fault.host)
    if fault.kill_pod:
        return _kill_pod(lab, host)
    if fault.link_down:
        return _link_down(host)
    return _impair(host, loss_percent=fault.loss_percent, delay_ms=fault.delay_ms)


def check_available(faults: Iterable[Fault], backend: str) -> None:
    """Raise :class:`FaultUnavailable` (message: the fault, then the reason) for the first
    of ``faults`` that ``backend`` on this kernel cannot make; before any lab exists."""
    for fault in faults:
        if backend != "netns":
            raise FaultUnavailable(f"{describe(fault)}: faults are made in the lab's "
                                   f"namespaces: the {backend} backend has none")
        if fault.delay_ms and not netem_available():
            raise FaultUnavailable(f"{describe(fault)}: {NO_NETEM}")


@functools.cache
def netem_available() -> bool:
    """True when this kernel makes a ``netem`` qdisc (tried once per process, on the
    loopback of a scratch namespace made for it; never in the root namespace)."""
    return probe_netem(names.new_run_id())


def probe_netem(run_id: str) -> bool:
    """Try a netem qdisc on the loopback of ``dsrlab-<run id>-netemprobe`` (made for it,
    removed again whatever happens)."""
    probe = names.netns_name(run_id, "netemprobe")
    with nsutil.scratch(probe), nsutil.open_iproute(probe) as ipr:
        try:
            ipr.tc("add", "netem", index=LOOPBACK_INDEX, handle=NETEM_HANDLE, delay=1000)
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:  # "Specified qdisc kind is unknown"
                return False
            raise FaultError(f"netem on a scratch namespace's loopback: {exc}") from None
    return True


def describe(fault: Fault) -> str:
    """The fault in words: "10% loss on cilium-dsr-worker", "pod cni-8zxj9 killed"."""
    if fault.link_down:
        return f"{fault.host}'s link down"
    if fault.kill_pod:
        return f"pod {fault.host} killed"
    parts = [f"{fault.loss_percent:g}% loss" if fault.loss_percent else "",
             f"{fault.delay_ms} ms delay" if fault.delay_ms else ""]
    return f"{' and '.join(p for p in parts if p)} on {fault.host}"


def _host(lab: Lab, name: str) -> LabHost:
    if lab.backend != "netns":
        raise FaultUnavailable(f"faults are made in the lab's namespaces: the {lab.backend} "
                               "backend has none")
    try:
        host = lab.hosts[name]
    except KeyError:
        raise FaultError(f"no host {name!r} in lab {lab.run_id} (hosts: "
                         f"{', '.join(sorted(lab.hosts))})") from None
    if not host.netns.startswith("dsrlab-"):  # only ever a namespace the lab made
        raise FaultError(f"host {name} is not in a lab namespace ({host.netns!r})")
    return host


# -- kill_pod ---------------------------------------------------------------------

def _kill_pod(lab: Lab, host: LabHost) -> Applied:
    if host.kind != "pod":
        raise FaultError(f"kill_pod: {host.name} is a {host.kind}, not a pod")
    if not isinstance(lab, StopsPods):
        raise FaultUnavailable(f"the {lab.backend} backend cannot stop one pod's server")
    lab.stop_pod_server(host.name)
    # a stopped pod stays stopped: the pod server cannot start one pod again
    return Applied(f"pod {host.name}'s server killed", "pod-server", _nothing)


# -- link_down ----------------------------------------------------------------------

def _link_down(host: LabHost) -> Applied:
    with nsutil.open_iproute(host.netns) as ipr:
        index = _index(ipr, host)
        kept = _own_routes(ipr, index)
        resolved = _permanent_neighbours(ipr, index)
        ipr.link("set", index=index, state="down")

    def up() -> None:
        with nsutil.open_iproute(host.netns) as ipr:
            ipr.link("set", index=index, state="up")
            for neighbour in resolved:  # flushed with the link, as its routes
                ipr.neigh("replace", **neighbour)
            for route in kept:  # the kernel flushed them with the link
                ipr.route("replace", **route)
            _wait_ready(ipr, index, host)

    return Applied(f"{host.name} {host.ifname} down", "link", up)


def _wait_ready(ipr: IPRoute, index: int, host: LabHost) -> None:
    """Return once the link is operationally up and none of its IPv6 addresses is
    tentative (the kernel readies a link that comes up after its carrier, and an IPv6
    address is not usable, not even answered for, until then); a :class:`FaultError`
    after :data:`LINK_READY_S`."""
    deadline = time.monotonic() + LINK_READY_S
    while True:
        link = ipr.get_links(index)[0]
        tentative = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET6,
                                                                       index=index)
                     if (a.get_attr("IFA_FLAGS") or a["flags"]) & IFA_F_TENTATIVE]
        if link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN") and not tentative:
            return
        if time.monotonic() > deadline:
            raise FaultError(f"{host.name} {host.ifname} is not ready {LINK_READY_S:g} s "
                             f"after it was set up (operstate "
                             f"{link.get_attr('IFLA_OPERSTATE')}, tentative: "
                             f"{', '.join(tentative) or 'none'})")
        time.sleep(0.005)


def _permanent_neighbours(ipr: IPRoute, index: int) -> list[dict[str, Any]]:
    """The neighbours resolved ahead on ``index`` (a pod's IPv6 router, the other
    nodes under Cilium's wiring), as arguments for ``neigh("replace", ...)``."""
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for n in ipr.get_neighbours(family=family, ifindex=index):
            if n["state"] & NUD_PERMANENT and n.get_attr("NDA_LLADDR"):
                out.append({"dst": n.get_attr("NDA_DST"), "lladdr": n.get_attr("NDA_LLADDR"),
                            "ifindex": index, "family": family, "state": NUD_PERMANENT})
    return out


def _own_routes(ipr: IPRoute, index: int) -> list[dict[str, Any]]:
    """The routes of the main table through ``index`` that the kernel will not make
    again by itself, IPv4 and IPv6 (a dual-stack lab's), as arguments for
    ``route("replace", ...)``."""
    out = []
    for family, any_addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for r in ipr.get_routes(family=family, table=MAIN_TABLE):
            if r.get_attr("RTA_OIF") != index or r["proto"] == RTPROT_KERNEL:
                continue
            route: dict[str, Any] = {
                "dst": f"{r.get_attr('RTA_DST') or any_addr}/{r['dst_len']}",
                "family": family, "oif": index, "scope": r["scope"], "proto": r["proto"],
                "table": MAIN_TABLE}
            gateway = r.get_attr("RTA_GATEWAY")
            if gateway:
                route["gateway"] = gateway
            out.append(route)
    # a gateway needs its own route first (a pod's default route via its router's /32)
    return sorted(out, key=lambda r: "gateway" in r)


# -- loss and delay -----------------------------------------------------------------

def _impair(host: LabHost, *, loss_percent: float | None, delay_ms: int | None) -> Applied:
    try:
        return _netem(host, loss_percent=loss_percent, delay_ms=delay_ms)
    except FaultUnavailable:
        if delay_ms:
            raise  # no other way to hold frames back here
        assert loss_percent is not None
        return _fabric_loss(host, loss_percent)


def _netem(host: LabHost, *, loss_percent: float | None, delay_ms: int | None) -> Applied:
    parts = [f"loss {loss_percent:g}%" if loss_percent else "",
             f"delay {delay_ms} ms" if delay_ms else ""]
    what = f"{' and '.join(p for p in parts if p)} on {host.name} {host.ifname} (netem)"
    with nsutil.open_iproute(host.netns) as ipr:
        index = _index(ipr, host)
        try:
            ipr.tc("add", "netem", index=index, handle=NETEM_HANDLE,
                   delay=(delay_ms or 0) * 1000, loss=loss_percent or 0)
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:  # "Specified qdisc kind is unknown"
                raise FaultUnavailable(NO_NETEM) from None
            if exc.code == errno.EEXIST:
                raise FaultError(f"{host.name} {host.ifname} has a root qdisc already "
                                 f"(another fault?): {exc}") from None
            raise FaultError(f"netem on {host.name} {host.ifname}: {exc}") from None

    def remove() -> None:
        with nsutil.open_iproute(host.netns) as ipr, contextlib.suppress(NetlinkError):
            ipr.tc("del", index=index, handle=NETEM_HANDLE, root=True)

    return Applied(what, "netem", remove)


def _fabric_loss(host: LabHost, loss_percent: float) -> Applied:
    """The fabric program at tc egress of the host's interface, losing ``loss_percent``.

    One fabric object per fault: its ports are keyed by interface index, and
    indices are per namespace (every node's and pod's eth0 is the same index).
    """
    from lab.datapath.fabric import FabricObject, FabricPort  # noqa: PLC0415

    fabric = FabricObject.load()
    try:
        with nsutil.in_netns(host.netns):
            index = socket.if_nametoindex(host.ifname)
            fabric.set_port(FabricPort(index, str(host.ip), loss_percent=loss_percent))
            attachment = fabric.attach_on_host(index, "egress")
    except BaseException:
        fabric.close()
        raise

    def detach() -> None:
        with nsutil.in_netns(host.netns):
            attachment.detach()

    return Applied(f"loss {loss_percent:g}% on {host.name} {host.ifname} (the lab's fabric "
                   f"program at tc egress: {NO_NETEM})", "fabric", detach, fabric.close,
                   counters=fabric.counters)


# -- helpers ----------------------------------------------------------------------

def _index(ipr: IPRoute, host: LabHost) -> int:
    found = ipr.link_lookup(ifname=host.ifname)
    if not found:
        raise FaultError(f"{host.name} has no interface {host.ifname}")
    return int(found[0])


__all__ = ["NO_NETEM", "Applied", "FaultError", "FaultUnavailable", "Mechanism",
           "check_available", "describe", "inject", "netem_available", "probe_netem"]
