"""The one way the lab names a mistake in a document: ``file: field: message``.

Every loader of a lab document (topology, scenario, expected trace, capture
manifest) turns a pydantic :class:`~pydantic.ValidationError` into lines
through :func:`validation_lines`, so each reports *every* error, each with
the file and the field path (``nodes[1].ip``), and shows the offending
value where it is a scalar: a short, escaped excerpt (:func:`lab.safetext.excerpt`),
never a whole value (a file read where a document was expected is not echoed).
A key the document's model does not know is named with the keys it does and the
closest of them (``did you mean 'size'?``), when the loader passes its model.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

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


def _leaves(tp: Any) -> list[Any]:
    """The types a value of annotation ``tp`` may be: ``Annotated`` and unions opened,
    ``None`` left out."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _leaves(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(tp) for leaf in _leaves(arg)]
    return [] if tp is type(None) else [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _step(tps: list[Any], part: int | str) -> list[Any]:
    """The types one level down, at ``part`` (a list index or a key)."""
    out: list[Any] = []
    for tp in (leaf for t in tps for leaf in _leaves(t)):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if isinstance(part, int) and origin in (list, tuple) and args:
            out.append(args[0])
        elif isinstance(part, str) and _is_model(tp) and part in tp.model_fields:
            out.append(tp.model_fields[part].annotation)
        elif isinstance(part, str) and origin is dict and len(args) == 2:
            out.append(args[1])
    return out


def known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the mapping at ``loc`` of a ``model`` document may hold, in the model's
    order (none when ``loc`` leads nowhere the models know)."""
    tps: list[Any] = [model]
    for part in loc:
        # a tagged union's tag (``steps[0].datagram``) repeats a field name: stay put
        tps = _step(tps, part) or (tps if isinstance(part, str) else [])
    keys: list[str] = []
    for tp in (leaf for t in tps for leaf in _leaves(t)):
        if _is_model(tp):
            keys += [k for k, f in tp.model_fields.items()
                     if not f.exclude and k not in keys]
    return keys


def unknown_key_message(key: str, known: list[str]) -> str:
    """``unknown key; did you mean 'size'? (known keys: size, count, ...)``."""
    if not known:
        return "unknown key"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{guess} (known keys: {', '.join(known)})"


def validation_lines(source: str | Path, exc: ValidationError,
                     model: type[BaseModel] | None = None) -> list[str]:
    """One ``source: field: message`` line per error in ``exc``; with the document's
    ``model``, an unknown key is named with the keys known there."""
    lines = []
    for err in exc.errors():
        ctx_err = err.get("ctx", {}).get("error")
        if isinstance(ctx_err, FieldProblem):
            # a nested model's validator names fields relative to that model
            where = field_path(tuple(err["loc"])) if err["loc"] else ""
            lines += [f"{source}: {one_line(f'{where}.{field}' if where else field)}: "
                      f"{one_line(msg)}" for field, msg in ctx_err.problems]
            continue
        if err["type"] == "extra_forbidden" and err["loc"] and model is not None:
            loc = tuple(err["loc"])
            known = known_keys(model, loc[:-1])
            lines.append(f"{source}: {field_path(loc)}: "
                         f"{one_line(unknown_key_message(str(loc[-1]), known))}")
            continue
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or err["type"] == "missing" \
            else f" (got {excerpt(got)})"
        lines.append(f"{source}: {field_path(tuple(err['loc']))}: "
                     f"{one_line(err['msg'])}{shown}")
    return lines


def validation_message(source: str | Path, exc: ValidationError,
                       model: type[BaseModel] | None = None) -> str:
    """:func:`validation_lines` joined, one error a line."""
    return "\n".join(validation_lines(source, exc, model))
