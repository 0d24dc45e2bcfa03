"""The Jinja2 environment over the templates shipped in ``lab/report/templates``."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from lab.report.model import ReportModel
from lab.safetext import for_template
from lab.wire.dsropt import hostport


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


@cache
def _hostport(obj: Any) -> str:
    """An object with ``ip`` and ``port`` as ``172.18.0.2:32000`` or ``[200::]:80``."""
    return hostport(str(obj.ip), obj.port)


@cache
def environment() -> Environment:
    """The one environment of this process: each template is compiled once in it
    (about 0.1 s a template), then taken from its cache."""
    env = Environment(
        loader=PackageLoader("lab.report", "templates"),
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
