"""Control characters a capture set's files hold reach report.md and report.html
escaped: autoescape makes ``<`` safe in HTML but leaves ESC and U+202E as they are,
and Markdown escapes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from lab.report import build_report
from tests.report.test_report import _results, two_flows

OSC = "\x1b]0;retitled\x07"
RAW = ("\x1b", "\x9b", "\u202e", "\u2066", "\u2028", "\x7f", "\x07")


def test_hostile_strings_are_escaped_in_markdown_and_html(tmp_path: Path) -> None:
    directory = two_flows(tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.update(scenario=f"seed{OSC}", run_id="5ynth1\u202e", lb_mode="dsr\x9b")
    (directory / "manifest.json").write_text(json.dumps(manifest))
    results = _results(directory)
    claim = results["claims"][0]
    claim["title"] = f"LB node{OSC} \u2066iso\u2069 \u2028 <b>x</b>"
    claim["checks"][1]["message"] = "no packet matched\x1b[2J\x7f"
    results["diagnoses"] = [f"the client gave up{OSC}"]
    (directory / "results.json").write_text(json.dumps(results))
    files = build_report(directory)
    md = files.markdown.read_text()
    html = files.html.read_text()
    for text in (md, html):
        for raw in RAW:
            assert raw not in text, (raw, text[:300])
    assert "seed\\x1b]0;retitled\\x07" in md
    assert "LB node\\x1b]0;retitled\\x07 \\u2066iso\\u2069 \\u2028" in md
    assert "no packet matched\\x1b[2J\\x7f" in md
    assert "the client gave up\\x1b]0;retitled\\x07" in md
    assert "LB node\\x1b]0;retitled\\x07 \\u2066iso\\u2069 \\u2028 &lt;b&gt;x&lt;/b&gt;" in html
    assert "<b>x</b>" not in html  # autoescape still works with the escaping
    assert "5ynth1\\u202e" in html
