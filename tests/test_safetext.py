"""lab.safetext: how the lab shows a value from outside (escaped, one line, short)."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from markupsafe import Markup

from lab.safetext import (
    _UNSAFE,
    EXCERPT_CHARS,
    UNSAFE_CATEGORIES,
    escaped,
    excerpt,
    for_template,
    one_line,
)


def test_the_class_holds_every_unsafe_code_point_of_this_python() -> None:
    unsafe = [chr(i) for i in range(sys.maxunicode + 1)
              if unicodedata.category(chr(i)) in UNSAFE_CATEGORIES]
    assert [c for c in unsafe if not _UNSAFE.fullmatch(c)] == []
    assert all(not c.isprintable() for c in unsafe)  # the fast path sees each of them
    sample = [chr(i) for i in range(0, sys.maxunicode + 1, 7)]
    assert [c for c in sample if _UNSAFE.fullmatch(c)
            and unicodedata.category(c) not in UNSAFE_CATEGORIES] == []


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: retitles a terminal
    ("\x1b[2J\x1b[31m", "\\x1b[2J\\x1b[31m"),  # CSI: clears, colours
    ("\x9b31m", "\\x9b31m"),  # C1 CSI
    ("\x7f\x00\x08\r", "\\x7f\\x00\\x08\\r"),
    ("abc\u202eexe.txt", "abc\\u202eexe.txt"),  # right-to-left override
    ("\u2066x\u2069\u200f\u061c", "\\u2066x\\u2069\\u200f\\u061c"),  # isolates, marks
    ("a\u2028b\u2029", "a\\u2028b\\u2029"),  # separators some viewers break lines at
    ("\u200b\ufeff\U000e0041", "\\u200b\\ufeff\\U000e0041"),  # zero-width, BOM, tag
    ("two\nlines\tand tab", "two\nlines\tand tab"),  # kept
    ("é ü 中文 ✓ → │", "é ü 中文 ✓ → │"),  # printable text as it is
])
def test_escaped(raw: str, shown: str) -> None:
    assert escaped(raw) == shown


def test_one_line_escapes_newlines_too() -> None:
    assert one_line("a\nb\t\x1b\u202e\xa0") == "a\\nb\\t\\x1b\\u202e\\xa0"
    assert escaped("a\nb", keep="") == "a\\nb"


def test_excerpt_is_short_escaped_and_says_how_long() -> None:
    assert excerpt("short") == "'short'"
    long = "-----BEGIN PRIVATE KEY-----" + "A" * 5000
    shown = excerpt(long)
    assert shown == repr(long[:EXCERPT_CHARS]) + f"... ({len(long)} characters)"
    assert excerpt(b"\x00" * 100).endswith("... (100 bytes)")
    assert excerpt("\x1b]0;x\x07") == "'\\x1b]0;x\\x07'"
    assert excerpt(list(range(1000))).endswith(" characters)")
    assert len(excerpt(list(range(1000)))) < EXCERPT_CHARS + 30


def test_for_template_keeps_markup_numbers_and_none() -> None:
    assert for_template(Markup("<b>\x1b</b>")) == Markup("<b>\x1b</b>")
    assert for_template(3) == 3
    assert for_template(None) is None
    assert for_template("\x1b") == "\\x1b"
    assert for_template(ValueError("\u202e")) == "\\u202e"
