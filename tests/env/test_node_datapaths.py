"""The netns backend's datapath contract: another NodeDatapaths is started,
attached per node inside its namespace, and closed with the lab (or with a
failed start)."""

from __future__ import annotations

import pytest

from lab.capture.manifest import ManifestDatapath
from lab.datapath import DatapathObject
from lab.env.base import BackendError
from lab.env.netns import LabDatapaths, NetnsBackend, NodeDatapaths
from lab.env.netns.choice import node_datapaths
from lab.model.topology import Node, Topology
from lab.plumbing import nsutil

pytestmark = pytest.mark.netns


class _Recording:
    """A datapath that loads nothing and records what the backend asked of it."""

    agent_wiring = False

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def start(self, topology: Topology) -> NodeDatapaths:
        self.calls.append(f"start {topology.name}")
        return self

    def attach(self, node: Node, netns: str) -> DatapathObject | None:
        assert nsutil.exists(netns)  # wired before it is attached
        self.calls.append(f"attach {node.name}")
        if node.name == self.fail_on:
            raise BackendError(f"cannot attach to {node.name}")
        return None

    def detach(self, node: Node, netns: str) -> None:
        assert nsutil.exists(netns)  # before the namespace goes
        self.calls.append(f"detach {node.name}")

    def keep_fds(self) -> list[int]:
        return []

    def describe(self) -> dict[str, str]:
        return {"name": "recording"}

    def close(self) -> None:
        self.calls.append("close")


def test_another_datapath_is_started_attached_per_node_and_closed(
        seed_topology: Topology) -> None:
    rec = _Recording()
    with NetnsBackend(datapaths=rec, servers=False).up(seed_topology) as lab:
        assert lab.datapaths is rec
        assert lab.datapath == {}  # it exposed no dsr.c objects
        assert rec.calls == [f"start {seed_topology.name}",
                             *(f"attach {n.name}" for n in seed_topology.nodes)]
    # each node's taken off its links while its namespace lives, last first; then close
    assert rec.calls[-len(seed_topology.nodes) - 1:] == [
        *(f"detach {n.name}" for n in reversed(seed_topology.nodes)), "close"]


def test_a_failed_attach_closes_the_datapath_and_removes_the_namespaces(
        seed_topology: Topology) -> None:
    rec = _Recording(fail_on=seed_topology.nodes[-1].name)
    with pytest.raises(BackendError, match="cannot attach"):
        NetnsBackend(datapaths=rec, servers=False).up(seed_topology, run_id="5b1a18")
    assert rec.calls[-1] == "close"
    assert f"detach {seed_topology.nodes[-1].name}" in rec.calls  # attached or half so
    assert not [ns for ns in nsutil.list_netns() if "5b1a18" in ns]


def test_datapath_true_means_the_topologys_and_false_none(seed_topology: Topology) -> None:
    assert NetnsBackend().datapaths is None  # chosen at up(): the topology's datapath:
    assert seed_topology.datapath == "lab"
    assert isinstance(node_datapaths(None, seed_topology), LabDatapaths)
    assert NetnsBackend(datapath=False).datapaths is None
    assert LabDatapaths().describe() == {"name": "lab"}
    assert ManifestDatapath(**LabDatapaths().describe()).name == "lab"
    assert LabDatapaths().keep_fds() == []
