"""How a value from outside the lab is shown: control characters escaped, quotes short.

A scenario, a topology, a pcap, a path or an environment variable can hold
any character. Shown raw, ``ESC ] 0 ;`` retitles a terminal, ``ESC [ 2 J``
clears it, U+202E (right-to-left override) turns ``exe.txt`` around and a
newline starts a fake line in a log. Every place the lab shows such a value
goes through this module:

- :func:`escaped`: control and format characters (C0, DEL, C1, bidi
  overrides and isolates, zero-width characters, line and paragraph
  separators) as Python escapes (``\\x1b``, ``\\u202e``); newlines and tabs
  kept unless asked. The terminal (:mod:`lab.cli.output`), Markdown and
  HTML reports (:mod:`lab.report.render`, through :func:`for_template`) use it.
- :func:`one_line`: the same with newlines and tabs escaped too.
- :func:`excerpt`: a value quoted in an error message: its ``repr``, one
  line, at most :data:`EXCERPT_CHARS` characters, with its length when cut.

This module imports nothing of the lab; every layer may use it.
"""

from __future__ import annotations

import re

EXCERPT_CHARS = 60
"""At most this many characters of a value are quoted in an error message."""

# Cc: C0, DEL, C1; Cf: bidi marks, overrides and isolates, zero-width (joiner) characters,
# soft hyphen, BOM, tags; Zl/Zp: U+2028/U+2029, which some viewers take as a new line;
# Cs: lone surrogates. Every such code point of Unicode 14 (Python 3.11's unicodedata;
# tests/test_safetext.py checks the running Python's against it), as one class for speed
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    r"\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    r"\U000e0001\U000e0020-\U000e007f]")
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(c: str) -> str:
    code = ord(c)
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if c == "\r":
        return "\\r"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escaped(text: str, keep: str = "\n\t") -> str:
    """``text`` with every control or format character but those in ``keep``
    written as an escape (``\\x1b``, ``\\x9b``, ``\\u202e``); printable text as it is."""
    if text.isprintable():  # no Cc, Cf, Zl, Zp or Cs character: nothing to escape
        return text
    return _UNSAFE.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)


def one_line(text: str) -> str:
    """``text`` with every character that is not printable escaped, newlines and tabs
    included (``\\n``, ``\\x85``): a message line stays one line, whatever it quotes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``value`` as an error message quotes it: its ``repr``, one line, escaped, cut at
    ``limit`` characters (``'abc'... (5000 characters)``)."""
    if isinstance(value, bytes | str) and len(value) > limit:
        unit = "bytes" if isinstance(value, bytes) else "characters"
        return f"{one_line(repr(value[:limit]))}... ({len(value)} {unit})"
    text = one_line(repr(value))
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def for_template(value: object) -> object:
    """A Jinja2 ``finalize``: every ``{{ value }}`` of a report written with
    :func:`escaped` (autoescape makes ``<`` safe in HTML but leaves ``ESC`` and
    U+202E as they are, and Markdown has no escaping at all); markup the lab made
    itself (``__html__``), numbers and ``None`` as they are."""
    if hasattr(value, "__html__") or value is None or isinstance(value, int | float):
        return value
    return escaped(value if isinstance(value, str) else str(value))
