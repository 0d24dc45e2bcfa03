"""Which datapath a netns lab runs: ``--datapath`` when given, else the topology's
``datapath:``; a topology's ``cilium`` with no Cilium source is one error naming the
file and the field, before any namespace exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.datapath.cilium.source import ENV_VAR, CiliumSourceError
from lab.env.netns import STATE_DIR, LabDatapaths, NetnsBackend
from lab.env.netns.choice import chosen, node_datapaths, refusal
from lab.model.topology import Topology, load_topology
from tests.seed import SEED_TOPOLOGY_PATH


def on_cilium(tmp_path: Path) -> Topology:
    """The seed's topology, copied with ``datapath: cilium``."""
    data = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
    path = tmp_path / "on-cilium.yaml"
    path.write_text(yaml.safe_dump({**data, "datapath": "cilium"}))
    return load_topology(path)


def test_the_command_line_wins_over_the_topology(tmp_path: Path) -> None:
    topo = on_cilium(tmp_path)
    assert chosen(None, topo) == "cilium"
    assert chosen("lab", topo) == "lab"
    assert chosen("none", topo) == "none"
    assert chosen(None, load_topology(SEED_TOPOLOGY_PATH)) == "lab"
    assert isinstance(node_datapaths("lab", topo), LabDatapaths)
    assert node_datapaths("none", topo) is None
    assert isinstance(node_datapaths(None, load_topology(SEED_TOPOLOGY_PATH)), LabDatapaths)
    assert refusal(LabDatapaths(), topo) is None
    with pytest.raises(ValueError, match="no datapath 'bpf'"):
        chosen("bpf", topo)


def test_a_topology_on_cilium_without_a_source_names_file_and_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    topo = on_cilium(tmp_path)
    with pytest.raises(CiliumSourceError) as info:
        node_datapaths(None, topo)
    assert str(info.value) == (
        f"{topo.source}: datapath: cilium needs a Cilium source: --cilium-src PATH "
        f"(a checkout, its bpf/, or a bpf/ tarball) or {ENV_VAR}")
    with pytest.raises(CiliumSourceError, match=r"^--datapath cilium needs a Cilium source"):
        node_datapaths("cilium", load_topology(SEED_TOPOLOGY_PATH))


def test_the_backend_refuses_it_before_any_namespace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``NetnsBackend()`` (the runner's default) takes the topology's datapath: with no
    source, ``up`` raises the one error and creates nothing."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    run_id = "d9c401"
    with pytest.raises(CiliumSourceError, match=r"on-cilium\.yaml: datapath: cilium needs"):
        NetnsBackend().up(on_cilium(tmp_path), run_id=run_id)
    assert not list(Path("/run/netns").glob(f"dsrlab-{run_id}-*"))
    assert not list(STATE_DIR.glob(f"{run_id}*"))
