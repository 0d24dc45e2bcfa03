"""The topology model: hosts, links, pods and services as typed data.

A topology file (YAML) is loaded with :func:`load_topology` into a frozen
:class:`Topology`. Every mistake is reported as a :class:`TopologyError`
that names the file and the field (``topologies/x.yaml: nodes[1].ip: ...``).
The model knows no backend: the netns and kind backends both read it.

``datapath`` is the netns backend's: what its nodes run (``lab``, the lab's
``bpf/dsr.c``, or ``cilium``, Cilium's own programs built from a Cilium
source), unless the command line chooses (``--datapath``). A kind cluster
always runs the Cilium its ``cluster.cilium_version`` installs, whatever it says.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.errors import LabError
from lab.model.errors import FieldProblem, validation_message
from lab.model.yamldoc import MAX_DEPTH, read_yaml, too_deep
from lab.safetext import excerpt

_DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
HostName = Annotated[str, Field(pattern=_DNS_LABEL, max_length=63)]
Port = Annotated[int, Field(ge=1, le=65535)]


class TopologyError(LabError, ValueError):
    """A topology file that cannot be used; the message names file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cluster(_Model):
    """How the cluster is built (what Cilium's Helm values and kind say)."""

    kubernetes_version: str = "v1.23.4"
    cilium_version: str = "1.13.0-rc5"
    kube_proxy: Literal["none", "iptables"] = "none"
    routing: Literal["native", "tunnel"] = "native"  # Helm: routingMode (1.13: tunnel)
    tunnel_protocol: Literal["vxlan", "geneve"] = "vxlan"  # Helm: tunnelProtocol
    auto_direct_node_routes: bool = True
    native_routing_cidr: IPv4Network = IPv4Network("10.0.0.0/8")
    # Helm ipv6NativeRoutingCIDR: the IPv6 pod CIDRs of a dual-stack cluster lie in it
    native_routing_cidr6: IPv6Network | None = None
    # Helm: MTU, the MTU Cilium's datapath works with (the DSR option must fit in it);
    # default: the network's. Lower than the links' MTU, it is what a cloud's smaller
    # path MTU between nodes makes users set.
    mtu: Annotated[int, Field(ge=576, le=9000)] | None = None


class Network(_Model):
    """The L2 segment shared by the client and every node (kind's docker bridge)."""

    name: HostName = "kind"
    subnet: IPv4Network
    # the bridge's IPv6 subnet in a dual-stack lab (kind's: fc00:f853:ccd:e793::/64)
    subnet6: IPv6Network | None = None
    mtu: Annotated[int, Field(ge=576, le=9000)] = 1500


class Client(_Model):
    name: HostName = "client"
    ip: IPv4Address
    ip6: IPv6Address | None = None
    # a route to each node's pod CIDR via that node (as on a host that reaches the pods,
    # `ip route add 10.0.2.0/24 via 172.18.0.4`): a SYN+ACK from a pod's own address,
    # which the client never called, is then answered with a RST, not dropped
    routes_to_pods: bool = False


class Node(_Model):
    name: HostName
    role: Literal["control-plane", "worker"]
    ip: IPv4Address
    pod_cidr: IPv4Network
    ip6: IPv6Address | None = None
    pod_cidr6: IPv6Network | None = None

    @property
    def router_ip(self) -> IPv4Address:
        """The node's own address inside its pod CIDR (Cilium's cilium_host)."""
        return self.pod_cidr.network_address + 1

    @property
    def router_ip6(self) -> IPv6Address | None:
        """The node's own address inside its IPv6 pod CIDR, in a dual-stack lab."""
        return None if self.pod_cidr6 is None else self.pod_cidr6.network_address + 1


class Pod(_Model):
    name: HostName
    node: HostName
    ip: IPv4Address
    ip6: IPv6Address | None = None


