"""The expected-trace file: what each capture point must show, as data.

A trace (``scenarios/<name>.trace.yaml``) has four parts:

``flows``
    How flows are found: every packet matching ``start`` at its point opens
    one flow; ``bind`` rules then bind flow variables (the client's
    ephemeral port, the backend the LB chose) before any claim is checked.
``vars``
    Flow variables that range over a set from the topology, e.g.
    ``backend: {one_of: backends}``: unbound until a packet binds them, then
    the same value on every hop of that flow.
``claims``
    Per claim, the capture point (by role, and by host when a role has
    several points) and its ``expect`` list (ordered packet expectations),
    ``never`` rules (no packet of the flow may match) and ``count`` rules.
``coverage``
    Rules across flows, e.g. every backend served at least one flow.

A claim, an expectation or a ``never`` rule may hold on some datapaths only
(``datapath: cilium<1.14`` with a ``why:``, :mod:`.datapaths`); the checker
keeps what holds on the datapath the capture set's manifest names.

Names, not literals: ``$client``, ``$service.ip``, ``$service.port``,
``$backends`` come from the capture set's manifest (and so from the
topology); flow variables are ``$eph``, ``$backend.ip`` and friends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.check.trace.datapaths import Selector
from lab.check.trace.fields import FIELD_NAMES, FieldSpec, compile_field
from lab.errors import LabError
from lab.model.errors import validation_message
from lab.model.yamldoc import read_yaml
from lab.safetext import excerpt


class TraceError(LabError, ValueError):
    """A trace file that cannot be used; names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointRef(_Model):
    """Which capture point: a role, and a host (literal or ``$var.attr``) if needed."""

    role: Literal["client", "lb-node", "backend-node", "pod"] | None = None
    host: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _some(self) -> PointRef:
        if self.role is None and self.host is None and self.name is None:
            raise ValueError("give a role, a host or a name")
        return self

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("role", self.role), ("host", self.host),
                                          ("name", self.name)) if v is not None]
        return ", ".join(parts)


class CountSpec(_Model):
    min: Annotated[int, Field(ge=0)] = 1
    max: Annotated[int, Field(ge=0)] | None = None


class _OnDatapath(_Model):
    """``datapath: cilium<1.14`` with its ``why:``: holds only there (:mod:`.datapaths`)."""

    datapath: str | None = None
    why: str | None = None

    @model_validator(mode="after")
    def _selector(self) -> _OnDatapath:
        if self.datapath is not None:
            Selector.parse(self.datapath)  # a ValueError names the field
            if not (self.why or "").strip():
                raise ValueError("datapath: say why the datapaths differ here (why: ...)")
        elif self.why is not None:
            raise ValueError("why: goes with datapath: (a note on where datapaths differ)")
        return self

    def holds_on(self, name: str, version: str) -> bool:
        return self.datapath is None or Selector.parse(self.datapath).matches(name, version)


class PacketSpec(_OnDatapath):
    """One packet expectation: field matchers plus how it relates to the others."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    after: str | None = None  # default: the previous expectation of the list
    count: CountSpec | None = None  # match every packet (after the anchor) instead of the first
    bind: dict[str, str] = {}  # var -> field of the matched packet

    def field_specs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class NeverSpec(_OnDatapath):
    """No packet at the point may match these fields (only the given ones are compared);
    with ``before``, no packet ahead of that expectation's match (a reset after the
    service's FIN ends nothing: a stray segment that crossed the teardown gets one)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    before: str | None = None  # an expectation of the claim: only packets ahead of its match

    def field_specs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class BindRule(_Model):
    """Bind flow variables from the first packet at ``point`` matching ``match``."""

    point: PointRef
    match: dict[str, Any]
    bind: dict[str, str] = {}  # var -> field; a `$var.attr` in match binds a one_of var


class FlowSpec(_Model):
    start: BindRule
    bind: list[BindRule] = []
    min: Annotated[int, Field(ge=0)] = 1


class VarSpec(_Model):
    one_of: str  # the name of a list from the manifest, e.g. "backends"


class Claim(_OnDatapath):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    title: str
    point: PointRef
    expect: list[PacketSpec] = []
    never: list[NeverSpec] = []


