"""The Jinja2 environment over the templates shipped in ``lab/report/templates``."""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from lab.report.model import ReportModel
from lab.safetext import for_template


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


@cache
def environment() -> Environment:
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
    return env


def render_html(model: ReportModel) -> str:
    return environment().get_template("report.html.j2").render(m=model)


def render_markdown(model: ReportModel) -> str:
    return environment().get_template("report.md.j2").render(m=model)