class Workload(_Model):
    """A set of pods answering on one port (a DaemonSet or Deployment)."""

    name: HostName
    kind: Literal["DaemonSet", "Deployment"] = "DaemonSet"
    port: Port = 80
    pods: Annotated[list[Pod], Field(min_length=1)]


NodePort = Annotated[int, Field(ge=30000, le=32767)]
Protocol = Literal["TCP", "UDP"]
IPFamily = Literal["IPv4", "IPv6"]


class ServicePort(_Model):
    """One port of a Service: a NodePort and the pods' port it sends to."""

    name: Annotated[str, Field(pattern=_DNS_LABEL, max_length=15)] | None = None
    protocol: Protocol = "TCP"
    node_port: NodePort
    target_port: Port


class Service(_Model):
    """A NodePort Service. One port is written inline (``protocol``, ``node_port``,
    ``target_port``), several as ``ports``; :attr:`all_ports` is the list either way."""

    name: HostName
    type: Literal["NodePort"] = "NodePort"
    selector: HostName
    # Kubernetes' spec.externalTrafficPolicy: Local = only the receiving node's pods
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    # Kubernetes' spec.ipFamilies: a dual-stack service answers at every node's IPv4
    # and IPv6 address on its node ports
    ip_families: Annotated[list[IPFamily], Field(min_length=1, max_length=2)] = ["IPv4"]
    protocol: Protocol = "TCP"
    node_port: NodePort | None = None
    target_port: Port | None = None
    ports: list[ServicePort] = []

    @model_validator(mode="after")
    def _one_form(self) -> Service:
        inline = self.node_port is not None or self.target_port is not None
        if len(set(self.ip_families)) != len(self.ip_families):
            raise FieldProblem([("ip_families", "a family is named twice")])
        if self.ports and inline:
            raise FieldProblem([("ports", "give the ports either inline (node_port, "
                                          "target_port) or as ports, not both")])
        if not self.ports:
            missing = [f for f in ("node_port", "target_port") if getattr(self, f) is None]
            if missing:
                raise FieldProblem([(f, "field required (or give ports)") for f in missing])
        return self

    @property
    def all_ports(self) -> list[ServicePort]:
        if self.ports:
            return list(self.ports)
        assert self.node_port is not None
        assert self.target_port is not None
        return [ServicePort(protocol=self.protocol, node_port=self.node_port,
                            target_port=self.target_port)]

    def port(self, which: str | int | None = None) -> ServicePort:
        """A port by name or node port; the first one when ``which`` is None."""
        for p in self.all_ports:
            if which is None or which in (p.name, p.node_port):
                return p
        known = ", ".join(p.name or str(p.node_port) for p in self.all_ports)
        raise KeyError(f"service {self.name} has no port {excerpt(which)} (ports: {known})")


class Fabric(_Model):
    """What the network between the nodes does to the frames a node sends into it,
    as some clouds' networks do (the lab's bridge plays the fabric)."""

    # nodes whose frames lose every IPv4 option (the DSR option with them)
    strip_ip_options: list[HostName] = []
    # nodes whose frames are dropped unless their source is the node's address or in its
    # pod CIDR (AWS's source/destination check on the node's ENI)
    source_dest_check: list[HostName] = []
    # nodes whose IPv6 frames are dropped when they carry any extension header (many
    # clouds' networks and middleboxes do, RFC 7872/9098): the DSR Destination Options
    # header with them. strip_ip_options is IPv4's: it leaves IPv6 untouched.
    drop_ipv6_ext_headers: list[HostName] = []


# Cilium's Maglev table sizes (maglev.tableSize): primes; 16381 is the default.
MAGLEV_SIZES: tuple[int, ...] = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521,
                                 131071)


