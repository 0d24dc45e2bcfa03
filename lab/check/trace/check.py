"""Checking an expected trace against a capture set: verdicts and per-field diffs.

For every flow (found by the trace's ``flows.start`` rule), every claim's
expectations are matched in order at the claim's capture point, with the
flow's variables bound on first match and reused on every hop. A miss
reports the closest packet seen there and a field-by-field diff; a
``never`` rule that matches reports the offending packet. Everything here
reads the capture directory only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.capture.capdir import CaptureDir, PointFile
from lab.capture.layout import MANIFEST
from lab.check.trace.fields import (
    IMPLIED_DEFAULTS,
    IMPLIED_IHL,
    Env,
    FieldSpec,
    Outcome,
    Ref,
    Unbound,
    compile_field,
    field_value,
)
from lab.check.trace.model import (
    BindRule,
    Claim,
    NeverSpec,
    PacketSpec,
    PointRef,
    Trace,
    TraceError,
)
from lab.check.trace.results import CheckResult, ClaimVerdict, FieldDiff, FlowInfo, TraceResult
from lab.wire.dsropt import hostport

if TYPE_CHECKING:
    from collections.abc import Iterator

    from lab.wire.packets import Pkt

# how far a packet is from an expectation when this field differs: a packet of
# another kind (protocol, TCP flags) is further away than one with other addresses
_MISS_COST = {"proto": 4, "flags": 3}


@dataclass(frozen=True)
class _At:
    """One claim being checked for one flow at one capture point."""

    claim: Claim
    flow_id: str
    point: PointFile
    pkts: list[Pkt]
    env: Env


class _Checker:
    def __init__(self, trace: Trace, capdir: CaptureDir) -> None:
        self.trace = trace
        self.capdir = capdir
        m = capdir.manifest
        svc = capdir.service
        missing = [name for name, value in (("client.ip", capdir.client_ip),
                                            ("service.ip", svc.ip), ("service.port", svc.port))
                   if not value]
        if missing:
            raise TraceError(f"{capdir.directory / MANIFEST}: the trace needs client.ip, "
                             f"service.ip and service.port ({', '.join(missing)} missing or "
                             f"wrong)")
        # the manifest's lists stay data: traces name them (one_of, covers, $backends)
        values = {"client": capdir.client_ip, "service": {"ip": svc.ip, "port": svc.port},
                  "backends": m.named_list("backends") or []}
        self.base = Env(values=values, choices={}, option_order=capdir.option_order)
        for var, spec in trace.vars.items():
            cands = m.named_list(spec.one_of)
            if cands is None:
                raise TraceError(f"{trace.source}: vars.{var}.one_of: the manifest has no list "
                                 f"{spec.one_of!r}")
            self.base.choices[var] = [dict(c) for c in cands]
        self.defaults = {**IMPLIED_DEFAULTS, **trace.defaults}

    # -- capture access -------------------------------------------------------
    def resolve_point(self, ref: PointRef, env: Env) -> PointFile:
        host = ref.host
        if host is not None and host.startswith("$"):
            r = Ref.parse(host)
            if r is None:
                raise ValueError(f"bad host reference {host!r}")
            host = str(_short(r.resolve(env)))
        found = [p for p in self.capdir.points
                 if (ref.role is None or p.role == ref.role)
                 and (host is None or p.host == host)
                 and (ref.name is None or p.name == ref.name)]
        if len(found) != 1:
            what = f"{ref.describe()}" + (f" (host {host})" if host != ref.host else "")
            raise LookupError(f"{len(found)} capture points match {what}")
        return found[0]

    # -- matching --------------------------------------------------------------
    @staticmethod
    def compile(specs: dict[str, Any]) -> list[FieldSpec]:
        return [compile_field(k, v) for k, v in specs.items()]

    def full_specs(self, exp: PacketSpec) -> list[FieldSpec]:
        specs = {**self.defaults, **exp.field_specs()}
        if "ihl" not in specs:  # 5 or 7 for IPv4 by its DSR carrier, n/a for IPv6
            specs["ihl"] = {IMPLIED_IHL: specs.get("dsr") != "none"}
        return self.compile(specs)

    @staticmethod
    def evaluate(pkt: Pkt, specs: list[FieldSpec], env: Env) -> tuple[bool, list[Outcome]]:
        """All fields of one packet; bindings of earlier fields apply to later ones."""
        trial = env.child()
        outcomes = []
        for spec in specs:
            out = spec.check(pkt, trial)
            outcomes.append(out)
            if out.ok:
                trial.bind(out.bindings)
        return all(o.ok for o in outcomes), outcomes

    @staticmethod
    def matches(pkt: Pkt, specs: list[FieldSpec], env: Env) -> dict[str, Any] | None:
        """The bindings of one packet when all its fields hold, else None: as
        :meth:`evaluate`, but it stops at the first field that does not hold."""
        trial = env
        bindings: dict[str, Any] = {}
        for spec in specs:
            out = spec.check(pkt, trial)
            if not out.ok:
                return None
            if out.bindings:
                if trial is env:
                    trial = env.child()
                trial.bind(out.bindings)
                bindings.update(out.bindings)
        return bindings

    def scan(self, pkts: list[Pkt], specs: list[FieldSpec],
             env: Env) -> Iterator[tuple[int, Pkt, dict[str, Any]]]:
        """Every packet of ``pkts`` whose fields all hold: position, packet, bindings.

        A reference to a name neither bound nor a choice raises :class:`Unbound`
        whatever the packet; every field is tried on the first packet, so that a scan
        stopped early at each packet says so as a whole evaluation would."""
        if pkts:
            self.evaluate(pkts[0], specs, env)
        for pos, p in enumerate(pkts):
            bindings = self.matches(p, specs, env)
            if bindings is not None:
                yield pos, p, bindings

    @staticmethod
    def diff(specs: list[FieldSpec], outcomes: list[Outcome]) -> list[FieldDiff]:
        return [FieldDiff(s.label, o.expected, o.got, o.ok)
                for s, o in zip(specs, outcomes, strict=True)]

    def closest(self, pkts: list[Pkt], specs: list[FieldSpec],
                env: Env) -> tuple[Pkt | None, list[FieldDiff]]:
        best: tuple[int, Pkt, list[Outcome]] | None = None
        for p in pkts:
            _, outs = self.evaluate(p, specs, env)
            cost = sum(_MISS_COST.get(s.field, 1) for s, o in zip(specs, outs, strict=True)
                       if not o.ok)
            if best is None or cost < best[0]:
                best = (cost, p, outs)
        if best is None:
            return None, []
        return best[1], self.diff(specs, best[2])

    def first_match(self, pkts: list[Pkt], specs: list[FieldSpec],
                    env: Env) -> tuple[int, Pkt, dict[str, Any]] | None:
        return next(self.scan(pkts, specs, env), None)

    def capture_checks(self) -> list[CheckResult]:
        """A capture that lost packets (tcpdump: "dropped by kernel") cannot show what
        did not happen: each such point fails here, saying so, whatever else holds."""
        return [CheckResult("flows", None, p.name, "capture-complete", "capture", False,
                            f"tcpdump at {p.name} lost {p.missing} packets (dropped by the "
                            "kernel, or unread when it was stopped): this capture is "
                            "incomplete, no claim about it can be trusted")
                for p in self.capdir.manifest.points if p.missing]

    # -- flows -------------------------------------------------------------------
    def find_flows(self) -> tuple[list[tuple[str, Env]], list[CheckResult]]:
        rule = self.trace.flows.start
        checks: list[CheckResult] = []
        point = self.resolve_point(rule.point, self.base)
        specs = self.compile(rule.match)
        flows: dict[str, Env] = {}
        for _, p, bindings in self.scan(self.capdir.packets(point), specs, self.base):
            env = self.base.child()
            env.bind(bindings)
            env.bind({var: field_value(p, f, env) for var, f in rule.bind.items()})
            flow_id = p.endpoint("src")
            flows.setdefault(flow_id, env)
        n_min = self.trace.flows.min
        checks.append(CheckResult(
            "flows", None, point.name, "start", "flows", len(flows) >= n_min,
            f"{len(flows)} flows found (want at least {n_min})"
            + ("" if flows else f"; no packet at {point.name} matched the start rule "
               f"({len(self.capdir.packets(point))} packets in the capture)")))
        for flow_id, env in flows.items():
            for i, b in enumerate(self.trace.flows.bind):
                checks.append(self.apply_bind(flow_id, env, b, i))
        return list(flows.items()), checks

    def apply_bind(self, flow_id: str, env: Env, rule: BindRule, index: int) -> CheckResult:
        name = f"bind-{index}"
        try:
            point = self.resolve_point(rule.point, env)
            hit = self.first_match(self.capdir.packets(point), self.compile(rule.match), env)
        except (LookupError, ValueError) as exc:
            return CheckResult("flows", flow_id, None, name, "flows", False, str(exc))
        if hit is None:
            return CheckResult("flows", flow_id, point.name, name, "flows", False,
                               f"no packet binds {', '.join(rule.match)} for this flow")
        _, pkt, bindings = hit
        env.bind(bindings)
        env.bind({var: field_value(pkt, f, env) for var, f in rule.bind.items()})
        bound = ", ".join(f"{k}={_short(v)}" for k, v in bindings.items())
        return CheckResult("flows", flow_id, point.name, name, "flows", True,
                           f"bound {bound or 'nothing new'}", packet=pkt.frame)

    # -- claims ------------------------------------------------------------------
    def check_claim(self, claim: Claim, flow_id: str, env: Env) -> list[CheckResult]:
        try:
            point = self.resolve_point(claim.point, env)
        except Unbound as exc:
            return [CheckResult(claim.name, flow_id, None, "point", "expect", False,
                                f"capture point depends on unbound {exc}")]
        except LookupError as exc:
            return [CheckResult(claim.name, flow_id, None, "point", "expect", False, str(exc))]
        at = _At(claim, flow_id, point, self.capdir.packets(point), env)
        results: list[CheckResult] = []
        anchors: dict[str, int] = {}  # expectation name -> position after which the next looks
        prev = -1
        for exp in claim.expect:
            start = anchors.get(exp.after, prev) if exp.after else prev
            results.append(self.check_expect(at, exp, start, anchors))
            prev = anchors.get(exp.name, prev)
        results += [self.check_never(at, nev, anchors.get(nev.before or ""))
                    for nev in claim.never]
        return results

    def check_expect(self, at: _At, exp: PacketSpec, start: int,
                     anchors: dict[str, int]) -> CheckResult:
        kind = "count" if exp.count else "expect"
        base = CheckResult(at.claim.name, at.flow_id, at.point.name, exp.name, kind, False)
        pkts, env, point = at.pkts, at.env, at.point
        try:
            specs = self.full_specs(exp)
            window = pkts[start + 1:]
            if exp.count is None:
                hit = self.first_match(window, specs, env)
                if hit is not None:
                    pos, pkt, bindings = hit
                    env.bind(bindings)
                    env.bind({var: field_value(pkt, f, env) for var, f in exp.bind.items()})
                    anchors[exp.name] = start + 1 + pos
                    base.passed, base.packet = True, pkt.frame
                    base.message = pkt.summary() + _variant(exp)
                    return base
                base.message = "no packet matched" + ("" if pkts else
                                                      f" (the capture at {point.name} is empty)"
                                                      ) + _variant(exp)
            else:
                matched = [p for _, p, _ in self.scan(window, specs, env)]
                lo, hi = exp.count.min, exp.count.max
                n = len(matched)
                base.passed = n >= lo and (hi is None or n <= hi)
                want = f">= {lo}" + (f" and <= {hi}" if hi is not None else "")
                base.message = f"{n} packets matched (want {want})" + _variant(exp)
                if matched:
                    base.packet = matched[0].frame
                    anchors[exp.name] = pkts.index(matched[-1])
                if base.passed or matched:
                    return base
            pool = window or pkts
            near, diff = self.closest(pool, specs, env)
            if near is not None:
                base.closest, base.closest_summary, base.diff = near.frame, near.summary(), diff
        except Unbound as exc:
            base.message = f"unbound {exc} (an earlier binding failed)"
        return base

    def check_never(self, at: _At, nev: NeverSpec, end: int | None = None) -> CheckResult:
        """``end``: the position of ``nev.before``'s match (every packet when it has
        none: that expectation fails on its own)."""
        res = CheckResult(at.claim.name, at.flow_id, at.point.name, nev.name, "never", True)
        pkts, env = (at.pkts if end is None else at.pkts[:end]), at.env
        try:
            specs = self.compile(nev.field_specs())
            for _, p, _ in self.scan(pkts, specs, env):
                _, outs = self.evaluate(p, specs, env)
                res.passed, res.packet = False, p.frame
                res.message = f"a packet that must never appear here: {p.summary()}"
                res.closest_summary = p.summary()
                res.diff = self.diff(specs, outs)
                return res
            ahead = f" ahead of {nev.before}" if end is not None else ""
            res.message = f"none of {len(pkts)} packets{ahead} matched"
        except Unbound as exc:
            res.passed, res.message = False, f"unbound {exc}"
        return res

    def run(self) -> TraceResult:
        flows, flow_checks = self.find_flows()
        verdicts = [ClaimVerdict("flows", "Flows found and their variables bound",
                                 [*self.capture_checks(), *flow_checks])]
        infos = {fid: FlowInfo(fid, {}) for fid, _ in flows}
        for claim in self.trace.claims:
            verdict = ClaimVerdict(claim.name, claim.title)
            for flow_id, env in flows:
                verdict.checks += self.check_claim(claim, flow_id, env)
            if not flows:
                verdict.checks.append(CheckResult(claim.name, None, None, "flows", "flows", False,
                                                  "no flow to check (see flows/start)"))
            verdicts.append(verdict)
        for cov in self.trace.coverage:
            verdict = ClaimVerdict(cov.name, cov.title)
            members = self.capdir.manifest.named_list(cov.covers) or []
            bound = [_short(env.values.get(cov.var)) for _, env in flows]
            for m in members:
                name = _short(m)
                n = bound.count(name)
                verdict.checks.append(CheckResult(
                    cov.name, None, None, name, "coverage", n > 0,
                    f"{name} bound to ${cov.var} in {n} of {len(flows)} flows"))
            if not members:
                verdict.checks.append(CheckResult(cov.name, None, None, cov.covers, "coverage",
                                                  False, f"the manifest lists no {cov.covers}"))
            verdicts.append(verdict)
        for flow_id, env in flows:
            info = infos[flow_id]
            info.bindings = {k: _short(v) for k, v in env.values.items()
                             if k not in self.base.values}
            info.passed = all(c.passed for v in verdicts for c in v.checks if c.flow == flow_id)
        mf = self.capdir.manifest
        return TraceResult(mf.scenario or self.trace.scenario, mf.run_id,
                           str(self.trace.source or ""), tuple(infos.values()), tuple(verdicts),
                           datapath=mf.datapath.model_dump())


def _variant(exp: PacketSpec) -> str:
    """`` (on cilium<1.14: why)`` for an expectation made for some datapaths only."""
    return f" (on {exp.datapath}: {exp.why})" if exp.datapath else ""


def _short(v: Any) -> Any:
    if isinstance(v, dict):
        return v.get("name") or (hostport(str(v["ip"]), v["port"]) if {"ip", "port"} <= v.keys()
                                 else v)
    return v


def check_trace(trace: Trace, capdir: CaptureDir) -> TraceResult:
    """Check ``trace`` against the capture set in ``capdir``: what holds on the datapath
    its manifest names (a trace's ``datapath:`` keys)."""
    dp = capdir.manifest.datapath
    return _Checker(trace.for_datapath(dp.name or "lab", dp.version), capdir).run()
