"""A diagnosis: one cause of broken connections, in one sentence, with the connections
it explains. The type every rule over a capture set returns (:mod:`lab.check.diagnose`
and the rules beside it), in a module of its own that imports none of them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Diagnosis:
    """One cause, said once, with the connections it explains."""

    cause: str  # a stable key: syn-lost, dropped-at-lb, fabric-dropped, option-stripped...
    line: str  # the sentence
    flows: list[str] = field(default_factory=list)  # client endpoints, "172.18.0.1:40000"

    def text(self) -> str:
        n = len(self.flows)
        return self.line + (f" ({n} connections)" if n > 1 else "")