class LoadBalancer(_Model):
    """Cilium's ``loadBalancer.*`` (and ``maglev.*``) Helm values.

    ``mode``: snat (replies back through the node the client addressed), dsr
    (the backend answers the client directly) or hybrid (TCP as dsr, UDP as
    snat). ``algorithm``: random, or maglev (a table per service, the backend
    from a hash of the flow, the same at every node).
    """

    mode: Literal["snat", "dsr", "hybrid"] = "dsr"
    algorithm: Literal["random", "maglev"] = "random"
    dispatch: Literal["opt", "ipip", "geneve"] = "opt"
    option_byte_order: Literal["host", "network"] = "host"
    maglev_table_size: int = 16381
    maglev_hash_seed: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 0
    # a packet the DSR option would grow past the MTU: an ICMP fragmentation-needed
    # (MTU - 8) back to the client (Cilium's ENABLE_DSR_ICMP_ERRORS, which its agent
    # sets with --enable-pmtu-discovery, Helm pmtuDiscovery.enabled), or, off as in
    # Cilium by default, a silent drop
    dsr_icmp_errors: bool = False
    # IPv4 fragment tracking (Cilium's enable-ipv4-fragment-tracking, Helm
    # fragmentTracking, on by default): a datagram's later fragments, which carry no
    # ports, are translated with its first; off, they pass untranslated
    fragment_tracking: bool = True

    @model_validator(mode="after")
    def _maglev_size(self) -> LoadBalancer:
        if self.maglev_table_size not in MAGLEV_SIZES:
            raise FieldProblem([("maglev_table_size", f"{self.maglev_table_size} is not one "
                                 f"of Cilium's sizes: {', '.join(map(str, MAGLEV_SIZES))}")])
        return self

    def forwarding(self, protocol: str) -> Literal["dsr", "snat"]:
        """How remote backends get a service port's traffic under this mode."""
        if self.mode == "hybrid":
            return "dsr" if protocol.upper() == "TCP" else "snat"
        return self.mode


class Topology(_Model):
    """A whole lab: the bridge, the client, the nodes, their pods and services."""

    name: HostName
    description: str = ""
    cluster: Cluster = Cluster()
    network: Network
    client: Client
    nodes: Annotated[list[Node], Field(min_length=1)]
    workloads: list[Workload] = []
    services: list[Service] = []
    load_balancer: LoadBalancer = LoadBalancer()
    fabric: Fabric = Fabric()
    # what the netns backend's nodes run: the lab's bpf/dsr.c or Cilium's own programs
    # (--datapath on the command line wins; kind runs real Cilium either way)
    datapath: Literal["lab", "cilium"] = "lab"
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_consistency(self) -> Topology:
        problems = list(_consistency_problems(self))
        if problems:
            raise FieldProblem(problems)
        return self

    @property
    def dual_stack(self) -> bool:
        """Whether the lab gives its hosts IPv6 addresses beside IPv4 ones."""
        return self.network.subnet6 is not None

    @property
    def datapath_mtu(self) -> int:
        """The MTU the DSR option must fit in: Cilium's MTU, else the network's."""
        return self.cluster.mtu or self.network.mtu

    # -- lookups -----------------------------------------------------------
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {excerpt(name)} in topology {self.name}")

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(f"no service named {excerpt(name)} in topology {self.name}")

    def workload(self, name: str) -> Workload:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(f"no workload named {excerpt(name)} in topology {self.name}")

    @property
    def pods(self) -> list[Pod]:
        return [p for w in self.workloads for p in w.pods]

    def pod(self, name: str) -> Pod:
        for p in self.pods:
            if p.name == name:
                return p
        raise KeyError(f"no pod named {excerpt(name)} in topology {self.name}")

    def pods_on(self, node: str) -> list[Pod]:
        return [p for p in self.pods if p.node == node]

    def backends(self, service: str) -> list[Pod]:
        """The pods a service sends to (its selector's workload)."""
        return list(self.workload(self.service(service).selector).pods)

    def backends_from(self, service: str, node: str) -> list[Pod]:
        """The pods ``node`` sends the service's traffic to: all of them, or with
        externalTrafficPolicy=Local only its own."""
        pods = self.backends(service)
        if self.service(service).external_traffic_policy == "Local":
            return [p for p in pods if p.node == node]
        return pods

    def host_names(self) -> list[str]:
        """Every host the lab creates: client, nodes, pods (unique)."""
        return [self.client.name, *(n.name for n in self.nodes), *(p.name for p in self.pods)]


