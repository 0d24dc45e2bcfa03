"""Field matchers of expected traces, and the names they carry in diffs.

Each field of a packet expectation compiles into a :class:`FieldSpec`:
an equality (a literal, a ``$name`` / ``$name.attr`` reference, or
``$name + N``), or a small operator (``has``/``lacks`` for TCP flags,
``not``, ``one_of``, ``min``/``max``, ``startswith``/``contains``/``regex``
for payloads). Checking a packet returns what was expected and what was
got, both as text, for the per-field diff (``[IP].src expected 172.18.0.2
got 10.0.2.123``), plus any variable the match binds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.wire import dsropt
from lab.wire.dsropt import hostport
from lab.wire.ipv4 import option_names

if TYPE_CHECKING:
    from lab.wire.packets import Pkt

# field -> (diff label, getter)
_Getter = Callable[["Pkt", "Env"], Any]


def _dsr_value(p: Pkt, env: Env) -> str:
    """The service a packet's DSR carrier names (IPv4 option, IPv6 option, Geneve
    option), ``ip:port`` / ``[ip]:port``, or ``none``."""
    value = p.dsr(env.option_order)
    return "none" if value is None else value.service


def _dsr_dispatch(p: Pkt, env: Env) -> str:
    """How the service travelled: ``opt`` (an IP option), ``geneve`` or ``none``."""
    value = p.dsr(env.option_order)
    return "none" if value is None else value.dispatch


def _dsr_family(p: Pkt, env: Env) -> int | str:
    """The family of the service the DSR carrier names (4 or 6), or ``none``."""
    value = p.dsr(env.option_order)
    return "none" if value is None else value.family


def _csum(ok: bool | None) -> str:
    return "n/a" if ok is None else ("valid" if ok else "invalid")


FIELDS: dict[str, tuple[str, _Getter]] = {
    "src": ("[IP].src", lambda p, e: p.src),
    "dst": ("[IP].dst", lambda p, e: p.dst),
    "proto": ("[IP].proto", lambda p, e: p.proto),
    "ihl": ("[IP].ihl", lambda p, e: p.ihl if p.family == 4 else None),
    "ip_len": ("[IP].len", lambda p, e: p.ip_len),
    "ttl": ("[IP].ttl", lambda p, e: p.ttl),
    # fragments: the IP ID (bind it from a first fragment, match the later ones by it),
    # the offset in bytes and the more-fragments flag
    "ip_id": ("[IP].id", lambda p, e: p.ip_id),
    "frag_offset": ("[IP].frag_offset", lambda p, e: p.frag_offset),
    "more_fragments": ("[IP].flags.MF", lambda p, e: p.more_fragments),
    "dsr": ("[IP].options.dsr", _dsr_value),
    # the DSR carrier's sub-fields: opt (IPv4 option 0x9a, IPv6 option 0x1b) or geneve,
    # and the service's family (4 or 6)
    "dsr_dispatch": ("[DSR].dispatch", _dsr_dispatch),
    "dsr_family": ("[DSR].family", _dsr_family),
    # the IP version of the (inner) packet, and an encapsulated frame's outer headers
    "family": ("[IP].version", lambda p, e: p.family),
    "outer_src": ("[Outer].src", lambda p, e: p.outer.src if p.outer else "none"),
    "outer_dst": ("[Outer].dst", lambda p, e: p.outer.dst if p.outer else "none"),
    # the options in order, by name, nop/end left out: "dsr,timestamp" ("" for none)
    "ip_options": ("[IP].options", lambda p, e: option_names(p.options)),
    "ip_csum": ("[IP].chksum", lambda p, e: _csum(p.ip_csum_ok if p.family == 4 else None)),
    "sport": ("[L4].sport", lambda p, e: p.sport),
    "dport": ("[L4].dport", lambda p, e: p.dport),
    "flags": ("[TCP].flags", lambda p, e: p.flags),
    # kept by every translation: follows a flow across a SNAT (bind it, match it later)
    "seq": ("[TCP].seq", lambda p, e: p.seq),
    "l4_csum": ("[L4].chksum", lambda p, e: _csum(p.l4_csum_ok)),
    "payload": ("[Raw].load", lambda p, e: p.payload.decode("latin-1")),
    "payload_len": ("[Raw].len", lambda p, e: p.payload_len),
    # ICMP (proto: icmp): type, code, a fragmentation-needed's MTU, the quoted packet
    "icmp_type": ("[ICMP].type", lambda p, e: p.icmp_type),
    "icmp_code": ("[ICMP].code", lambda p, e: p.icmp_code),
    "icmp_mtu": ("[ICMP].nexthopmtu", lambda p, e: p.icmp_mtu),
    "quoted_src": ("[ICMP][IPerror].src", lambda p, e: p.quoted[0] if p.quoted else None),
    "quoted_dst": ("[ICMP][IPerror].dst", lambda p, e: p.quoted[1] if p.quoted else None),
    "quoted_sport": ("[ICMP][IPerror].sport", lambda p, e: p.quoted[3] if p.quoted else None),
    "quoted_dport": ("[ICMP][IPerror].dport", lambda p, e: p.quoted[4] if p.quoted else None),
}
FIELD_NAMES = frozenset(FIELDS)
# compared when an expectation does not say otherwise ("everything else is compared")
IMPLIED_DEFAULTS: dict[str, Any] = {"proto": "tcp", "dsr": "none"}
# the IP header length an expectation implies when it does not give one: an IPv4 packet
# without options (5 words), or with the 8-byte DSR option when it expects DSR (7) but
# for Geneve dispatch (the service rides outside: 5); an IPv6 packet has none
IMPLIED_IHL = "implied"
DSR_PARTS = ("service", "dispatch", "family")
_REF = re.compile(r"^\$(?P<name>[a-z_][a-z0-9_]*)(?:\.(?P<attr>[a-z_][a-z0-9_]*))?"
                  r"(?:\s*(?P<op>[+-])\s*(?P<num>\d+))?$")


_ADDRESSES = frozenset(("src", "dst", "outer_src", "outer_dst"))
_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+):\d{1,5}$")


def _endpoint_text(text: str) -> str:
    """``[0200::0]:80`` -> ``[200::]:80``: an endpoint literal as the reader prints it."""
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        return hostport(str(ipaddress.IPv6Address(host[1:-1])), int(port))
    return text


class Unbound(LookupError):
    """A ``$name`` that no rule has bound (yet)."""


@dataclass
class Env:
    """What names mean while checking one flow: manifest values and flow bindings."""

    values: dict[str, Any]
    choices: dict[str, list[dict[str, Any]]]  # unbound one_of vars -> candidates
    option_order: dsropt.OptionOrder = "host"

    def child(self) -> Env:
        return Env(dict(self.values), {k: list(v) for k, v in self.choices.items()},
                   self.option_order)

    def bind(self, bindings: dict[str, Any]) -> None:
        for k, v in bindings.items():
            self.values[k] = v
            self.choices.pop(k, None)


@dataclass(frozen=True)
class Ref:
    """``$name``, ``$name.attr`` or ``$name.attr + N``."""

    text: str
    name: str
    attr: str | None
    offset: int

    @classmethod
    def parse(cls, text: str) -> Ref | None:
        m = _REF.match(text.strip())
        if m is None:
            return None
        off = int(m["num"] or 0) * (-1 if m["op"] == "-" else 1)
        return cls(text, m["name"], m["attr"], off)

    def resolve(self, env: Env) -> Any:
        if self.name not in env.values:
            raise Unbound(self.text)
        val = env.values[self.name]
        if self.attr is not None:
            if not isinstance(val, dict) or self.attr not in val:
                raise Unbound(f"{self.text} ({self.name} has no {self.attr!r})")
            val = val[self.attr]
        if self.offset:
            val = int(val) + self.offset
        return val

    def try_bind(self, env: Env, got: Any) -> tuple[bool, dict[str, Any], str]:
        """Compare (bound) or bind a one_of var to the candidate whose attr equals ``got``."""
        if self.name in env.values:
            want = self.resolve(env)
            return _same(want, got), {}, _text(want)
        if self.name in env.choices:
            cands = env.choices[self.name]
            for cand in cands:
                value = cand if self.attr is None else cand.get(self.attr)
                if _same(value, got):
                    return True, {self.name: cand}, _text(value)
            shown = [c if self.attr is None else c.get(self.attr) for c in cands]
            return False, {}, "one of " + ", ".join(_text(s) for s in shown)
        raise Unbound(self.text)


def _same(want: Any, got: Any) -> bool:
    if isinstance(want, int) and not isinstance(want, bool) and isinstance(got, int):
        return want == got
    return _text(want) == _text(got)


def _text(v: Any) -> str:
    if isinstance(v, dict) and {"ip", "port"} <= v.keys():
        return hostport(str(v["ip"]), v["port"])
    if isinstance(v, dict) and "name" in v:
        return str(v["name"])
    return "none" if v is None else str(v)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    expected: str
    got: str
    bindings: dict[str, Any]


class FieldSpec:
    """A compiled matcher for one field."""

    def __init__(self, field: str, spec: Any) -> None:
        self.field = field
        self.label = FIELDS[field][0]
        self.getter = FIELDS[field][1]
        self.spec = spec
        self._check = self._compile(spec)

    def _compile(self, spec: Any) -> Callable[[Any, Env], Outcome]:
        if self.field == "dsr" and isinstance(spec, dict) and spec \
                and set(spec) <= set(DSR_PARTS):
            return self._dsr_parts(spec)
        if self.field == "ihl" and isinstance(spec, dict) and set(spec) == {IMPLIED_IHL}:
            return lambda got, env: Outcome(True, "", "", {})  # see check()
        if isinstance(spec, dict):
            if spec and set(spec) <= {"min", "max"}:  # {min: 1}, {max: 9} or both
                op, arg = "range", spec
            elif len(spec) == 1:
                ((op, arg),) = spec.items()
            else:
                raise ValueError(f"one operator per field, got {sorted(spec)}")
            return self._operator(op, arg)
        if isinstance(spec, list):
            raise ValueError("a list is not a matcher; use {one_of: [...]}")
        return self._equals(spec)

    def _equals(self, spec: Any) -> Callable[[Any, Env], Outcome]:
        if self.field in _ADDRESSES and isinstance(spec, str) and spec.startswith("[") \
                and spec.endswith("]"):
            spec = "[" + spec[1:-1]  # an IPv6 address may be written [200::], as in [200::]:80
        if self.field in _ADDRESSES and isinstance(spec, str) and (
                ":" in spec or spec.startswith("[")) and not spec.startswith("$"):
            try:
                spec = str(ipaddress.IPv6Address(spec.lstrip("[")))  # as the reader prints it
            except ValueError:
                raise ValueError(f"{spec!r} is not an IP address") from None
        if self.field == "dsr" and isinstance(spec, str) and _ENDPOINT.match(spec):
            spec = _endpoint_text(spec)
        ref = Ref.parse(spec) if isinstance(spec, str) else None
        if isinstance(spec, str) and spec.startswith("$") and ref is None:
            raise ValueError(f"bad reference {spec!r} (use $name, $name.attr or $name.attr + N)")
        if self.field == "dsr" and ref is None and spec not in ("none", "any") \
                and not (isinstance(spec, str) and _ENDPOINT.match(spec)):
            raise ValueError("dsr is none, any, a reference such as $service, a service "
                             "such as 172.18.0.2:32000 or [200::]:80, or a mapping of "
                             "service, dispatch (opt, geneve) and family (4, 6)")
        if self.field == "dsr_dispatch" and spec not in ("opt", "geneve", "none"):
            raise ValueError("dsr_dispatch is opt, geneve or none")
        if self.field in ("dsr_family", "family") and spec not in (4, 6, "none"):
            raise ValueError(f"{self.field} is 4 or 6" + (" or none" if self.field ==
                                                           "dsr_family" else ""))
        if self.field in ("ip_csum", "l4_csum") and spec not in ("valid", "invalid"):
            raise ValueError("a checksum is valid or invalid")

        def check(got: Any, env: Env) -> Outcome:
            if ref is not None:
                ok, bindings, want = ref.try_bind(env, got)
                return Outcome(ok, want, _text(got), bindings)
            if self.field == "dsr" and spec == "any":
                return Outcome(got != "none", "any DSR option", _text(got), {})
            return Outcome(_same(spec, got), _text(spec), _text(got), {})

        return check

    def _dsr_parts(self, spec: dict[str, Any]) -> Callable[[Any, Env], Outcome]:
        """``dsr: {service: $service, dispatch: geneve, family: 6}``: each part given is
        compared (the getter then hands over the whole :class:`DsrValue`)."""
        parts = {k: FieldSpec(f"dsr_{k}" if k != "service" else "dsr", v)
                 for k, v in spec.items()}
        self.getter = lambda p, e: p.dsr(e.option_order)

        def check(got: Any, env: Env) -> Outcome:
            have = {"service": got.service if got else "none",
                    "dispatch": got.dispatch if got else "none",
                    "family": got.family if got else "none"}
            ok, bindings, want = True, {}, []
            for name, part in parts.items():
                out = part._check(have[name], env)
                ok = ok and out.ok
                bindings.update(out.bindings)
                want.append(f"{name} {out.expected}")
            shown = "none" if got is None else f"{got.service} via {got.dispatch} " \
                f"(IPv{got.family})"
            return Outcome(ok, ", ".join(want), shown, bindings if ok else {})

        return check

    def _operator(self, op: str, arg: Any) -> Callable[[Any, Env], Outcome]:
        if op in ("has", "lacks"):
            if self.field != "flags" or not isinstance(arg, str):
                raise ValueError(f"{op} takes TCP flag letters and works on flags only")
            letters = set(arg)

            def flags(got: Any, env: Env) -> Outcome:
                have = set(str(got))
                ok = letters <= have if op == "has" else not (letters & have)
                return Outcome(ok, f"{op} {arg}", _text(got), {})

            return flags
        if op == "not":
            inner = self._equals(arg)

            def negate(got: Any, env: Env) -> Outcome:
                out = inner(got, env)
                return Outcome(not out.ok, f"not {out.expected}", out.got, {})

            return negate
        if op == "one_of":
            if not isinstance(arg, list) or not arg:
                raise ValueError("one_of takes a non-empty list")
            options = [self._equals(a) for a in arg]

            def any_of(got: Any, env: Env) -> Outcome:
                outs = [o(got, env) for o in options]
                hit = next((o for o in outs if o.ok), None)
                return Outcome(hit is not None, "one of " + ", ".join(o.expected for o in outs),
                               _text(got), hit.bindings if hit else {})

            return any_of
        if op == "range":
            lo, hi = arg.get("min"), arg.get("max")

            def in_range(got: Any, env: Env) -> Outcome:
                ok = got is not None and (lo is None or got >= lo) and (hi is None or got <= hi)
                want = " and ".join(s for s in ((lo is not None and f">= {lo}") or "",
                                                (hi is not None and f"<= {hi}") or "") if s)
                return Outcome(bool(ok), want, _text(got), {})

            return in_range
        if op in ("startswith", "contains", "regex"):
            if self.field != "payload" or not isinstance(arg, str):
                raise ValueError(f"{op} takes a string and works on payload only")
            rx = re.compile(arg) if op == "regex" else None

            def text_op(got: Any, env: Env) -> Outcome:
                s = str(got)
                ok = (s.startswith(arg) if op == "startswith" else
                      arg in s if op == "contains" else bool(rx and rx.search(s)))
                return Outcome(ok, f"{op} {arg!r}", repr(s[:40]), {})

            return text_op
        raise ValueError(f"unknown operator {op!r}")

    def check(self, pkt: Pkt, env: Env) -> Outcome:
        if self.field == "ihl" and isinstance(self.spec, dict) and IMPLIED_IHL in self.spec:
            return _implied_ihl(pkt, env, expects_dsr=bool(self.spec[IMPLIED_IHL]))
        out = self._check(self.getter(pkt, env), env)
        if self.field == "dsr" and not out.ok and pkt.has_dsr_option and pkt.carrier is None:
            # say what the bytes were, and what they mean in the other byte order
            other: dsropt.OptionOrder = "network" if env.option_order == "host" else "host"
            ip, port = dsropt.decode(pkt.options, other)
            hint = f"{out.got} (bytes {pkt.options[:8].hex(' ')}; {other} order: {ip}:{port})"
            return Outcome(out.ok, out.expected, hint, out.bindings)
        return out


def _implied_ihl(pkt: Pkt, env: Env, *, expects_dsr: bool) -> Outcome:
    """The IHL an expectation implies (:data:`IMPLIED_IHL`), for this packet."""
    if pkt.family != 4:
        return Outcome(True, "n/a (IPv6)", "n/a", {})
    value = pkt.dsr(env.option_order)
    want = 7 if expects_dsr and (value is None or value.dispatch == "opt") else 5
    return Outcome(pkt.ihl == want, str(want), str(pkt.ihl), {})


def compile_field(field: str, spec: Any) -> FieldSpec:
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}")
    return FieldSpec(field, spec)


def field_value(pkt: Pkt, field: str, env: Env) -> Any:
    return FIELDS[field][1](pkt, env)
