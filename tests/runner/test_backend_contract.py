"""The scenario runner uses a backend only through the contract of lab.env.base.

A proxy backend hands the runner a lab that has the contract's members and
nothing else (anything more raises AttributeError) and records each call;
the seed scenario passes through it, so a runner that reached past the
contract (a netns-only method, say) would fail here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest

from lab.capture.capdir import CaptureDir
from lab.env import Lab, LabHost, get_backend
from lab.env.base import LeftBy
from lab.env.netns import NetnsLab
from lab.model.topology import Topology
from lab.pytest_plugin import require_cmd, require_root
from lab.runner.scenario import run_scenario


class ContractLab:
    """Only the members of :class:`lab.env.base.Lab`, forwarded and recorded."""

    __slots__ = ("_inner", "backend", "calls", "hosts", "run_id", "topology")

    def __init__(self, inner: NetnsLab) -> None:
        self._inner = inner
        self.backend = inner.backend
        self.run_id = inner.run_id
        self.topology = inner.topology
        self.hosts: dict[str, LabHost] = inner.hosts
        self.calls: list[str] = []

    def run(self, host: str, argv: list[str], *, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(f"run {host} {argv[0]}")
        return self._inner.run(host, argv, timeout=timeout, check=check)

    def start(self, host: str, argv: list[str], *, stdout: IO[bytes] | int,
              stderr: int) -> subprocess.Popen[bytes]:
        self.calls.append(f"start {host} {argv[0]}")
        return self._inner.start(host, argv, stdout=stdout, stderr=stderr)

    def datapath_record(self) -> dict[str, str]:
        self.calls.append("datapath_record")
        return self._inner.datapath_record()

    def wait_serving(self, timeout: float = 60.0) -> None:
        self.calls.append("wait_serving")
        self._inner.wait_serving(timeout)

    def down(self) -> None:
        self.calls.append("down")
        self._inner.down()

    def detach(self, *, by: LeftBy = "up") -> Path:
        self.calls.append("detach")
        return self._inner.detach(by=by)

    def __enter__(self) -> ContractLab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.calls.append("exit")
        self._inner.__exit__(exc_type, exc, tb)


class ContractBackend:
    name = "netns"

    def __init__(self) -> None:
        self.labs: list[ContractLab] = []

    def up(self, topology: Topology, *, run_id: str | None = None) -> Lab:
        inner = get_backend("netns").up(topology, run_id=run_id)
        assert isinstance(inner, NetnsLab)
        lab = ContractLab(inner)
        self.labs.append(lab)
        return lab


def test_the_proxy_is_a_lab_and_has_nothing_more() -> None:
    members = {m for m in ContractLab.__slots__ if not m.startswith("_")} - {"calls"}
    assert members == {"backend", "hosts", "run_id", "topology"}
    assert not hasattr(ContractLab, "exec_argv")


def test_seed_scenario_runs_through_the_contract(tmp_path: Path) -> None:
    require_root()
    require_cmd("tcpdump", "curl", "clang")
    backend = ContractBackend()
    run = run_scenario("seed", captures_root=tmp_path, backend=backend)
    assert run.passed, run.result.summary() if run.result else "no result"
    (lab,) = backend.labs
    assert isinstance(lab, Lab)
    starts = [c for c in lab.calls if c.startswith("start ")]
    captures = [c for c in starts if c.endswith(" tcpdump")]
    # each request is started, and watched while it runs (lab.runner.steps.doom)
    requests = [c for c in starts if c == "start client curl"]
    hops = CaptureDir.load(run.capture_dir).points
    assert len(captures) == len(hops) == len(list(run.capture_dir.glob("*.pcap")))  # one a hop
    assert requests
    assert len(requests) == len(run.exchanges)
    assert sorted(starts) == sorted(captures + requests)
    assert not [c for c in lab.calls if c.startswith("run ")]
    assert lab.calls[-1] == "down"


def test_an_unknown_backend_is_a_clear_error() -> None:
    from lab.env import BackendError  # noqa: PLC0415

    with pytest.raises(BackendError, match=r"no backend 'docker' \(known: netns, kind\)"):
        get_backend("docker")
