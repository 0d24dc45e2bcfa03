"""What Cilium's agent refuses at start-up, per chart line, checked on the Helm values
the plan emits, before anything runs.

A refused setting does not fail ``helm install``: the agent exits at start-up and
the run only sees ``rollout status ds/cilium`` time out minutes later. So the plan
reads its own values back the way the agent of that line reads its flags
(:func:`agent_config`: ``tunnel``/``routingMode``/``tunnelProtocol``,
``kubeProxyReplacement``, ``loadBalancer.*``, ``installNoConntrackIptablesRules``)
and holds them to :data:`RULES`, one table for every line, each refusal in the
agent's own words (the messages of ``daemon/cmd/kube_proxy_replacement.go`` and
``daemon/cmd/daemon_main.go`` at v1.13.0, v1.14.0, v1.15.0 and v1.16.0), with the
topology field to change and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Line = tuple[int, int]
NO_CONNTRACK = "install-no-conntrack-iptables-rules"


@dataclass(frozen=True)
class AgentConfig:
    """The settings the agent's start-up checks read, as that line's agent sees them."""

    line: Line
    kube_proxy_replacement: str  # as given: strict/disabled (1.13), true/false (1.14+)
    tunnel: bool  # routing mode tunnel
    protocol: str  # the tunnel protocol the agent takes (vxlan unless set)
    mode: str  # loadBalancer.mode: snat, dsr, hybrid
    dispatch: str  # loadBalancer.dsrDispatch: opt, ipip, geneve
    no_conntrack: bool  # installNoConntrackIptablesRules
    bpf_masquerade: bool
    ipv6: bool = False  # ipv6.enabled
    ipv6_masquerade: bool = True  # enableIPv6Masquerade (the chart's default: on)
    ipv6_native_cidr: bool = False  # ipv6NativeRoutingCIDR given

    @property
    def replaces_kube_proxy(self) -> bool:
        return self.kube_proxy_replacement in ("strict", "true")

    @property
    def node_port(self) -> bool:
        """Cilium's own NodePort: on with the full replacement (the plan sets no
        nodePort.enabled), and only then are the load-balancer settings checked."""
        return self.replaces_kube_proxy

    @property
    def uses_dsr(self) -> bool:
        return self.mode in ("dsr", "hybrid")


def agent_config(line: Line, values: dict[str, Any]) -> AgentConfig:
    """The values as the agent of ``line`` gets them from the chart's ConfigMap."""
    if line == (1, 13):  # one key: disabled (native), vxlan or geneve; the chart's default
        tunnel_value = str(values.get("tunnel", "vxlan"))
        tunnel, protocol = tunnel_value != "disabled", tunnel_value
        if not tunnel:
            protocol = "vxlan"
    else:  # routingMode (the chart's default: tunnel) and tunnelProtocol (vxlan)
        tunnel = values.get("routingMode", "tunnel") != "native"
        protocol = str(values.get("tunnelProtocol", "vxlan"))
    return AgentConfig(
        line=line, kube_proxy_replacement=str(values.get("kubeProxyReplacement", "")),
        tunnel=tunnel, protocol=protocol, mode=str(values.get("loadBalancer.mode", "snat")),
        dispatch=str(values.get("loadBalancer.dsrDispatch", "opt")),
        no_conntrack=values.get("installNoConntrackIptablesRules") is True,
        bpf_masquerade=values.get("bpf.masquerade") is True,
        ipv6=values.get("ipv6.enabled") is True,
        ipv6_masquerade=values.get("enableIPv6Masquerade", True) is not False,
        ipv6_native_cidr=bool(values.get("ipv6NativeRoutingCIDR")))


@dataclass(frozen=True)
class Rule:
    """One start-up check of the agent: the lines that have it, when it refuses, its
    words, and the topology field to change."""

    lines: tuple[Line, Line]  # first and last line with this check
    refuses: Callable[[AgentConfig], bool]
    words: Callable[[AgentConfig], str]
    field: str
    why: str

    def applies(self, line: Line) -> bool:
        return self.lines[0] <= line <= self.lines[1]


ALL: tuple[Line, Line] = ((1, 13), (1, 16))
# the dispatch modes the agent takes for each mode that uses DSR
DISPATCHES: dict[Line, dict[str, tuple[str, ...]]] = {
    (1, 13): {"dsr": ("opt", "ipip"), "hybrid": ("opt",)},
    (1, 14): {"dsr": ("opt", "ipip", "geneve"), "hybrid": ("opt", "geneve")},
}


def _dispatches(c: AgentConfig) -> tuple[str, ...]:
    table = DISPATCHES[(1, 13)] if c.line == (1, 13) else DISPATCHES[(1, 14)]
    return table.get(c.mode, (c.dispatch,))


def _v6_cidr_words(c: AgentConfig) -> str:
    """pkg/option's checkIPv6NativeRoutingCIDR, as each line words it."""
    head = "native routing cidr must be configured with option --ipv6-native-routing-cidr "
    if c.line == (1, 13):
        return head + ("in combination with --enable-ipv6-masquerade --tunnel=disabled "
                       "--enable-ipv6=true")
    if c.line == (1, 14):
        return head + ("in combination with --enable-ipv6-masquerade --routing-mode=native "
                       "--enable-ipv6=true")
    return head + ("in combination with --enable-ipv6=true --enable-ipv6-masquerade=true "
                   "--enable-ip-masq-agent=false --routing-mode=native")


