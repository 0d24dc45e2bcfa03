"""dsrlab's pytest plugin: scenario items, options, markers, skip helpers, fixtures.

Registered through the ``pytest11`` entry point ``dsrlab``; the library
(``lab``) never imports pytest, everything pytest-specific lives here.

Scenarios: every ``scenarios/<name>.yaml`` with its ``<name>.trace.yaml`` is
one test item. It runs the scenario on the chosen backend (real lab, real
traffic, captures at every hop), checks the trace, and on failure shows
each missed expectation with the closest packet and a per-field diff.
Items carry markers: the backend (``netns``/``kind``), the load-balancer
mode (``dsr``/``snat``/``hybrid``) and ``kernel(min)``. Every ``bpf`` item
(scenarios included) is skipped with the datapath's own reason when the
kernel is older than the minimum ``bpf/dsr.h`` states. Collecting zero
scenarios from a scenarios directory is an error, not a silent pass.

Captures: a test session writes its capture sets under pytest's own
temporary directory (``<basetemp>/dsrlab-captures/<scenario>/<run-id>``,
kept for pytest's last few sessions and shown on failure), never into the
repository's ``captures/`` nor its ``latest`` link, which belong to the
user's own ``dsrlab run``. ``--dsrlab-captures DIR`` writes them to DIR
instead, e.g. ``--dsrlab-captures captures`` to keep them with the user's.

Backends: :func:`require_backend` skips a test when its backend cannot run here
(kind: docker, kind, kubectl, helm; netns: root), saying why;
``--dsrlab-require-backend BACKEND`` fails it instead, and fails a session in which
no test ran on BACKEND (a CI job for a backend cannot pass empty).

Signals: a session stopped with SIGTERM or SIGHUP (CI's timeout, a closed
terminal) stops as with Ctrl-C: a ``KeyboardInterrupt`` in the test that
runs, so its labs and the session's fixtures are taken down (while they
would have the default action: dying on the spot, labs left behind).

Fixtures (name, scope, depends on):

* ``root_namespace_guard`` (session, autouse): snapshots the root network
  namespace before the session and fails the session's last teardown if
  links, addresses, routes, qdiscs or forwarding sysctls changed.
* ``seed_topology`` (session): ``topologies/seed.yaml`` as a Topology.
* ``seed_lab`` (module; seed_topology): the seed brought up on netns with
  the datapath and pod servers; always taken down.
* ``captures_root`` (session): where scenario runs write capture sets:
  ``--dsrlab-captures DIR`` if given, else ``dsrlab-captures`` under
  pytest's basetemp (see :func:`captures_root_for`).
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.atomic import write_text
from lab.datapath import requires as datapath_requires
from lab.datapath.cilium.source import ENV_VAR as CILIUM_ENV_VAR
from lab.datapath.cilium.source import CiliumSourceError, choose
from lab.datapath.errors import IngressIfindexRefused
from lab.datapath.verifier import VerifierReport, reports_json
from lab.datapath.verifier import verify as verify_datapath
from lab.env import get_backend
from lab.env.netns import LabDatapaths, NetnsBackend, NetnsLab
from lab.env.netns.choice import node_datapaths
from lab.env.netns.cilium import CiliumDatapaths
from lab.model.scenario import ScenarioError, load_scenario
from lab.model.topology import Topology, load_topology
from lab.plumbing import interrupts, rootsnap
from lab.runner.scenario import ScenarioRun, load_scenario_trace, run_scenario

REPO = Path(__file__).resolve().parent.parent
SEED_TOPOLOGY = REPO / "topologies" / "seed.yaml"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dsrlab")
    group.addoption("--dsrlab-captures", default=None, metavar="DIR",
                    help="write scenario capture sets to DIR/<scenario>/<run-id> (and move "
                         "DIR/<scenario>/latest); default: a dsrlab-captures folder under "
                         "pytest's temporary directory (--basetemp), never the repo's "
                         "captures/. Use --dsrlab-captures captures to keep them there")
    group.addoption("--dsrlab-backend", default="netns", choices=("netns", "kind"),
                    help="backend for scenario tests (default: netns)")
    group.addoption("--dsrlab-require-backend", default=None, choices=("netns", "kind"),
                    metavar="BACKEND",
                    help="fail, not skip, a test that cannot run for want of BACKEND "
                         "(kind: docker, kind, kubectl, helm; netns: root), and fail the "
                         "session if no test of BACKEND ran (CI's kind job: a run that "
                         "tested nothing is not a pass)")
    group.addoption("--dsrlab-verifier-report", default=None, metavar="FILE",
                    help="before the tests, load the datapath through this kernel's "
                         "verifier and write what it said (instructions processed per "
                         "program, or the rejection and its log tail) to FILE as JSON "
                         "(the kernel matrix does, per kernel)")
    group.addoption("--dsrlab-cilium-verifier-report", default=None, metavar="FILE",
                    help="at session start, load the seed topology's Cilium objects (every "
                         "node's bpf_host, each pod's bpf_lxc) for each Cilium source of "
                         "$DSRLAB_CILIUM_SRC through this kernel's verifier and write what it "
                         "said, one report per version, as a JSON array (a skip without a "
                         "source)")
    group.addoption("--dsrlab-datapath", default=None, choices=("lab", "cilium"),
                    help="what the netns backend's nodes run in scenario tests: lab "
                         "(bpf/dsr.c) or cilium (Cilium's own programs, built from "
                         "--dsrlab-cilium-src); default: each topology's datapath:, "
                         "else lab")
    group.addoption("--dsrlab-cilium-src", default=None, metavar="PATH",
                    help="with --dsrlab-datapath cilium: a Cilium checkout, its bpf/, or "
                         "a bpf/ tarball (default: $DSRLAB_CILIUM_SRC)")
    group.addoption("--dsrlab-keep", action="store_true", default=False,
                    help="leave each scenario's lab up afterwards, for debugging "
                         "(take it down with `dsrlab down RUN_ID` or `dsrlab clean`)")


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    raise interrupts.Interrupted(signum)


def pytest_configure(config: pytest.Config) -> None:
    required = config.getoption("--dsrlab-require-backend")
    if required:
        config.pluginmanager.register(BackendsRan(required), "dsrlab-backends-ran")
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _stop_like_ctrl_c)
    for line in (
        "netns: needs root and network namespaces (the netns backend)",
        "kind: needs a real kind cluster (Docker engine, image registry)",
        "bpf: loads eBPF programs through the verifier",
        "scenario: runs a whole scenario end to end",
        "dsr: load-balancer mode dsr",
        "snat: load-balancer mode snat",
        "hybrid: load-balancer mode hybrid",
        "kernel(min): needs at least this kernel version, e.g. kernel('5.10')",
    ):
        config.addinivalue_line("markers", line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test-run test on a kernel whose BPF_PROG_TEST_RUN cannot be given the
    ingress device (Linux < 5.16) is skipped with that reason, not failed."""
    try:
        return (yield)
    except IngressIfindexRefused as exc:
        pytest.skip(str(exc))


