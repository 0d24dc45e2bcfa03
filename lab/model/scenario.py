"""Scenarios as data: a topology, the traffic to send, the expected trace to check.

A scenario file (YAML, in ``scenarios/``) names its topology, which host
sends, which service on which node it addresses and how many requests to
make; its expected trace sits beside it (``<name>.trace.yaml``). This
module only reads and validates them; :mod:`lab.runner.scenario` runs one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from lab.errors import LabError
from lab.model.errors import FieldProblem, validation_message
from lab.model.topology import Topology, TopologyError, load_topology
from lab.model.yamldoc import read_yaml
from lab.safetext import excerpt

LAB_ROOT = Path(__file__).resolve().parents[2]
SCENARIO_DIR = LAB_ROOT / "scenarios"
TOPOLOGY_DIR = LAB_ROOT / "topologies"

# What a scenario may ask for (README: "Resources"). Its steps' payload is captured at
# every hop (a pcap each, then the merged pcapng: ~2 x hops x the bytes on disk);
# a modes comparison's transfers are captured at the LB node only.
TRAFFIC_BUDGET = 256 << 20  # bytes every transfer and datagram step moves, in all
COMPARE_BUDGET = 1 << 30  # bytes a modes comparison transfers, over all its modes


def _size(n: int) -> str:
    """Bytes for a message: ``1 GiB``, ``250 MiB``, ``3000 B``."""
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.4g} {unit}"
    return f"{n} B"


class ScenarioError(LabError, ValueError):
    """A scenario file that cannot be used; names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    service: str
    node: str  # the node whose address the client uses (the LB hop)
    port: str | int | None = None  # the service port, by name or node port (default: its first)
    # the address family the client uses: the node's (and every host's) IPv4 or IPv6
    # address; IPv6 needs a dual-stack topology and a service whose ip_families has it
    family: Literal["IPv4", "IPv6"] = "IPv4"


class Requests(_Model):
    min: Annotated[int, Field(ge=1)] = 2
    max: Annotated[int, Field(ge=1, le=1000)] = 32
    until_every_backend: bool = True
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class Requires(_Model):
    """What the scenario needs to mean anything (checked before it runs)."""

    kernel: Annotated[str, Field(pattern=r"^\d+\.\d+(\.\d+)?$")] | None = None


class CompareModes(_Model):
    """A modes comparison: after the scenario's own run, the same topology under each
    mode, measured at the node the client addressed (:mod:`lab.runner.compare`)."""

    modes: Annotated[list[Literal["snat", "dsr", "hybrid"]], Field(min_length=2)]
    transfer_bytes: Annotated[int, Field(ge=1, le=1 << 30)] = 100 * 1024 * 1024
    requests: Annotated[int, Field(ge=10, le=10000)] = 1000


class CraftedPacket(_Model):
    """A packet built with scapy and sent from the client as it is (a raw socket):
    a SYN with IP options, an ACK without a SYN, anything a curl would not send."""

    flags: Annotated[str, Field(pattern=r"^[FSRPAUEC]*$")] = "S"
    sport: Annotated[int, Field(ge=1, le=65535)]
    seq: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 1000
    ack: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 0
    # IP options in order: timestamp (8 bytes), record_route (3 slots, 16 bytes with
    # padding), record_route_full (9 slots, 40 bytes with padding), nop
    ip_options: list[Literal["timestamp", "record_route", "record_route_full", "nop"]] = []
    payload: Annotated[str, Field(max_length=1400)] = ""


class Replay(_Model):
    """Packets of a pcap file sent from the client as they are (IPv4, a raw socket)."""

    pcap: str  # relative to the scenario file
    # the capture's client and service addresses and port replaced by the lab's
    # (the first packet's source and destination are taken as the client and the service)
    rewrite: bool = True
    limit: Annotated[int, Field(ge=1, le=10000)] = 1000


