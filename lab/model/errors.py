"""The one way the lab names a mistake in a document: ``file: field: message``.

Every loader of a lab document (topology, scenario, expected trace, capture
manifest) turns a pydantic :class:`~pydantic.ValidationError` into lines
through :func:`validation_lines`, so each reports *every* error, each with
the file and the field path (``nodes[1].ip``), and shows the offending
value where it is a scalar: a short, escaped excerpt (:func:`lab.safetext.excerpt`),
never a whole value (a file read where a document was expected is not echoed).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from lab.safetext import excerpt, one_line

__all__ = ["FieldProblem", "field_path", "one_line", "validation_lines", "validation_message"]


class FieldProblem(ValueError):
    """Cross-field problems raised inside a validator, each tied to its own field path.

    A validator can raise only one error; this one carries every problem it
    found, as ``(field, message)`` pairs, and :func:`validation_lines` gives
    each its own line.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: ``nodes[1].ip``; a key that is not
    a plain name shows quoted (``nodes[0]['a b']``)."""
    out = ""
    for i, part in enumerate(loc):
        if i and part == loc[i - 1] and isinstance(part, str):
            continue  # a tagged union's tag, named like its field (steps[0].datagram)
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += ("." if out else "") + part
        else:
            out += f"[{one_line(repr(part))}]"
    return out or "(top level)"


def validation_lines(source: str | Path, exc: ValidationError) -> list[str]:
    """One ``source: field: message`` line per error in ``exc``."""
    lines = []
    for err in exc.errors():
        ctx_err = err.get("ctx", {}).get("error")
        if isinstance(ctx_err, FieldProblem):
            # a nested model's validator names fields relative to that model
            where = field_path(tuple(err["loc"])) if err["loc"] else ""
            lines += [f"{source}: {one_line(f'{where}.{field}' if where else field)}: "
                      f"{one_line(msg)}" for field, msg in ctx_err.problems]
            continue
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or err["type"] == "missing" \
            else f" (got {excerpt(got)})"
        lines.append(f"{source}: {field_path(tuple(err['loc']))}: "
                     f"{one_line(err['msg'])}{shown}")
    return lines


def validation_message(source: str | Path, exc: ValidationError) -> str:
    """:func:`validation_lines` joined, one error a line."""
    return "\n".join(validation_lines(source, exc))
