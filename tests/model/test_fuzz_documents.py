"""Fuzz of the lab's documents: mutated topologies and capture manifests.

Each example starts from a real document (``topologies/seed.yaml``, a seed
manifest) and mutates it: values replaced by values of other types (markup,
brackets, addresses, huge numbers, nesting), keys dropped, added or
duplicated, lists emptied or repeated, and the text itself cut, doubled or
salted with bytes. Loading the result must either succeed or raise a
:class:`~lab.errors.LabError` whose every line starts with the file's path;
any other exception is a bug. ``DSRLAB_FUZZ_EXAMPLES`` sets the number of
examples (default 300, as the datapath fuzz); ``make fuzz`` runs 5,000.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.capture.capdir import CaptureDir
from lab.capture.layout import MANIFEST
from lab.errors import LabError
from lab.model.topology import load_topology
from tests.capture.test_manifest import seed_manifest
from tests.cli.helpers import DSRLAB, REPO
from tests.seed import SEED_TOPOLOGY_PATH

EXAMPLES = int(os.environ.get("DSRLAB_FUZZ_EXAMPLES", "300"))
SEED_DATA: dict[str, Any] = yaml.safe_load(SEED_TOPOLOGY_PATH.read_text())
MANIFEST_DATA: dict[str, Any] = json.loads(seed_manifest().model_dump_json())

_FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow, HealthCheck.data_too_large])

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["[/red]", "[bold]x", "^[a-z0-9]$", "172.18.255.255", "172.18.0.0",
                     "0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "10.0.2.1",
                     "10.0.0.0/8", "172.18.0.0/16", "0.0.0.0/0", "224.0.0.0/4", "::1",
                     "UDP", "TCP", "SCTP", "dsr", "worker", "/etc/passwd", "../x.pcap",
                     "a" * 70, "", "\x00", "é", "1e999", "0x20", "32000", "-1", "null"]),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``data`` (dict keys, list indexes), the root included."""
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any]) -> Any:
    """``seed`` after one to four structural mutations."""
    data: Any = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "dup",
                                   "wrap", "empty", "nest"]))
        if not path:
            if op in ("replace", "wrap"):
                data = draw(_values) if op == "replace" else [data]
            continue
        parent, last = _get(data, path[:-1]), path[-1]
        if op == "replace":
            parent[last] = draw(_values)
        elif op == "drop":
            del parent[last]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(_values)
        elif op == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif op == "wrap":
            parent[last] = [parent[last]]
        elif op == "empty":
            parent[last] = type(parent[last])() if isinstance(parent[last], dict | list) else ""
        elif op == "nest":
            parent[last] = {str(last): parent[last]}
    return data


@st.composite
def topology_text(draw: st.DrawFn) -> bytes:
    """A mutated seed topology as YAML (sometimes as JSON), then maybe damaged as text."""
    data = draw(mutated(SEED_DATA))
    try:
        text = yaml.safe_dump(data, sort_keys=False) if draw(st.booleans()) \
            else json.dumps(data)
    except (ValueError, yaml.YAMLError):  # NaN in JSON is fine; anything odd: repr
        text = repr(data)
    return _damage(draw, text.encode())


def _damage(draw: st.DrawFn, raw: bytes) -> bytes:
    op = draw(st.sampled_from(["none", "none", "none", "cut", "double", "bytes", "dupkey",
                               "deep"]))
    if op == "cut":
        return raw[:draw(st.integers(0, len(raw)))]
    if op == "double":
        return raw + raw
    if op == "bytes":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if op == "dupkey":
        lines = raw.split(b"\n")
        at = draw(st.integers(0, len(lines) - 1))
        return b"\n".join([*lines[:at + 1], lines[at], *lines[at + 1:]])
    if op == "deep":
        depth = draw(st.integers(50, 3000))
        return raw + b"\nx: " + b"[" * depth + b"]" * depth + b"\n"
    return raw


def _check(exc: BaseException, path: Path) -> None:
    """A LabError whose every line names ``path``."""
    assert isinstance(exc, LabError), f"{type(exc).__name__}: {exc}"
    lines = str(exc).splitlines()
    assert lines, "an empty message"
    bad = [line for line in lines if not line.startswith(f"{path}: ")]
    assert not bad, f"lines not naming {path}: {bad}"


@_FUZZ
@given(raw=topology_text())
def test_mutated_topologies_load_or_fail_with_lines_naming_the_file(
        tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("topo") / "t.yaml"
    path.write_bytes(raw)
    try:
        load_topology(path)
    except Exception as exc:  # what it is, is the test
        _check(exc, path)


@st.composite
def manifest_text(draw: st.DrawFn) -> bytes:
    data = draw(mutated(MANIFEST_DATA))
    try:
        text = json.dumps(data)
    except ValueError:
        text = repr(data)
    return _damage(draw, text.encode())


@_FUZZ
@given(raw=manifest_text())
def test_mutated_manifests_load_or_fail_with_lines_naming_the_file(
        tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    d = tmp_path_factory.mktemp("capset")
    (d / MANIFEST).write_bytes(raw)
    (d / "outside.pcap").symlink_to("/etc/passwd")
    try:
        cd = CaptureDir.load(d)
    except Exception as exc:  # what it is, is the test
        _check(exc, d.resolve() / MANIFEST)
        return
    for point in cd.points:  # nothing a manifest names lies outside its directory
        assert point.file.resolve().is_relative_to(d.resolve()), point.file


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DSRLAB, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO, env={"PATH": os.environ["PATH"]})


@pytest.mark.netns  # dsrlab up needs root
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=topology_text())
def test_through_the_cli_a_bad_topology_is_error_lines_only(
        tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("topo") / "t.yaml"
    path.write_bytes(raw)
    try:
        load_topology(path)
    except LabError:
        pass
    else:
        return  # it would bring a lab up: the in-process test covers it
    out = _cli("up", str(path))
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    assert all(re.match(rf"(error: )?{re.escape(str(path))}: ", line)
               for line in out.stderr.splitlines()), out.stderr
    assert out.stderr.startswith(f"error: {path}: ")


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=manifest_text())
def test_through_the_cli_review_of_a_bad_capture_set_is_one_error(
        tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    d = tmp_path_factory.mktemp("capset")
    (d / MANIFEST).write_bytes(raw)
    out = _cli("review", str(d))
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode in (0, 1, 2), out
    if out.returncode:
        assert out.stderr.startswith("error: "), out.stderr


if __name__ == "__main__":  # the campaign by hand: python -m tests.model.test_fuzz_documents N
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", "-k", "not cli"]))
