"""Another Debian suite's apt source for the matrix's kernels, and only for them.

A kernel line of ``kernels/matrix.yaml`` may name a Debian suite (``suite:
bullseye``) whose kernel the running system's suite does not offer. For each
such suite the install step writes two files:

- ``<sources.list.d>/dsrlab-<suite>.sources``: deb822, Debian's main archive
  ``<suite>`` and its security archive ``<suite>-security``, signed by the
  debian-archive-keyring;
- ``<preferences.d>/dsrlab-<suite>``: every package of those two suites pinned
  to -1 (never installed, never an upgrade) except the kernel lines' package
  patterns, pinned to :data:`KERNEL_PRIORITY`.

apt reads a regular expression between slashes on a ``Package:`` line as a
POSIX extended regular expression that matches anywhere in the name: the
pattern is anchored here (``/^(pattern)$/``), and a pattern that uses Python-only
syntax is refused (:func:`ere_problem`). apt gives a record naming packages
(a name, glob or expression) precedence over a ``Package: *`` record, in any
order; the kernel's records come first anyway, for the reader.

A suite that is the running system's own (``VERSION_CODENAME`` of
``/etc/os-release``) gets nothing: its packages are the system's, never to be
pinned away. Files are written only when their content changes (through :mod:`lab.atomic`);
:func:`apply` says whether ``apt-get update`` is needed: a file changed, or
the suite's package lists are missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.atomic import write_text

SUITE_PATTERN = r"^[a-z][a-z0-9]*$"
# names of a moving release, not codenames: their meaning changes under the list
SUITE_ALIASES = frozenset({"stable", "oldstable", "oldoldstable", "testing", "unstable",
                           "experimental", "proposed-updates"})
ARCHIVE = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
KERNEL_PRIORITY = 500  # as a suite of sources.list: the kernel installs from there
BLOCKED_PRIORITY = -1  # never installed, never an upgrade
SOURCES_DIR = Path("/etc/apt/sources.list.d")
PREFERENCES_DIR = Path("/etc/apt/preferences.d")
LISTS_DIR = Path("/var/lib/apt/lists")
OS_RELEASE = Path("/etc/os-release")
PREFIX = "dsrlab-"
HEADER = "# Written by dsrlab (scripts/install-matrix.sh) for kernels/matrix.yaml: do not edit.\n"

# Python regular-expression syntax POSIX ERE (apt's) lacks or reads otherwise
_NOT_ERE = [
    (re.compile(r"\(\?"), "(?...) groups"),
    (re.compile(r"\\[dDwWsSbBAZ]"), "\\d, \\w, \\s, \\b and the like"),
    (re.compile(r"[*+?}]\?"), "lazy quantifiers"),
]


def suite_problem(suite: str) -> str | None:
    """Why ``suite`` is not a Debian codename this module accepts, or ``None``."""
    if not re.fullmatch(SUITE_PATTERN, suite):
        return f"{suite!r} is not a Debian suite codename (bullseye, bookworm...)"
    if suite in SUITE_ALIASES:
        return f"{suite!r} names a moving release: give its codename (bullseye, bookworm...)"
    return None


def ere_problem(pattern: str) -> str | None:
    """Why apt (POSIX extended regular expressions) would read ``pattern`` otherwise than
    Python does, or ``None``."""
    if "/" in pattern:
        return "a '/' ends apt's expression"
    for rx, what in _NOT_ERE:
        if rx.search(pattern):
            return f"apt's POSIX expressions have no {what}"
    return None


def apt_regex(pattern: str) -> str:
    """``pattern`` as apt's ``Package:`` expression matching whole names."""
    return f"/^({pattern})$/"


def sources_name(suite: str) -> str:
    return f"{PREFIX}{suite}.sources"


def preferences_name(suite: str) -> str:
    return f"{PREFIX}{suite}"


def sources_text(suite: str) -> str:
    """The deb822 sources file of ``suite``: its main and security archives."""
    blocks = [(ARCHIVE, suite), (SECURITY, f"{suite}-security")]
    return HEADER + "\n".join(
        f"Types: deb\nURIs: {uri}\nSuites: {name}\nComponents: main\nSigned-By: {KEYRING}\n"
        for uri, name in blocks)


def preferences_text(suite: str, patterns: Iterable[str]) -> str:
    """The preferences file of ``suite``: the kernel patterns at :data:`KERNEL_PRIORITY`,
    every other package of the suite (and of its security archive) at -1."""
    releases = [suite, f"{suite}-security"]
    records = [
        f"Explanation: dsrlab kernel matrix: this kernel from {release}\n"
        f"Package: {apt_regex(p)}\nPin: release n={release}\n"
        f"Pin-Priority: {KERNEL_PRIORITY}\n"
        for p in dict.fromkeys(patterns) for release in releases]
    records += [
        f"Explanation: dsrlab kernel matrix: nothing else from {release}\n"
        f"Package: *\nPin: release n={release}\nPin-Priority: {BLOCKED_PRIORITY}\n"
        for release in releases]
    return HEADER + "\n".join(records)


def lists_present(suite: str, lists: Path = LISTS_DIR) -> bool:
    """True when apt has the package lists of ``suite`` and ``suite``-security."""
    return all(any(lists.glob(f"*_dists_{name}_*Packages*"))
               for name in (suite, f"{suite}-security"))


def system_suite(os_release: Path = OS_RELEASE) -> str | None:
    """The running system's Debian codename (``VERSION_CODENAME``), None if unknown."""
    try:
        text = os_release.read_text()
    except OSError:
        return None
    m = re.search(r"^VERSION_CODENAME=[\"']?([a-z0-9]+)", text, re.M)
    return m.group(1) if m else None


@dataclass
class Applied:
    """What :func:`apply` did: the files it wrote and the suites apt must update."""

    written: list[Path] = field(default_factory=list)
    update: list[str] = field(default_factory=list)


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_text(path, text, mode=0o644)  # apt's files: world-readable
    return True


def apply(suites: Mapping[str, Iterable[str]], *, sources: Path = SOURCES_DIR,
          preferences: Path = PREFERENCES_DIR, lists: Path = LISTS_DIR,
          own: str | None = None) -> Applied:
    """Write the sources and preferences files of each ``{suite: kernel patterns}``
    where their content differs; nothing for an empty mapping, nor for ``own`` (the
    system's suite, whose sources are already there)."""
    done = Applied()
    for suite, patterns in suites.items():
        if suite == own:
            continue
        changed = False
        for path, text in ((sources / sources_name(suite), sources_text(suite)),
                           (preferences / preferences_name(suite),
                            preferences_text(suite, patterns))):
            if _write_if_changed(path, text):
                done.written.append(path)
                changed = True
        if changed or not lists_present(suite, lists):
            done.update.append(suite)
    return done
