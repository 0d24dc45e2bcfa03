"""The Jinja2 environment over the templates shipped in ``lab/report/templates``."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import (
    Environment,
    FileSystemBytecodeCache,
    PackageLoader,
    StrictUndefined,
    select_autoescape,
)

from lab import settings
from lab.errors import LabError
from lab.report.model import ReportModel
from lab.safetext import for_template
from lab.wire.dsropt import hostport


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


@cache
def _hostport(obj: Any) -> str:
    """An object with ``ip`` and ``port`` as ``172.18.0.2:32000`` or ``[200::]:80``."""
    return hostport(str(obj.ip), obj.port)


def _bytecode_cache() -> FileSystemBytecodeCache | None:
    """Compiled templates kept beside the BPF objects (``<cache>/jinja``): a process
    that renders a report loads them instead of compiling the templates again (0.1 s
    a template). Keyed by each template's source; none when the cache folder cannot
    be made (the templates are then compiled, as before)."""
    try:
        folder = settings.cache_dir().parent / "jinja"
        folder.mkdir(exist_ok=True)
    except (LabError, OSError):
        return None
    return FileSystemBytecodeCache(str(folder))


@cache
def environment() -> Environment:
    """The one environment of this process: each template is compiled once in it
    (or loaded from the bytecode cache), then taken from its cache."""
    env = Environment(
        loader=PackageLoader("lab.report", "templates"),
        bytecode_cache=_bytecode_cache(),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "svg.j2"),
                                     default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=for_template,  # control characters escaped in HTML, SVG and Markdown
    )
    env.filters["ms"] = _ms
    env.filters["hostport"] = _hostport
    return env


def render_html(model: ReportModel) -> str:
    return environment().get_template("report.html.j2").render(m=model)


def render_markdown(model: ReportModel) -> str:
    return environment().get_template("report.md.j2").render(m=model)
