"""Reading lab documents: every bad file is one error naming it, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.model.topology import TopologyError, load_topology
from lab.model.yamldoc import MAX_BYTES
from tests.seed import SEED_TOPOLOGY_PATH

SEED = SEED_TOPOLOGY_PATH


def _error(path: Path) -> str:
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message, message
    return message[len(f"{path}: "):]


def test_a_binary_file_is_not_a_text_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"name: \xff\xfe\x00\x01 binary")
    assert _error(path) == "not a text file (byte 6 is not UTF-8)"


def test_control_characters_are_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"name: a\x00b\n")
    assert "not valid YAML: unacceptable character #x0000" in _error(path)


@pytest.mark.parametrize("text", ["a: " + "[" * 5000, "- " * 3000 + "x",
                                  "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 400))])
def test_deep_nesting_is_refused_without_recursion(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    assert "not valid YAML: nested more than 64 levels deep" in _error(path)


def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    text = SEED.read_text().replace("  mtu: 1500\n", "  mtu: 1500\n  mtu: 9000\n")
    path.write_text(text)
    line = text.splitlines().index("  mtu: 9000") + 1
    assert _error(path) == (f"line {line}, column 3: not valid YAML: duplicate key 'mtu' "
                            f"(first at line {line - 1})")


def test_a_duplicate_key_inside_a_flow_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(SEED.read_text().replace("{ name: cni-8zxj9,", "{ name: cni-8zxj9, name: x,"))
    assert "duplicate key 'name'" in _error(path)


def test_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text("a: &x [1, 2]\nb: [*x, *x, *x]\n")
    assert "aliases (*name) are not allowed" in _error(path)


def test_a_big_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(50 << 20)
    assert _error(path) == (f"file is {50 << 20} bytes, more than the limit of {MAX_BYTES} "
                            "(1 MiB)")


@pytest.mark.parametrize("kind", ["fifo", "dir", "/dev/zero", "/dev/null"])
def test_what_is_not_a_regular_file_is_never_read(tmp_path: Path, kind: str) -> None:
    path = Path(kind) if kind.startswith("/") else tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    expected = "a directory" if kind == "dir" else "not a regular file"
    assert _error(path) == f"cannot read file: {expected}"


def test_a_text_read_again_is_not_parsed_again_and_each_caller_gets_its_own_copy(
        tmp_path: Path) -> None:
    from lab.model import yamldoc  # noqa: PLC0415

    text = "a: {b: [1, 2, {c: 3}]}\ns: !!set {x, y}\n"
    first = yamldoc.parse_yaml(text, tmp_path / "one.yaml", ValueError)
    assert text in yamldoc._PARSED
    first["a"]["b"][2]["c"] = 99  # a caller changes its data in place
    first["a"]["b"].append(4)
    first["s"].add("z")
    again = yamldoc.parse_yaml(text, tmp_path / "two.yaml", ValueError)
    assert again == {"a": {"b": [1, 2, {"c": 3}]}, "s": {"x", "y"}}


def test_an_edited_file_is_read_as_it_is_now(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(SEED.read_text())
    assert load_topology(path).name == load_topology(SEED).name
    path.write_text(SEED.read_text().replace("name: ", "name: edited-", 1))
    assert load_topology(path).name.startswith("edited-")
    path.write_text(SEED.read_text() + "\nbogus: 1\n")
    assert "bogus" in _error(path)  # the error is the file's, never a cached success