class Coverage(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    title: str
    var: str
    covers: str  # every member of this manifest list must be bound to `var` by some flow


class Trace(_Model):
    scenario: str
    description: str = ""
    defaults: dict[str, Any] = {}  # field specs applied to every expectation (e.g. proto)
    flows: FlowSpec
    vars: dict[str, VarSpec] = {}
    claims: Annotated[list[Claim], Field(min_length=1)]
    coverage: list[Coverage] = []
    source: Path | None = Field(default=None, exclude=True)

    def for_datapath(self, name: str, version: str = "") -> Trace:
        """The claims, expectations and ``never`` rules that hold on this datapath
        (``lab``, or ``cilium`` at ``version``)."""
        claims = [c.model_copy(update={
            "expect": [e for e in c.expect if e.holds_on(name, version)],
            "never": [n for n in c.never if n.holds_on(name, version)]})
            for c in self.claims if c.holds_on(name, version)]
        return self.model_copy(update={"claims": claims})


def _spec_problems(trace: Trace, specs: dict[str, Any], where: str, *,
                   full: bool) -> list[str]:
    """What is wrong with one set of field matchers (``where``: its field path)."""
    problems = []
    for key, value in specs.items():
        if key not in FIELD_NAMES:
            problems.append(f"{where}.{key}: unknown field (known: "
                            f"{', '.join(sorted(FIELD_NAMES))})")
            continue
        try:
            compile_field(key, value)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    if full:
        # a UDP expectation has no TCP flags to compare (they are "" on a datagram);
        # an ICMP (or ICMPv6) one has no ports, but a type and a code
        proto = specs.get("proto", trace.defaults.get("proto", "tcp"))
        needed = {"udp": ("src", "dst", "sport", "dport"),
                  "icmp": ("src", "dst", "icmp_type", "icmp_code"),
                  "icmpv6": ("src", "dst", "icmp_type", "icmp_code")}.get(
            proto, ("src", "dst", "sport", "dport", "flags"))
        missing = [k for k in needed if k not in specs and k not in trace.defaults]
        if missing:
            problems.append(f"{where}: an expectation compares every field; "
                            f"missing {', '.join(missing)}")
    return problems


def _claim_problems(trace: Trace, ci: int, claim: Claim) -> list[str]:
    problems: list[str] = []
    names: list[str] = []
    for ei, exp in enumerate(claim.expect):
        where = f"claims[{ci}].expect[{ei}]"
        problems += _spec_problems(trace, exp.field_specs(), where, full=True)
        if exp.after is not None and exp.after not in names:
            problems.append(f"{where}.after: {excerpt(exp.after)} is not an earlier expectation of "
                            f"claim {excerpt(claim.name)}")
        # one name twice: variants of one expectation, each for its own datapaths
        twin = next((e for e in claim.expect[:ei] if e.name == exp.name), None)
        if twin is not None and (twin.datapath is None or exp.datapath is None):
            problems.append(f"{where}.name: {excerpt(exp.name)} is already an expectation of "
                            f"claim {excerpt(claim.name)} (variants for different datapaths "
                            "each say datapath:)")
        names.append(exp.name)
    for ni, nev in enumerate(claim.never):
        where = f"claims[{ci}].never[{ni}]"
        problems += _spec_problems(trace, nev.field_specs(), where, full=False)
        if nev.before is not None and nev.before not in names:
            problems.append(f"{where}.before: {excerpt(nev.before)} is not an expectation of "
                            f"claim {excerpt(claim.name)}")
    return problems


def _compile_all(trace: Trace, source: str) -> None:
    """Compile every field matcher once, so that bad ones are reported at load time (all)."""
    problems = _spec_problems(trace, trace.defaults, "defaults", full=False)
    problems += _spec_problems(trace, trace.flows.start.match, "flows.start.match", full=False)
    for i, rule in enumerate(trace.flows.bind):
        problems += _spec_problems(trace, rule.match, f"flows.bind[{i}].match", full=False)
    for ci, claim in enumerate(trace.claims):
        problems += _claim_problems(trace, ci, claim)
    if problems:
        raise TraceError("\n".join(f"{source}: {p}" for p in problems))


def parse_trace(data: Any, source: str | Path = "<trace>") -> Trace:
    if not isinstance(data, dict):
        raise TraceError(f"{source}: (top level): expected a mapping")
    try:
        trace = Trace.model_validate(data)
    except ValidationError as exc:
        raise TraceError(validation_message(source, exc, Trace)) from None
    _compile_all(trace, str(source))
    return trace.model_copy(update={"source": Path(source)})


def load_trace(path: str | Path) -> Trace:
    p = Path(path)
    return parse_trace(read_yaml(p, TraceError), p)


__all__ = ["Claim", "Coverage", "FieldSpec", "PacketSpec", "PointRef", "Trace", "TraceError",
           "load_trace", "parse_trace"]
