"""The per-run report: HTML with a ladder per flow, a Markdown summary, a merged pcapng.

``build_report(capture_dir)`` writes ``report.html`` (self-contained: inline
CSS and SVG, no external resource) and ``report.md`` into the capture
directory, reading only that directory: ``manifest.json``, the pcaps and
``results.json`` when the trace checker left one.
``merge_pcapng(capture_dir, results)`` writes ``merged.pcapng``: every hop's
packets in time order, one interface per hop, the packets that matched an
expectation commented with its name. Run it first so the report links it.
Both take the directory or a :class:`~lab.capture.CaptureDir` already loaded
(the trace checker's): then no pcap is parsed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.atomic import write_text
from lab.capture.capdir import CaptureDir
from lab.report.model import ReportModel, build_model
from lab.report.pcapng import merge_pcapng
from lab.report.render import render_html, render_markdown

HTML = "report.html"
MARKDOWN = "report.md"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    status: str  # PASS, FAIL or NOT CHECKED (no results.json)


def build_report(capture_dir: Path | CaptureDir) -> ReportFiles:
    """Write ``report.html`` and ``report.md`` for the capture set in ``capture_dir``."""
    model = build_model(capture_dir)
    html = model.directory / HTML
    md = model.directory / MARKDOWN
    write_text(html, render_html(model))
    write_text(md, render_markdown(model))
    return ReportFiles(html, md, model.status)


__all__ = ["ReportFiles", "ReportModel", "build_model", "build_report", "merge_pcapng"]
