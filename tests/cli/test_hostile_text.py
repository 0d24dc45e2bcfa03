"""Control characters in what ``dsrlab`` prints are shown escaped, never sent raw.

A file name, a run id, a home folder or a scenario's field may hold ESC
sequences (OSC ``ESC ] 0 ;`` retitles a terminal, CSI ``ESC [ 2 J`` clears
it), C1 controls (``\\x9b`` is a CSI on some terminals), bidi overrides
(U+202E turns ``gpj.exe`` around) or line separators. On a terminal and piped,
they show as ``\\x1b``, ``\\x9b``, ``\\u202e``; Rich's own colours stay.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from scapy.utils import wrpcap

from lab.cli import output
from tests.cli.helpers import dsrlab, dsrlab_on_terminal
from tests.seed import SEED_SCENARIO_PATH, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH, client_syn

OSC = "\x1b]0;retitled\x07"
CSI = "\x1b[2J"
HOSTILE = [OSC, CSI, "\x9b31m", "\u202egpj.exe", "\u2066iso\u2069", "a\u2028b", "z\x7fz",
           "\x08back"]
RAW = ("\x1b]", "\x1b[2J", "\x9b", "\u202e", "\u2066", "\u2028", "\x7f")


def _no_raw(text: str) -> None:
    for raw in RAW:
        assert raw not in text, (raw, text)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_scenario_path_is_escaped_piped(hostile: str) -> None:
    out = dsrlab("run", f"/nonexistent/x{hostile}.yaml")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    _no_raw(out.stderr + out.stdout)
    assert out.stderr.startswith("error: /nonexistent/x"), out.stderr


def test_a_hostile_scenario_path_is_escaped_on_a_terminal() -> None:
    out = dsrlab_on_terminal("run", f"/nonexistent/x{OSC}\u202e{CSI}.yaml")
    _no_raw(out.stdout)
    assert "\\x1b]0;retitled" in out.stdout
    assert "\\u202e" in out.stdout
    assert "\x1b[31m" in out.stdout  # Rich's colour of "error:" is still there


def test_a_hostile_pcap_name_in_a_review_table(tmp_path: Path) -> None:
    pcap = tmp_path / f"c{OSC}\u202e\x9b.pcap"
    wrpcap(str(pcap), [client_syn()])
    piped = dsrlab("review", str(pcap))
    assert piped.returncode == 0, piped.stderr
    _no_raw(piped.stdout + piped.stderr)
    assert "\\x1b]0;retitled" in piped.stdout
    term = dsrlab_on_terminal("review", str(pcap))
    _no_raw(term.stdout)
    assert "\\u202e" in term.stdout


def test_a_hostile_home_in_wireshark_and_a_hostile_run_id(tmp_path: Path) -> None:
    home = tmp_path / f"h{OSC}"
    home.mkdir()
    out = dsrlab("wireshark", env={"HOME": str(home)})
    assert out.returncode == 0, out.stderr
    _no_raw(out.stdout + out.stderr)
    down = dsrlab("down", f"ab{OSC}\u202e")
    assert down.returncode != 0
    _no_raw(down.stdout + down.stderr)


def test_a_scenario_with_hostile_fields_is_one_escaped_error(tmp_path: Path) -> None:
    data = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    data.update(topology=str(SEED_TOPOLOGY_PATH), trace=str(SEED_TRACE_PATH),
                client=f"cl{OSC}", description=f"d{CSI}\u202e")
    data["target"]["node"] = "n\u2028\x9b"
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(data))
    out = dsrlab("run", str(path))
    assert out.returncode == 1
    _no_raw(out.stdout + out.stderr)
    assert "client: no host 'cl\\x1b]0;retitled\\x07'" in out.stderr
    assert "target.node: no node 'n\\u2028\\x9b'" in out.stderr


def test_tables_notes_and_prints_escape_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's own printing paths: Rich tables, notes, Text and plain strings."""
    buf = io.StringIO()
    term = output.escaping_console(file=buf, force_terminal=True, highlight=False,
                                   emoji=False, soft_wrap=True, width=200)
    monkeypatch.setattr(output, "console", term)
    monkeypatch.setattr(output, "err", term)
    output.table(("name", "value"), [(f"a{OSC}", f"b\u202e{CSI}")], title=f"t{OSC}")
    output.note("note", f"n{OSC}\x9b")
    term.print(f"s{OSC}", markup=False)
    term.print(output.styled(f"y{CSI}", "red"))
    with output.status(f"spin{OSC}") as update:
        update(f"spun{CSI}")
    _no_raw(buf.getvalue())
    assert buf.getvalue().count("\\x1b]0;retitled") == 4
    assert "\x1b[31m" in buf.getvalue()  # the style's own escape code


def test_a_piped_table_escapes_every_cell() -> None:
    lines = output.plain_table(("a", "b"), [(f"x{OSC}", "\u202ey\x9b")])
    text = "\n".join(lines)
    _no_raw(text)
    assert lines[1].split() == ["x\\x1b]0;retitled\\x07", "\\u202ey\\x9b"]
