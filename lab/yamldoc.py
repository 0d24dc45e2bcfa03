"""YAML documents of the lab (topologies, scenarios, traces): reading them and
naming the place of a mistake, the one way every loader reports it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: ``nodes[1].ip``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


def read_yaml(path: Path, error: type[ValueError]) -> Any:
    """The parsed document; ``error`` names the file (and the line for bad YAML)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise error(f"{path}: {where}not valid YAML: {getattr(exc, 'problem', exc)}") from None