def pytest_sessionstart(session: pytest.Session) -> None:
    target = session.config.getoption("--dsrlab-verifier-report")
    if target:
        write_verifier_report(Path(target))
    target = session.config.getoption("--dsrlab-cilium-verifier-report")
    if target:
        write_cilium_verifier_report(Path(target))


def write_verifier_report(target: Path) -> None:
    """The datapath under this kernel's verifier, as JSON at ``target``."""
    if os.geteuid() != 0:
        report = VerifierReport(kernel=platform.release(), outcome="skip",
                                reason="needs root (BPF)")
    else:
        report = verify_datapath()
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, report.model_dump_json(indent=2) + "\n")


def write_cilium_verifier_report(target: Path) -> None:
    """The seed topology's Cilium objects under this kernel's verifier, a report per
    Cilium source of ``$DSRLAB_CILIUM_SRC``, as a JSON array at ``target``."""
    from lab.datapath.cilium import verify  # noqa: PLC0415

    reports = verify.verify_sources(os.environ.get(CILIUM_ENV_VAR),
                                    load_topology(verify.SEED_TOPOLOGY))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, reports_json(reports))


def require_root() -> None:
    """Skip the calling test unless running as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, BPF, tcpdump)")


def require_cmd(*names: str) -> None:
    """Skip the calling test unless every command is on PATH."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (run `make install`)")


_RAN_ON = "dsrlab_backend"  # the user property naming the backend a test ran on