def _dupes(items: list[str]) -> Iterator[tuple[int, str]]:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item in seen:
            yield i, item
        seen.add(item)


def _consistency_problems(t: Topology) -> Iterator[tuple[str, str]]:
    """Cross-field checks pydantic cannot express per field, with their paths."""
    if t.cluster.mtu is not None and t.cluster.mtu > t.network.mtu:
        yield "cluster.mtu", (f"{t.cluster.mtu} is above network.mtu {t.network.mtu}: the "
                              "links would drop what the datapath lets through")
    subnet = t.network.subnet
    yield from _unusable_network("network.subnet", subnet)
    if subnet.prefixlen > 30:
        yield "network.subnet", f"{subnet} has no room for a client and nodes (at most /30)"
    for path, addr in [("client.ip", t.client.ip),
                       *((f"nodes[{i}].ip", n.ip) for i, n in enumerate(t.nodes))]:
        if addr not in subnet:
            yield path, f"{addr} is not in network.subnet {subnet}"
        elif addr in (subnet.network_address, subnet.broadcast_address):
            yield path, f"{addr} is the network or broadcast address of {subnet}"
        else:
            yield from _unusable_address(path, addr)
    for i, n in enumerate(t.nodes):
        yield from _unusable_network(f"nodes[{i}].pod_cidr", n.pod_cidr)
        if n.pod_cidr.overlaps(subnet):
            yield f"nodes[{i}].pod_cidr", f"{n.pod_cidr} overlaps network.subnet {subnet}"
        if n.pod_cidr.prefixlen > 30:
            yield f"nodes[{i}].pod_cidr", f"{n.pod_cidr} is too small for a router and pods"
        if not n.pod_cidr.subnet_of(t.cluster.native_routing_cidr):
            yield (
                f"nodes[{i}].pod_cidr",
                f"{n.pod_cidr} is outside cluster.native_routing_cidr "
                f"{t.cluster.native_routing_cidr}",
            )
        for j in range(i):
            if t.nodes[j].pod_cidr.overlaps(n.pod_cidr):
                yield f"nodes[{i}].pod_cidr", f"{n.pod_cidr} overlaps nodes[{j}].pod_cidr"
    for i, name in _dupes(t.host_names()):
        yield _host_path(t, i), f"host name {excerpt(name)} is used twice"
    ips = [str(t.client.ip), *(str(n.ip) for n in t.nodes)]
    for i, ip in _dupes(ips):
        yield ("client.ip" if i == 0 else f"nodes[{i - 1}].ip"), f"address {ip} is used twice"
    node_names = {n.name for n in t.nodes}
    pod_ips: list[str] = []
    for wi, w in enumerate(t.workloads):
        for pi, p in enumerate(w.pods):
            path = f"workloads[{wi}].pods[{pi}]"
            if p.node not in node_names:
                yield (f"{path}.node",
                       f"no node named {excerpt(p.node)} (nodes: {sorted(node_names)})")
                continue
            node = t.node(p.node)
            bad = list(_unusable_address(f"{path}.ip", p.ip))
            if bad:
                yield from bad
            elif p.ip not in node.pod_cidr:
                yield f"{path}.ip", f"{p.ip} is not in {p.node}'s pod_cidr {node.pod_cidr}"
            elif p.ip in (node.pod_cidr.network_address, node.router_ip,
                          node.pod_cidr.broadcast_address):
                yield f"{path}.ip", f"{p.ip} is reserved in {node.pod_cidr} (network/router)"
            pod_ips.append(str(p.ip))
    for _, ip in _dupes(pod_ips):
        yield "workloads", f"pod address {ip} is used twice"
    for i, _ in _dupes([w.name for w in t.workloads]):
        yield f"workloads[{i}].name", "workload name is used twice"
    workload_names = {w.name for w in t.workloads}
    frontends: list[tuple[str, str]] = []
    for i, s in enumerate(t.services):
        for j, sp in enumerate(s.all_ports):
            path = f"services[{i}].ports[{j}]" if s.ports else f"services[{i}]"
            frontends.append((f"{path}.node_port", f"{sp.node_port}/{sp.protocol}"))
            if s.selector in workload_names and sp.target_port != t.workload(s.selector).port:
                yield (f"{path}.target_port",
                       f"{sp.target_port} but workload {excerpt(s.selector)} listens on "
                       f"{t.workload(s.selector).port}")
        if s.selector not in workload_names:
            yield (f"services[{i}].selector",
                   f"no workload named {excerpt(s.selector)} (workloads: {sorted(workload_names)})")
        for j, _ in _dupes([sp.name or f"#{k}" for k, sp in enumerate(s.all_ports)]):
            yield f"services[{i}].ports[{j}].name", "port name is used twice"
    for i, _ in _dupes([f for _, f in frontends]):
        yield frontends[i][0], "node port is used twice for the same protocol"
    for field_name in ("strip_ip_options", "source_dest_check", "drop_ipv6_ext_headers"):
        for i, name in enumerate(getattr(t.fabric, field_name)):
            if name not in node_names:
                yield (f"fabric.{field_name}[{i}]",
                       f"no node named {excerpt(name)} (nodes: {sorted(node_names)})")
    yield from _ipv6_problems(t)
    yield from _dispatch_problems(t)


