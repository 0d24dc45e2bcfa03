"""A both run's "Compared with" section: compared.json in a capture set, in its report."""

from __future__ import annotations

import shutil
from pathlib import Path

from lab.check.capdiff import diff_folders, write_compared
from lab.report import build_report


def test_report_shows_the_comparison_and_links_the_other_set(
        seed_capture: Path, seed_capture_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "abcdef"
    shutil.copytree(seed_capture, other)
    d = diff_folders(seed_capture_copy, other)
    write_compared(seed_capture_copy, [d])
    files = build_report(seed_capture_copy)
    html = files.html.read_text()
    md = files.markdown.read_text()
    assert '<section id="compared">' in html
    assert 'href="../other/abcdef/report.html"' in html
    assert f"dsrlab diff {seed_capture_copy} {other}" in html
    for line in d.summary_lines():
        assert f"<li>{line}</li>" in html.replace("&#39;", "'")
        assert f"- {line}" in md
    assert "the same hop by hop" in md


def test_no_section_without_compared_json(seed_capture: Path) -> None:
    assert 'id="compared"' not in (seed_capture / "report.html").read_text()


def test_unreadable_compared_json_is_a_banner(seed_capture_copy: Path) -> None:
    (seed_capture_copy / "compared.json").write_text("{not json")
    html = build_report(seed_capture_copy).html.read_text()
    assert "Cannot read compared.json" in html
    assert '<section id="claims">' in html  # the rest of the report is all there