def require_backend(item: pytest.Item, backend: str) -> None:
    """Skip the test ``item`` unless ``backend`` can run here; with
    ``--dsrlab-require-backend BACKEND``, fail it instead. A test that gets past this
    counts as one of the backend's (see :class:`BackendsRan`)."""
    reason: str | None
    if backend == "kind":
        from lab.env.kind.preflight import kind_unavailable  # noqa: PLC0415

        reason = kind_unavailable()
    else:
        reason = None if os.geteuid() == 0 else "needs root (network namespaces, BPF, tcpdump)"
    if reason:
        if item.config.getoption("--dsrlab-require-backend") == backend:
            pytest.fail(f"--dsrlab-require-backend {backend}: {reason}", pytrace=False)
        pytest.skip(reason)
    item.user_properties.append((_RAN_ON, backend))


class BackendsRan:
    """``--dsrlab-require-backend BACKEND``: the backends tests ran on, from their
    reports (this process's, or xdist's workers' in the controller); a session in
    which no test ran on BACKEND fails."""

    def __init__(self, required: str) -> None:
        self.required = required
        self.ran: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.ran |= {str(v) for k, v in report.user_properties if k == _RAN_ON}

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(session.config, "workerinput"):  # the controller decides
            return
        if self.required not in self.ran and exitstatus in (
                pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"--dsrlab-require-backend {self.required}: no test ran "
                                    f"on {self.required} (none selected, or all skipped)",
                                    red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def captures_root_for(config: pytest.Config) -> Path:
    """Where this session's scenario runs write capture sets.

    ``--dsrlab-captures DIR`` when given; otherwise ``dsrlab-captures`` under
    the session's pytest temporary directory (``--basetemp``, or pytest's
    numbered ``pytest-of-<user>/pytest-N``), so a test run never touches the
    repository's ``captures/`` or its ``latest`` links.
    """
    opt = config.getoption("--dsrlab-captures")
    if opt:
        return Path(opt)
    factory = getattr(config, "_tmp_path_factory", None)  # set by pytest's tmp_path plugin
    if not isinstance(factory, pytest.TempPathFactory):  # -p no:tmpdir
        factory = pytest.TempPathFactory.from_config(config, _ispytest=True)
    root = factory.getbasetemp() / "dsrlab-captures"
    root.mkdir(exist_ok=True)
    return root


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scenarios = [i for i in items if isinstance(i, ScenarioItem)]
    if _collects_scenarios_dir(config) and not scenarios:
        raise pytest.UsageError(
            "collected zero scenarios from scenarios/ (each needs NAME.yaml and "
            "NAME.trace.yaml): a scenario run that tests nothing is a failure")
    running = datapath_requires.release_version(platform.release())
    datapath_unmet = datapath_requires.unmet()
    must_run_netns = config.getoption("--dsrlab-require-backend") == "netns"
    for item in items:
        if os.geteuid() != 0 and not must_run_netns and (item.get_closest_marker("netns")
                                                          or item.get_closest_marker("bpf")):
            item.add_marker(pytest.mark.skip(
                reason="needs root (network namespaces, BPF, tcpdump)"))
        if datapath_unmet and item.get_closest_marker("bpf"):
            item.add_marker(pytest.mark.skip(reason=datapath_unmet))
        mark = item.get_closest_marker("kernel")
        if mark is not None and running < datapath_requires.release_version(str(mark.args[0])):
            item.add_marker(pytest.mark.skip(
                reason=f"needs kernel >= {mark.args[0]}, running {platform.release()}"))


def _collects_scenarios_dir(config: pytest.Config) -> bool:
    """Whether a ``scenarios`` directory is collected: named, or inside a named directory."""
    for arg in config.args or [str(Path.cwd())]:
        path = Path(arg.split("::")[0]).resolve()
        if path.is_dir() and (path.name == "scenarios" or (path / "scenarios").is_dir()):
            return True
    return False


# -- scenarios as test items ----------------------------------------------------

def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if (file_path.suffix == ".yaml" and file_path.parent.name == "scenarios"
            and not file_path.name.endswith(".trace.yaml")):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """A scenario YAML file: yields one item if its trace is there and valid."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            sc, topo = load_scenario(self.path)
            load_scenario_trace(sc)
        except ScenarioError as exc:
            raise self.CollectError(str(exc)) from None
        item = ScenarioItem.from_parent(self, name=sc.name)
        item.backends = tuple(sc.backends)
        item.topology = topo
        for backend in sc.backends:
            item.add_marker(backend)
        item.add_marker(topo.load_balancer.mode)
        item.add_marker("scenario")
        item.add_marker("bpf")
        if sc.requires.kernel:
            item.add_marker(pytest.mark.kernel(sc.requires.kernel))
        yield item


class ScenarioFailed(Exception):
    """The scenario ran and its trace did not match; carries the run."""

    def __init__(self, run: ScenarioRun) -> None:
        super().__init__(run.result.summary() if run.result else "no result")
        self.run = run


def datapath_options(config: pytest.Config, backend: str,
                     topology: Topology | None = None) -> dict[str, Any]:
    """The netns backend's options: ``--dsrlab-datapath`` when given, else the
    topology's ``datapath:`` (none for kind). A topology's ``cilium`` with no Cilium
    source to build skips the test, saying so (``--dsrlab-datapath cilium`` without
    one fails it)."""
    choice = config.getoption("--dsrlab-datapath")
    if backend != "netns":
        if choice == "cilium":
            raise pytest.UsageError("--dsrlab-datapath cilium is the netns backend's")
        return {}
    src = config.getoption("--dsrlab-cilium-src")
    if choice == "cilium":
        return {"datapaths": CiliumDatapaths(choose(Path(src) if src else None))}
    if choice is None and topology is not None:
        try:
            return {"datapaths": node_datapaths(None, topology, src)}
        except CiliumSourceError as exc:
            pytest.skip(str(exc))
    return {"datapaths": LabDatapaths()} if choice == "lab" else {"cilium_src": src}


class ScenarioItem(pytest.Item):
    """Run one scenario on the chosen backend and check its expected trace."""

    backends: tuple[str, ...] = ("netns",)  # what the scenario file says it runs on
    topology: Topology | None = None  # its topology, settings applied

    def runtest(self) -> None:
        backend = self.config.getoption("--dsrlab-backend")
        if backend not in self.backends:
            pytest.skip(f"scenario {self.name} runs on {', '.join(self.backends)}, "
                        f"not on --dsrlab-backend {backend}")
        require_backend(self, backend)
        require_root()
        require_cmd("tcpdump", "curl", "clang")
        run = run_scenario(self.path, captures_root=captures_root_for(self.config),
                           backend=get_backend(backend, **datapath_options(
                               self.config, backend, self.topology)),
                           keep=bool(self.config.getoption("--dsrlab-keep")))
        self.user_properties.append(("captures", str(run.capture_dir)))
        if run.kept:
            self.user_properties.append(("kept_lab", run.run_id))
        if not run.passed:
            raise ScenarioFailed(run)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            run = excinfo.value.run
            lines = [f"scenario {run.scenario.name}, run {run.run_id}: the expected trace "
                     f"{run.scenario.trace_path().name} did not match",
                     str(excinfo.value),
                     *(f"diagnosis: {d}" for d in (run.result.diagnoses if run.result else ())),
                     f"captures: {run.capture_dir} (results.json has every check)"]
            if run.kept:
                lines.append(f"the lab is still up: dsrlab down {run.run_id}")
            failed = [ex for ex in run.exchanges if not ex.ok]
            if failed:
                lines.append(f"{len(failed)} of {len(run.exchanges)} requests failed: "
                             f"{failed[0].error or failed[0].http_code}")
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"


@pytest.fixture(scope="session", autouse=True)
def root_namespace_guard() -> Iterator[rootsnap.RootSnapshot | None]:
    """The root namespace must look the same after the session as before it."""
    if os.geteuid() != 0:
        yield None
        return
    before = rootsnap.take()
    yield before
    changes = rootsnap.diff(before, rootsnap.take())
    if changes:
        pytest.fail("the test session changed the root network namespace:\n  "
                    + "\n  ".join(changes), pytrace=False)


@pytest.fixture(scope="session")
def seed_topology() -> Topology:
    return load_topology(SEED_TOPOLOGY)


@pytest.fixture(scope="module")
def seed_lab(seed_topology: Topology) -> Iterator[NetnsLab]:
    require_root()
    with NetnsBackend().up(seed_topology) as lab:
        yield lab


@pytest.fixture(scope="session")
def captures_root(request: pytest.FixtureRequest) -> Path:
    """Where scenario runs of this session write capture sets (never the repo's captures/
    unless ``--dsrlab-captures`` says so)."""
    return captures_root_for(request.config)