def _ipv6_problems(t: Topology) -> Iterator[tuple[str, str]]:
    """A dual-stack lab (``network.subnet6``) gives the client, every node, every pod
    CIDR and every pod an IPv6 address as well; a single-stack one gives none."""
    subnet6 = t.network.subnet6
    if subnet6 is None:
        hosts: list[tuple[str, object]] = [("client.ip6", t.client.ip6)]
        for i, n in enumerate(t.nodes):
            hosts += [(f"nodes[{i}].ip6", n.ip6), (f"nodes[{i}].pod_cidr6", n.pod_cidr6)]
        for wi, w in enumerate(t.workloads):
            hosts += [(f"workloads[{wi}].pods[{pi}].ip6", p.ip6) for pi, p in enumerate(w.pods)]
        for path, value in hosts:
            if value is not None:
                yield path, "an IPv6 address needs network.subnet6 (a dual-stack network)"
        for i, s in enumerate(t.services):
            if "IPv6" in s.ip_families:
                yield (f"services[{i}].ip_families",
                       "IPv6 needs a dual-stack lab (network.subnet6 and IPv6 addresses)")
        return
    if subnet6.prefixlen > 126:
        yield "network.subnet6", f"{subnet6} has no room for a client and nodes (at most /126)"
    if subnet6.network_address.is_multicast or subnet6.network_address.is_loopback or \
            subnet6.network_address.is_link_local or subnet6.network_address.is_unspecified:
        yield "network.subnet6", f"{subnet6} is not a network hosts can be numbered in"
    addrs: list[tuple[str, IPv6Address | None]] = [("client.ip6", t.client.ip6)]
    addrs += [(f"nodes[{i}].ip6", n.ip6) for i, n in enumerate(t.nodes)]
    for path, addr in addrs:
        if addr is None:
            yield path, "field required in a dual-stack lab (network.subnet6 is set)"
        elif addr not in subnet6:
            yield path, f"{addr} is not in network.subnet6 {subnet6}"
        elif addr == subnet6.network_address:
            yield path, f"{addr} is the subnet-router anycast address of {subnet6}"
        else:
            yield from _unusable_address6(path, addr)
    given = [(path, str(addr)) for path, addr in addrs if addr is not None]
    for i, text in _dupes([text for _, text in given]):
        yield given[i][0], f"address {text} is used twice"
    routing6 = t.cluster.native_routing_cidr6
    for i, n in enumerate(t.nodes):
        path = f"nodes[{i}].pod_cidr6"
        cidr = n.pod_cidr6
        if cidr is None:
            yield path, "field required in a dual-stack lab (network.subnet6 is set)"
            continue
        if cidr.overlaps(subnet6):
            yield path, f"{cidr} overlaps network.subnet6 {subnet6}"
        if cidr.prefixlen > 126:
            yield path, f"{cidr} is too small for a router and pods"
        if routing6 is not None and not cidr.subnet_of(routing6):
            yield path, f"{cidr} is outside cluster.native_routing_cidr6 {routing6}"
        for j in range(i):
            other = t.nodes[j].pod_cidr6
            if other is not None and other.overlaps(cidr):
                yield path, f"{cidr} overlaps nodes[{j}].pod_cidr6"
    pod_ips: list[str] = []
    for wi, w in enumerate(t.workloads):
        for pi, p in enumerate(w.pods):
            path = f"workloads[{wi}].pods[{pi}].ip6"
            nodes = [n for n in t.nodes if n.name == p.node]
            if not nodes or nodes[0].pod_cidr6 is None:
                continue
            cidr = nodes[0].pod_cidr6
            if p.ip6 is None:
                yield path, "field required in a dual-stack lab (network.subnet6 is set)"
                continue
            bad = list(_unusable_address6(path, p.ip6))
            if bad:
                yield from bad
            elif p.ip6 not in cidr:
                yield path, f"{p.ip6} is not in {p.node}'s pod_cidr6 {cidr}"
            elif p.ip6 in (cidr.network_address, nodes[0].router_ip6):
                yield path, f"{p.ip6} is reserved in {cidr} (network/router)"
            pod_ips.append(str(p.ip6))
    for _, ip in _dupes(pod_ips):
        yield "workloads", f"pod address {ip} is used twice"


