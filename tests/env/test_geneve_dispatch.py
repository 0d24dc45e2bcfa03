"""Geneve dispatch on the netns backend: which datapath may carry it, and the
seed-geneve topology brought up live (the SYN in Geneve on the wire, the
reply straight from the service address)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.capture.live import CapturePoint, CaptureSet
from lab.capture.manifest import Manifest, ManifestClient, ManifestService
from lab.datapath import tunnel
from lab.env.netns import NetnsBackend, NetnsLab
from lab.env.netns import geneve as netns_geneve
from lab.env.netns.datapath import LabDatapaths
from lab.env.traffic import curl_until
from lab.model.topology import load_topology
from lab.pytest_plugin import require_root
from tests.seed import REPO

GENEVE_TOPOLOGY = REPO / "topologies" / "seed-geneve.yaml"


def _topology(**lb: str):  # type: ignore[no-untyped-def]
    t = load_topology(GENEVE_TOPOLOGY)
    return t.model_copy(update={"load_balancer": t.load_balancer.model_copy(update=lb)})


def test_lab_datapath_takes_geneve_dispatch() -> None:
    assert netns_geneve.refusal(_topology(), LabDatapaths()) is None


def test_no_datapath_has_nothing_to_refuse() -> None:
    assert netns_geneve.refusal(_topology(dispatch="ipip"), None) is None


def test_ipip_dispatch_is_refused_in_one_line() -> None:
    msg = netns_geneve.refusal(_topology(dispatch="ipip"), LabDatapaths())
    assert msg is not None
    assert "not ipip" in msg
    assert "\n" not in msg


@pytest.mark.netns
def test_cilium_datapath_is_refused_when_the_kernel_has_no_geneve() -> None:
    """Found out by making a Geneve device in a scratch namespace, not by version."""
    require_root()

    class OtherDatapath:  # any datapath but the lab's goes through a kernel device
        agent_wiring = True

    problem = netns_geneve.kernel_geneve_problem()
    msg = netns_geneve.refusal(_topology(), OtherDatapath())  # type: ignore[arg-type]
    if problem is None:
        assert msg is None
    else:
        assert msg is not None
        assert "needs a kernel Geneve device, and this kernel has none" in msg
        assert problem in msg
        assert "\n" not in msg


# --- live ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def geneve_lab() -> Iterator[NetnsLab]:
    require_root()
    with NetnsBackend().up(load_topology(GENEVE_TOPOLOGY)) as lab:
        yield lab


def _tshark(path: Path, *fields: str, where: str) -> list[list[str]]:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", where, "-T", "fields",
         *[a for f in fields for a in ("-e", f)]],
        capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line]


@pytest.mark.netns
@pytest.mark.bpf
def test_seed_geneve_live(geneve_lab: NetnsLab, tmp_path: Path) -> None:
    t = geneve_lab.topology
    lb = t.node("cilium-dsr-control-plane")
    pods = {p.name for p in t.backends("serversvc")}
    remote = [p for p in t.backends("serversvc") if p.node != lb.name]
    points = [CapturePoint(n.name, "eth0", "lb-node" if n.name == lb.name else "backend-node")
              for n in t.nodes]
    manifest = Manifest(scenario="geneve", run_id="abc123", backend="netns", topology=t.name,
                        service=ManifestService(ip=str(lb.ip), port=32000, name="serversvc"),
                        client=ManifestClient(ip=str(t.client.ip)), option_byte_order="host",
                        backends=[])
    # tcpdump at each node's eth0 (listening before the traffic, drained after it)
    with CaptureSet(geneve_lab, tmp_path / "caps", points, manifest) as cs:
        exchanges = curl_until(geneve_lab, t.client.name, f"http://{lb.ip}:32000/",
                               want_pods=pods, min_requests=2, max_requests=40)
    caps = {c.point.host: tmp_path / "caps" / c.point.filename for c in cs.captures}
    assert all(ex.ok for ex in exchanges), [ex.error for ex in exchanges if not ex.ok]
    assert {ex.pod for ex in exchanges} == pods

    lb_counters = geneve_lab.datapath[lb.name].counters()
    assert lb_counters["geneve_encap"] >= len(exchanges), lb_counters
    assert tunnel.routes(geneve_lab.datapath[lb.name]) == {
        str(n.pod_cidr): str(n.ip) for n in t.nodes if n.name != lb.name}
    for pod in remote:
        node = t.node(pod.node)
        assert geneve_lab.datapath[node.name].counters()["geneve_learned"] >= 1
        # the SYN leaves the LB node in Geneve, TLV = the service, to the pod's node
        syns = _tshark(caps[lb.name], "ip.src", "ip.dst", "geneve.vni", "geneve.option.class",
                       "geneve.option.type", where=f"geneve && tcp.flags.syn == 1 "
                       f"&& ip.dst == {pod.ip}")
        assert syns, f"no Geneve SYN to {pod.ip} on the LB node"
        src, dst, vni, cls, typ = syns[0]
        assert src.split(",") == [str(lb.ip), str(t.client.ip)]
        assert dst.split(",") == [str(node.ip), str(pod.ip)]
        assert (int(vni, 0), int(cls, 0), int(typ, 0)) == (2, 0x014B, 0x81)
        # ... arrives so at the pod's node, whose SYN+ACK leaves from the service, bare
        assert _tshark(caps[node.name], "ip.src", where=f"geneve && ip.dst == {pod.ip}")
        replies = _tshark(caps[node.name], "ip.src", "tcp.srcport",
                          where=f"tcp.flags.syn == 1 && tcp.flags.ack == 1 "
                          f"&& ip.dst == {t.client.ip}")
        assert replies
        assert all(r == [str(lb.ip), "32000"] for r in replies), replies
        assert not _tshark(caps[node.name], "ip.src", where=f"geneve && ip.dst == {t.client.ip}")
    # the LB node never sees a reply to the client (it has no pod of its own)
    assert not _tshark(caps[lb.name], "ip.src", where=f"tcp && ip.dst == {t.client.ip}")
