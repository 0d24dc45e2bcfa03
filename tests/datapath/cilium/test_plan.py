"""What the lab programs on Cilium's datapath, and what it refuses with the version
and the reason (before anything is built or started)."""

from __future__ import annotations

import pytest

from lab.datapath.cilium.config import layout_for, node_config
from lab.datapath.cilium.plan import UnsupportedByCilium, check_supported, lb_params, plan_node
from lab.datapath.cilium.source import CiliumVersion
from lab.model.topology import Topology
from tests.seed import LB_NAME, POD_NODE, TOPOLOGY

V113, V116 = CiliumVersion.parse("v1.13.0"), CiliumVersion.parse("v1.16.0")


def _with(**lb: object) -> Topology:
    return TOPOLOGY.model_copy(update={
        "load_balancer": TOPOLOGY.load_balancer.model_copy(update=lb)})


def _etp_local() -> Topology:
    services = [s.model_copy(update={"external_traffic_policy": "Local"})
                for s in TOPOLOGY.services]
    return TOPOLOGY.model_copy(update={"services": services})


@pytest.mark.parametrize(("topology", "version", "reason"), [
    (_with(option_byte_order="network"), V116,
     "Cilium v1.16.0: option_byte_order=network is the lab's own variant; Cilium writes "
     "the option in host order"),
    (_with(dispatch="ipip"), V113,
     "Cilium v1.13.0: loadBalancer.dsrDispatch=ipip is for Cilium's standalone load "
     "balancer (XDP), not a cluster node"),
    (_with(dispatch="geneve"), V113,
     "Cilium v1.13.0: loadBalancer.dsrDispatch=geneve needs Cilium 1.14 or later"),
])
def test_what_cilium_cannot_run_is_refused_with_the_reason(
        topology: Topology, version: CiliumVersion, reason: str) -> None:
    with pytest.raises(UnsupportedByCilium) as info:
        check_supported(topology, version)
    assert str(info.value) == reason


@pytest.mark.parametrize("version", [V113, V116], ids=str)
def test_external_traffic_policy_local_is_programmed_as_the_agent_does(
        version: CiliumVersion) -> None:
    """Two scopes: from outside the cluster the node's own backends only (none on the
    LB node of the seed, one on a worker), from inside every backend."""
    t = _etp_local()
    check_supported(t, version)  # no refusal
    (lb_frontend, *_) = plan_node(t, LB_NAME).frontends
    assert lb_frontend.local_backends == []
    assert len(lb_frontend.backends) == 2
    (worker_frontend, *_) = plan_node(t, POD_NODE).frontends
    assert worker_frontend.local_backends is not None
    assert len(worker_frontend.local_backends) == 1
    (cluster_frontend, *_) = plan_node(TOPOLOGY, LB_NAME).frontends
    assert cluster_frontend.local_backends is None


@pytest.mark.parametrize("version", [V113, V116], ids=str)
@pytest.mark.parametrize(("mode", "icmp_errors", "defined"), [
    ("dsr", True, True), ("dsr", False, False), ("hybrid", True, True),
    ("snat", True, False),  # the agent sets it with DSR only
])
def test_dsr_icmp_errors_are_compiled_in_as_the_agent_does(
        version: CiliumVersion, mode: str, icmp_errors: bool, defined: bool) -> None:
    """ENABLE_DSR_ICMP_ERRORS only with DSR and the agent's --enable-pmtu-discovery
    (the topology's load_balancer.dsr_icmp_errors, off by default as in Cilium)."""
    t = _with(mode=mode, dsr_icmp_errors=icmp_errors)
    plan = plan_node(t, LB_NAME)
    header = node_config(plan.node, lb_params(t), layout_for(version))
    assert ("#define ENABLE_DSR_ICMP_ERRORS 1" in header) is defined
    assert not TOPOLOGY.load_balancer.dsr_icmp_errors  # Cilium's default: off