def _unusable_address6(path: str, ip: IPv6Address) -> Iterator[tuple[str, str]]:
    for bad, what in ((ip.is_unspecified, "the unspecified address"),
                      (ip.is_loopback, "the loopback address"),
                      (ip.is_multicast, "a multicast address"),
                      (ip.is_link_local, "a link-local address"),
                      (ip.ipv4_mapped is not None, "an IPv4-mapped address")):
        if bad:
            yield path, f"{ip} is {what}, not usable for a host"
            return


def _dispatch_problems(t: Topology) -> Iterator[tuple[str, str]]:
    """What every Cilium line refuses about DSR dispatch, in its agent's words (the
    rest, which differs by line, is lab/env/kind/agent.py's)."""
    lb = t.load_balancer
    uses_dsr = lb.mode != "snat"
    if uses_dsr and lb.dispatch == "opt" and t.cluster.routing == "tunnel":
        # Cilium's agent refuses this at start-up, in these words (the option cannot ride
        # inside a VXLAN/Geneve packet between nodes; Geneve dispatch can, from 1.14)
        yield ("load_balancer.mode",
               f'Node Port "{lb.mode}" mode cannot be used with tunneling. '
               f"(cluster.routing: tunnel, tunnel_protocol: {t.cluster.tunnel_protocol}; "
               "load_balancer.dispatch: opt)")


def _unusable_address(path: str, ip: IPv4Address) -> Iterator[tuple[str, str]]:
    """An address no host can have: unspecified, loopback, multicast, link-local or
    reserved (240/4, the limited broadcast)."""
    for bad, what in ((ip.is_unspecified, "the unspecified address"),
                      (ip.is_loopback, "a loopback address"),
                      (ip.is_multicast, "a multicast address"),
                      (ip.is_link_local, "a link-local address"),
                      (ip.is_reserved, "a reserved address")):
        if bad:
            yield path, f"{ip} is {what}, not usable for a host"
            return


