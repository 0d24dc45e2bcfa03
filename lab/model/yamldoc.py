"""Reading the lab's YAML documents (topologies, scenarios, traces); a bad
file is an error naming it (and the line, for YAML that does not parse).
Field errors are :mod:`lab.model.errors`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


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