class Datagram(_Model):
    """UDP datagrams of one size from one kernel socket: path-MTU discovery on (DF set,
    never fragmented by the sender), or with ``allow_fragments`` Linux's default for
    UDP (``IP_PMTUDISC_WANT``): a datagram over the path MTU leaves in fragments."""

    size: Annotated[int, Field(ge=1, le=65507)]  # payload bytes
    count: Annotated[int, Field(ge=1, le=100)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    # ask the pod for an answer of this many bytes after its line (the pod server's
    # "answer N"); over the MTU it comes back in fragments. None: the pod echoes
    answer_size: Annotated[int, Field(ge=0, le=65000)] | None = None
    allow_fragments: bool = False


class Fault(_Model):
    """Something broken on purpose on one host's lab interface (a node's eth0, a pod's
    eth0, the client's bridge port)."""

    host: str
    loss_percent: Annotated[float, Field(gt=0, le=100)] | None = None
    delay_ms: Annotated[int, Field(ge=1, le=10000)] | None = None
    link_down: bool = False
    kill_pod: bool = False  # host is a pod: its server is killed
    # within a transfer (and only there): applied once the client has received this many
    # bytes of the body, a point in the transfer's progress however fast the machine runs
    after_bytes: Annotated[int, Field(ge=1, le=1 << 30)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_wall_clock(cls, data: Any) -> Any:
        if isinstance(data, dict) and "after_s" in data:
            raise ValueError("after_s: a fault comes at a point of the transfer's progress, "
                             "not at a time (a loaded machine moves the time): after_bytes, "
                             "the body bytes the client received, within a transfer")
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Fault:
        kinds = [k for k, on in (("loss_percent/delay_ms", self.loss_percent is not None
                                  or self.delay_ms is not None),
                                 ("link_down", self.link_down), ("kill_pod", self.kill_pod))
                 if on]
        if len(kinds) != 1:
            raise ValueError("a fault is one of loss_percent/delay_ms, link_down, kill_pod "
                             f"(given: {', '.join(kinds) or 'none'})")
        return self


class Transfer(_Model):
    """One TCP transfer with curl: ``download`` N bytes from the pod (GET /bytes/N) or
    ``upload`` N bytes to it (POST), optionally with TCP Fast Open; a download with
    faults at given points of its progress."""

    bytes: Annotated[int, Field(ge=0, le=1 << 30)]
    direction: Literal["download", "upload"] = "download"
    tcp_fastopen: bool = False
    # bytes per second (None: as fast as the path goes): a download is paced by the pod
    # (GET /bytes/N?rate=R), an upload by curl (--limit-rate), so a fault lands mid-way
    rate: Annotated[int, Field(ge=1000, le=1 << 30)] | None = None
    count: Annotated[int, Field(ge=1, le=100)] = 1
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 20.0
    during: list[Fault] = []
    # with faults during it: the client gives up once no body byte came for this long
    # after they are all in place (a stall measured from the fault, never before it)
    give_up_s: Annotated[float, Field(gt=0, le=60)] = 2.0

    @model_validator(mode="after")
    def _faults_by_progress(self) -> Transfer:
        if self.during and self.direction != "download":
            raise ValueError("during: faults come at a point of a download's progress (the "
                             "body bytes the client received); an upload has none to count")
        for i, fault in enumerate(self.during):
            if fault.after_bytes is None or fault.after_bytes >= self.bytes:
                got = "not given" if fault.after_bytes is None else f"got {fault.after_bytes}"
                raise ValueError(f"during[{i}].after_bytes: the body bytes the client has "
                                 f"received when the fault comes, 1 to {self.bytes - 1} "
                                 f"({got})")
        return self


class RequestsStep(_Model):
    requests: Requests


class SendStep(_Model):
    send: Annotated[list[CraftedPacket], Field(min_length=1)]


class ReplayStep(_Model):
    replay: Replay


class DatagramStep(_Model):
    datagram: Datagram


class TransferStep(_Model):
    transfer: Transfer


class FaultStep(_Model):
    fault: Fault

    @model_validator(mode="after")
    def _now(self) -> FaultStep:
        if self.fault.after_bytes is not None:
            raise ValueError("after_bytes: a fault step applies when the steps before it "
                             "ended; a point in a transfer is for a fault during it")
        return self


STEP_KINDS = ("requests", "send", "replay", "datagram", "transfer", "fault")


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next(iter(value), None) if len(value) == 1 else None
    return next((k for k in STEP_KINDS if hasattr(value, k)), None)


# a step is a mapping of one key, its kind (errors name steps[i].<kind>.<field>)
Step = Annotated[
    Annotated[RequestsStep, Tag("requests")] | Annotated[SendStep, Tag("send")]
    | Annotated[ReplayStep, Tag("replay")] | Annotated[DatagramStep, Tag("datagram")]
    | Annotated[TransferStep, Tag("transfer")] | Annotated[FaultStep, Tag("fault")],
    Discriminator(_step_kind)]


class Scenario(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str = ""
    topology: str
    # applied to the topology before it is validated, as `helm --set` to values:
    # {"load_balancer.mode": "snat", "services[0].external_traffic_policy": "Local"}
    settings: dict[str, Any] = {}
    trace: str | None = None  # default: <name>.trace.yaml beside the scenario
    client: str = "client"
    target: Target
    requests: Requests = Requests()
    requires: Requires = Requires()
    backends: list[Literal["netns", "kind"]] = ["netns"]
    compare_modes: CompareModes | None = None
    # sent from the client instead of the requests (crafted with scapy, one after the other)
    send: list[CraftedPacket] = []
    # instead of requests or send: steps run one after the other (see Step)
    steps: list[Step] = []
    # the whole traffic's deadline: a step still running then is stopped, and the
    # captures so far are checked (and diagnosed) as they are
    deadline_s: Annotated[float, Field(gt=0, le=600)] = 120.0
    source: Path | None = Field(default=None, exclude=True)

    def backend_refusal(self, backend: str) -> str | None:
        """Why the scenario does not run on ``backend`` (None: its ``backends:`` list it)."""
        if backend in self.backends:
            return None
        return (f"{self.source or self.name}: backends: scenario {self.name} runs on "
                f"{', '.join(self.backends)}, not on {backend}")

    @model_validator(mode="before")
    @classmethod
    def _step_kinds(cls, data: Any) -> Any:
        """A step is a mapping with exactly one known key; say which, not pydantic's
        union of six models."""
        problems: list[tuple[str, str]] = []
        if isinstance(data, dict) and isinstance(data.get("steps"), list):
            for i, step in enumerate(data["steps"]):
                keys = list(step) if isinstance(step, dict) else []
                if len(keys) != 1 or keys[0] not in STEP_KINDS:
                    got = ", ".join(map(str, keys)) or type(step).__name__
                    problems.append((f"steps[{i}]", f"a step is one of "
                                     f"{', '.join(STEP_KINDS)} (got {got})"))
        if isinstance(data, dict) and data.get("steps") and data.get("send"):
            problems.append(("send", "steps and send: one or the other (a send step does "
                             "both)"))
        if problems:
            raise FieldProblem(problems)
        return data

    @model_validator(mode="after")
    def _within_budget(self) -> Scenario:
        """Steps move at most TRAFFIC_BUDGET bytes in all, a comparison COMPARE_BUDGET;
        the error names the step at which the sum goes over."""
        total = 0
        for i, step in enumerate(self.steps):
            if isinstance(step, TransferStep):
                kind, each, count = "transfer", step.transfer.bytes, step.transfer.count
            elif isinstance(step, DatagramStep):
                kind, each, count = "datagram", step.datagram.size, step.datagram.count
            else:
                continue
            total += each * count
            if total > TRAFFIC_BUDGET:
                before = f" after {_size(total - each * count)} in the steps before" \
                    if total > each * count else ""
                raise FieldProblem([(f"steps[{i}].{kind}", (
                    f"{count} x {_size(each)} = {_size(each * count)}{before} is over the "
                    f"{_size(TRAFFIC_BUDGET)} a scenario's steps may move in all (captured "
                    f"at every hop); move less or fewer times"))])
        if self.compare_modes is not None:
            cm = self.compare_modes
            asked = cm.transfer_bytes * len(cm.modes)
            if asked > COMPARE_BUDGET:
                raise FieldProblem([("compare_modes.transfer_bytes", (
                    f"{len(cm.modes)} modes x {_size(cm.transfer_bytes)} = {_size(asked)} is "
                    f"over the {_size(COMPARE_BUDGET)} a comparison may transfer in all"))])
        return self

    def traffic_steps(self) -> list[Step]:
        """What the runner does: the steps, or the one send/requests step they stand for."""
        if self.steps:
            return list(self.steps)
        if self.send:
            return [SendStep(send=self.send)]
        return [RequestsStep(requests=self.requests)]

    def _base(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def file_path(self, field: str, value: str) -> Path:
        """The file the scenario names in ``field``: ``value`` relative to the scenario's
        folder, resolved (symbolic links followed). A :class:`ScenarioError` naming the
        field when it lands outside :func:`allowed_folders` (``../../``, an absolute path,
        a link pointing out): a scenario cannot make the lab read any other file."""
        where = f"{self.source}: {field}" if self.source else field
        try:
            path = (self._base() / value).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a loop, a NUL byte
            raise ScenarioError(f"{where}: cannot resolve {excerpt(value)}: {exc}") from None
        folders = allowed_folders(self.source)
        inside = [path.relative_to(f) for f in folders if path.is_relative_to(f)]
        link = "" if Path(value).is_absolute() and Path(value) == path else f" ({path})"
        if not inside:
            raise ScenarioError(
                f"{where}: {excerpt(value)}{link} is outside the scenario's folder; a scenario "
                f"names only files in {', '.join(map(str, folders))}")
        if all(any(part.startswith(".") for part in rel.parts) for rel in inside):
            # .ssh/, .env, .git/: a scenario's folder may be a home folder
            raise ScenarioError(f"{where}: {excerpt(value)}{link} is a hidden file or in a "
                                "hidden folder; a scenario does not name those")
        return path

    def topology_path(self) -> Path:
        return self.file_path("topology", self.topology)

    def trace_path(self) -> Path:
        return self.file_path("trace", self.trace or f"{self.name}.trace.yaml")

    def referenced_files(self) -> list[tuple[str, Path]]:
        """Every file the scenario names, as ``(field, path)``, each checked by
        :meth:`file_path` (the first outside its folders raises)."""
        found = [("topology", self.topology_path()), ("trace", self.trace_path())]
        for i, step in enumerate(self.steps):
            if isinstance(step, ReplayStep):
                field = f"steps[{i}].replay.pcap"
                found.append((field, self.file_path(field, step.replay.pcap)))
        return found


def allowed_folders(source: Path | None) -> list[Path]:
    """Where the files a scenario names may be: the scenario's own folder (the working
    directory for one without a file), the lab's ``scenarios/`` (shared traces and
    captures) and ``topologies/``; each resolved. A tree of the user's laid out as the
    lab's (the scenario in ``scenarios/`` or one subfolder of it) has its own
    ``scenarios/`` and the ``topologies/`` beside it too."""
    own = source.resolve().parent if source is not None else Path.cwd().resolve()
    folders = [own, SCENARIO_DIR.resolve(), TOPOLOGY_DIR.resolve()]
    for folder in (own, own.parent):
        if folder.name == SCENARIO_DIR.name:
            folders += [folder, folder.parent / TOPOLOGY_DIR.name]
            break
    return list(dict.fromkeys(folders))


def all_scenarios(folder: Path = SCENARIO_DIR) -> list[Path]:
    """Every scenario file under ``folder`` (``scenarios/*.yaml`` and one level of
    subfolders, e.g. ``scenarios/modes/``), traces left out, by name."""
    found = [*folder.glob("*.yaml"), *folder.glob("*/*.yaml")]
    return sorted((p for p in found if not p.name.endswith(".trace.yaml")),
                  key=lambda p: (p.parent != folder, str(p.relative_to(folder))))


def find_scenario(name_or_path: str) -> Path:
    """A scenario by name (``seed`` -> ``scenarios/seed.yaml``, ``snat-tcp-remote`` ->
    ``scenarios/modes/snat-tcp-remote.yaml``) or by path."""
    p = Path(name_or_path)
    try:
        given = p.suffix in (".yaml", ".yml") or p.exists()
    except OSError:  # in a folder it cannot enter: the reader says so, naming the file
        given = True
    if given:
        return p
    for candidate in all_scenarios():
        if candidate.stem == name_or_path:
            return candidate
    known = [s.stem for s in all_scenarios()]
    raise ScenarioError(f"no scenario {excerpt(name_or_path)} "
                        f"(known: {', '.join(known) or 'none'})")


def load_scenario(name_or_path: str | Path) -> tuple[Scenario, Topology]:
    path = find_scenario(str(name_or_path))
    data = read_yaml(path, ScenarioError)
    try:
        sc = Scenario.model_validate(data).model_copy(update={"source": path})
    except ValidationError as exc:
        raise ScenarioError(validation_message(path, exc, Scenario)) from None
    sc.referenced_files()  # every file it names inside its folders, before any is read
    try:
        topo = load_topology(sc.topology_path(), sc.settings)
    except TopologyError as exc:
        with_settings = " (with the scenario's settings)" if sc.settings else ""
        raise ScenarioError(f"{path}: topology{with_settings}: {exc}") from None
    except KeyError as exc:
        raise ScenarioError(f"{path}: settings.{exc.args[0]}") from None
    problems = []
    if sc.client not in topo.host_names():
        problems.append(f"client: no host {excerpt(sc.client)} in {topo.name}")
    if sc.target.node not in {n.name for n in topo.nodes}:
        problems.append(f"target.node: no node {excerpt(sc.target.node)} in {topo.name}")
    if sc.target.service not in {s.name for s in topo.services}:
        problems.append(f"target.service: no service {excerpt(sc.target.service)} in {topo.name}")
    else:
        try:
            topo.service(sc.target.service).port(sc.target.port)
        except KeyError as exc:
            problems.append(f"target.port: {exc.args[0]}")
    problems += _family_problems(sc, topo)
    if problems:
        raise ScenarioError("\n".join(f"{path}: {p}" for p in problems))
    return sc, topo


def _family_problems(sc: Scenario, topo: Topology) -> list[str]:
    """Why the scenario cannot use its ``target.family`` on ``topo`` (none for IPv4)."""
    if sc.target.family == "IPv4":
        return []
    if not topo.dual_stack:
        return [f"target.family: IPv6 needs a dual-stack topology (network.subnet6 and "
                f"IPv6 addresses); {topo.name} ({sc.topology}) is IPv4 only"]
    problems = []
    if sc.target.service in {s.name for s in topo.services}:
        families = topo.service(sc.target.service).ip_families
        if "IPv6" not in families:
            problems.append(f"target.family: service {sc.target.service} answers on "
                            f"{', '.join(families)} only (its ip_families); IPv6 needs "
                            f"ip_families: [IPv4, IPv6]")
    kinds = [("send", "crafted packets are IPv4")] if sc.send else []
    for i, step in enumerate(sc.steps):
        if isinstance(step, SendStep):
            kinds.append((f"steps[{i}].send", "crafted packets are IPv4"))
        elif isinstance(step, ReplayStep):
            kinds.append((f"steps[{i}].replay", "a replay sends IPv4 packets"))
    problems += [f"{where}: {why}; target.family IPv6 sends requests, datagrams and "
                 f"transfers" for where, why in kinds]
    if sc.compare_modes is not None:
        problems.append("compare_modes: a modes comparison measures IPv4 only "
                        "(target.family: IPv6)")
    return problems