def _unusable_network(path: str, net: IPv4Network) -> Iterator[tuple[str, str]]:
    """A network whose addresses no host can have (its first one is unusable)."""
    first = net.network_address
    if first in _THIS_NETWORK:
        yield path, f"{net} starts in 0.0.0.0/8, not usable for hosts"
        return
    for bad, what in ((first.is_loopback, "loopback"), (first.is_multicast, "multicast"),
                      (first.is_link_local, "link-local"), (first.is_reserved, "reserved")):
        if bad:
            yield path, f"{net} is a {what} network, not usable for hosts"
            return


_THIS_NETWORK = IPv4Network("0.0.0.0/8")


def _host_path(t: Topology, index: int) -> str:
    if index == 0:
        return "client.name"
    index -= 1
    if index < len(t.nodes):
        return f"nodes[{index}].name"
    index -= len(t.nodes)
    for wi, w in enumerate(t.workloads):
        if index < len(w.pods):
            return f"workloads[{wi}].pods[{index}].name"
        index -= len(w.pods)
    return "workloads"


def parse_topology(data: Any, source: str | Path = "<topology>") -> Topology:
    """Validate already-parsed YAML data; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise TopologyError(f"{source}: (top level): expected a mapping, got {type(data).__name__}")
    if too_deep(data):
        raise TopologyError(f"{source}: nested more than {MAX_DEPTH} levels deep")
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(validation_message(source, exc, Topology)) from None
    return topo.model_copy(update={"source": Path(source)})


def load_topology(path: str | Path, settings: dict[str, Any] | None = None) -> Topology:
    """Load and validate a topology YAML file, with ``settings`` applied first
    (``{"load_balancer.mode": "snat", "services[0].ports[1].node_port": 32001}``,
    as ``helm --set`` does to values; see :func:`apply_settings`)."""
    p = Path(path)
    data = read_yaml(p, TopologyError)
    if settings:
        data = apply_settings(data, settings)
    return parse_topology(data, p)


_SETTING_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def apply_settings(data: Any, settings: dict[str, Any]) -> Any:
    """``data`` (parsed YAML, not changed) with each ``path: value`` of ``settings`` set.

    A path is dotted keys with list indexes (``services[0].external_traffic_policy``);
    a missing key is created, a missing list item or a key into a scalar is a
    ``KeyError`` naming the setting. The result is validated as usual afterwards,
    so a misspelt field is reported by the topology's own checks.
    """
    out = copy.deepcopy(data)
    for path, value in settings.items():
        steps: list[str | int] = []
        for part in path.split("."):
            m = _SETTING_PART.fullmatch(part)
            if not m:
                raise KeyError(f"{path}: {excerpt(part)} is not a field name with optional [index]")
            steps.append(m[1])
            steps += [int(i) for i in re.findall(r"\[(\d+)\]", m[2])]
        target = out
        for depth, step in enumerate(steps[:-1]):
            target = _step_into(target, step, steps[depth + 1], path)
        last = steps[-1]
        if isinstance(last, int):
            if not isinstance(target, list) or last >= len(target):
                raise KeyError(f"{path}: there is no item {last} to set")
            target[last] = value
        elif isinstance(target, dict):
            target[last] = value
        else:
            raise KeyError(f"{path}: {excerpt(last)} is set inside a {type(target).__name__}")
    return out


def _step_into(target: Any, step: str | int, following: str | int, path: str) -> Any:
    if isinstance(step, int):
        if not isinstance(target, list) or step >= len(target):
            raise KeyError(f"{path}: there is no item {step}")
        return target[step]
    if not isinstance(target, dict):
        raise KeyError(f"{path}: {excerpt(step)} is looked up inside a {type(target).__name__}")
    if step not in target:
        if isinstance(following, int):
            raise KeyError(f"{path}: there is no list {excerpt(step)}")
        target[step] = {}
    return target[step]