def _kpr_full_value(c: AgentConfig) -> str:
    return "strict" if c.line == (1, 13) else "true"


RULES: tuple[Rule, ...] = (
    Rule(ALL, lambda c: c.node_port and c.dispatch not in _dispatches(c),
         lambda c: f"Invalid value for --bpf-lb-dsr-dispatch: {c.dispatch}",
         "load_balancer.dispatch",
         "dsr takes opt or ipip, hybrid opt only, and from 1.14 both take geneve too"),
    Rule(((1, 13), (1, 13)), lambda c: c.node_port and c.tunnel and c.mode != "snat",
         lambda c: f'Node Port "{c.mode}" mode cannot be used with tunneling.',
         "cluster.routing", "1.13 does DSR and hybrid with native routing only"),
    Rule(((1, 14), (1, 16)),
         lambda c: c.node_port and c.tunnel and c.protocol == "vxlan" and c.uses_dsr,
         lambda c: f'Node Port "{c.mode}" mode cannot be used with vxlan tunneling.',
         "cluster.tunnel_protocol", "DSR across a tunnel needs Geneve"),
    Rule(((1, 14), (1, 14)),
         lambda c: (c.node_port and c.tunnel and c.protocol == "geneve" and c.uses_dsr
                    and c.dispatch != "geneve"),
         lambda c: (f'Node Port "{c.mode}" mode with {c.dispatch} dispatch cannot be used '
                    "with geneve tunneling."),
         "load_balancer.dispatch", "across a Geneve tunnel DSR needs Geneve dispatch"),
    Rule(((1, 15), (1, 16)),
         lambda c: c.node_port and c.tunnel and c.uses_dsr and c.dispatch != "geneve",
         lambda c: f'Tunnel routing with Node Port "{c.mode}" mode requires geneve dispatch.',
         "load_balancer.dispatch", "across a tunnel DSR needs Geneve dispatch"),
    Rule(((1, 15), (1, 16)),
         lambda c: (c.node_port and c.uses_dsr and c.dispatch == "geneve"
                    and c.protocol != "geneve"),
         lambda c: (f'Node Port "{c.mode}" mode with {c.dispatch} dispatch requires geneve '
                    "tunnel protocol."),
         "cluster.tunnel_protocol",
         "Geneve dispatch takes the tunnel protocol, native routing or not (default vxlan)"),
    Rule(ALL, lambda c: c.node_port and c.mode == "dsr" and c.dispatch == "ipip",
         lambda c: "DSR dispatch mode ipip only supported for --datapath-mode=lb-only",
         "load_balancer.dispatch",
         "IPIP dispatch is for Cilium's standalone load balancer, not a cluster's agent"),
    Rule(ALL, lambda c: c.no_conntrack and c.tunnel,
         lambda c: f"{NO_CONNTRACK} requires the agent to run in direct routing mode.",
         "cluster.routing", "the lab sets it with native routing only"),
    # 1.13's agent returns before this check with kube-proxy-replacement=disabled
    Rule(ALL, lambda c: (c.no_conntrack and not c.replaces_kube_proxy
                         and not (c.line == (1, 13) and c.kube_proxy_replacement == "disabled")),
         lambda c: (f"{NO_CONNTRACK} requires the agent to run with "
                    f"kube-proxy-replacement={_kpr_full_value(c)}."),
         "cluster.kube_proxy", "the lab sets it with kube-proxy replaced only"),
    Rule(ALL, lambda c: c.no_conntrack and c.replaces_kube_proxy and not c.bpf_masquerade,
         lambda c: f"{NO_CONNTRACK} requires the agent to run with enable-bpf-masquerade.",
         "bpf.masquerade", "the lab always sets bpf.masquerade=true"),
    # IPv6 (a dual-stack topology): daemon_main.go and pkg/option's config checks
    Rule(((1, 13), (1, 13)), lambda c: c.ipv6 and c.ipv6_masquerade and c.bpf_masquerade,
         lambda c: "BPF masquerade is not supported for IPv6.",
         "network.subnet6", "1.13 masquerades IPv6 with iptables only (the plan turns "
         "enableIPv6Masquerade off)"),
    Rule(ALL, lambda c: (c.ipv6 and c.ipv6_masquerade and not c.tunnel
                         and not c.ipv6_native_cidr),
         _v6_cidr_words, "cluster.native_routing_cidr6",
         "native routing with IPv6 masquerade needs the IPv6 native routing CIDR"),
)


@dataclass(frozen=True)
class Refusal:
    words: str  # the agent's own
    field: str  # the topology's field to change
    why: str

    def __str__(self) -> str:
        return f'{self.field}: the agent refuses this at start-up: "{self.words}" ({self.why})'


def refusals(line: Line, values: dict[str, Any]) -> list[Refusal]:
    """Every check of ``line``'s agent that ``values`` fail (empty: it starts)."""
    c = agent_config(line, values)
    return [Refusal(r.words(c), r.field, r.why) for r in RULES
            if r.applies(line) and r.refuses(c)]
