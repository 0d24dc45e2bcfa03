"""Which datapaths an expectation holds on: ``datapath: cilium<1.14`` in a trace.

A trace's claims hold on every datapath unless one says otherwise, and says
why: where the lab's model and a Cilium release really behave differently
(Cilium 1.13 forwards the DSR SYN without lowering its TTL; 1.14 and the
lab's datapath lower it), an expectation, a ``never`` rule or a whole claim
carries ``datapath:`` with a ``why:``, and the checker keeps only those that
hold on the datapath the capture set's manifest names.

A selector is one or more terms separated by commas, any of which may match:
``lab`` (the lab's own ``dsr.c``), ``cilium`` (any version), or ``cilium``
with a comparison and a release line: ``cilium>=1.14``, ``cilium<1.14``,
``cilium==1.13``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_TERM = re.compile(r"^(?P<name>lab|cilium)(?:(?P<op>>=|<=|==|<|>)(?P<major>\d+)\.(?P<minor>\d+))?$")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")
_OPS: dict[str, Callable[[tuple[int, int], tuple[int, int]], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Term:
    name: str  # "lab" | "cilium"
    op: str | None = None
    line: tuple[int, int] | None = None

    def matches(self, name: str, version: str) -> bool:
        if name != self.name:
            return False
        if self.op is None or self.line is None:
            return True
        m = _VERSION.match(version)
        return m is not None and _OPS[self.op]((int(m[1]), int(m[2])), self.line)


@dataclass(frozen=True)
class Selector:
    text: str
    terms: tuple[Term, ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        """``text`` as a selector; :class:`ValueError` says what is wrong."""
        terms = []
        for raw in str(text).split(","):
            m = _TERM.match(raw.strip())
            if m is None:
                raise ValueError(f"{raw.strip()!r} is not a datapath: use lab, cilium, or "
                                 "cilium with >=, <=, ==, < or > and a release (cilium>=1.14)")
            if m["name"] == "lab" and m["op"]:
                raise ValueError("the lab's datapath has no versions: write lab")
            line = (int(m["major"]), int(m["minor"])) if m["op"] else None
            terms.append(Term(m["name"], m["op"], line))
        return cls(str(text).strip(), tuple(terms))

    def matches(self, name: str, version: str = "") -> bool:
        """Holds on the datapath ``name`` (``lab``, or ``""`` for a capture set from
        before the manifest said: the lab's) at ``version`` (Cilium's ``v1.13.0``)."""
        return any(t.matches(name or "lab", version) for t in self.terms)
