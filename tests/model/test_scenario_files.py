"""The files a scenario names stay inside its folder (or the lab's scenarios/ and
topologies/): ``../``, absolute paths and links pointing out are refused, naming the
field, and the content of a file the scenario pointed at is never echoed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.model.scenario import SCENARIO_DIR, ScenarioError, all_scenarios, load_scenario
from lab.runner.scenario import load_scenario_trace
from tests.seed import SEED_SCENARIO_PATH, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

SECRET = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
# a secret that parses as a trace-like mapping: its value would be quoted in a field error
SECRET_DOC = f"claims: {SECRET.splitlines()[1]}\nkey: {SECRET.splitlines()[1]}\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the scenario's own, holding files a scenario must not reach."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "id_rsa").write_text(SECRET)
    (out / "secret.yaml").write_text(SECRET_DOC)
    (out / "topo.yaml").write_text(SEED_TOPOLOGY_PATH.read_text())
    (out / "seed.trace.yaml").write_text(SEED_TRACE_PATH.read_text())
    return out


def _scenario(folder: Path, name: str = "sc", **changes: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    data.update(name=name, topology=str(SEED_TOPOLOGY_PATH), trace=str(SEED_TRACE_PATH))
    data.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _load(path: Path) -> None:
    sc, _ = load_scenario(path)
    load_scenario_trace(sc)


def _refused(path: Path, field: str) -> str:
    with pytest.raises(ScenarioError) as info:
        _load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert "outside the scenario's folder" in message
    assert "PRIVATE KEY" not in message
    assert "MIIEvQ" not in message
    assert len(message.splitlines()) == 1
    return message


@pytest.mark.parametrize("value", ["../outside/secret.yaml", "../../../../../../etc/passwd",
                                   "{outside}/secret.yaml", "{outside}/id_rsa", "/etc/shadow",
                                   "sub/../../outside/seed.trace.yaml"])
def test_a_trace_outside_the_folder_is_refused(tmp_path: Path, outside: Path,
                                               value: str) -> None:
    path = _scenario(tmp_path / "sc", trace=value.format(outside=outside))
    _refused(path, "trace")


@pytest.mark.parametrize("value", ["../outside/topo.yaml", "{outside}/topo.yaml",
                                   "/etc/hostname", "../outside/secret.yaml"])
def test_a_topology_outside_the_folder_is_refused(tmp_path: Path, outside: Path,
                                                  value: str) -> None:
    path = _scenario(tmp_path / "sc", topology=value.format(outside=outside))
    _refused(path, "topology")


def test_a_link_pointing_out_is_refused_for_every_field(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "sc"
    folder.mkdir()
    (folder / "sc.trace.yaml").symlink_to(outside / "secret.yaml")  # the default trace
    (folder / "topo.yaml").symlink_to(outside / "topo.yaml")
    (folder / "data").symlink_to(outside, target_is_directory=True)
    path = _scenario(folder, trace=None)
    assert "(" + str(outside / "secret.yaml") + ")" in _refused(path, "trace")
    _refused(_scenario(folder, topology="topo.yaml"), "topology")
    _refused(_scenario(folder, trace="data/seed.trace.yaml"), "trace")
    replay = _scenario(folder, steps=[{"requests": {}}, {"replay": {"pcap": "data/x.pcap"}}])
    _refused(replay, r"steps[1].replay.pcap")


def test_a_hidden_file_in_the_folder_is_refused(tmp_path: Path) -> None:
    """A scenario in a home folder cannot name ~/.ssh/id_rsa or ~/.env."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SECRET)
    (home / ".env").write_text(SECRET_DOC)
    for field, value in (("trace", ".ssh/id_rsa"), ("trace", ".env"),
                         ("topology", "./sub/../.env")):
        path = _scenario(home, **{field: value})
        with pytest.raises(ScenarioError) as info:
            _load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: {field}: "), message
        assert "hidden" in message
        assert "MIIEvQ" not in message


def test_a_replay_pcap_outside_is_refused(tmp_path: Path, outside: Path) -> None:
    for value in ("../outside/id_rsa", str(outside / "id_rsa"), "/proc/self/environ"):
        path = _scenario(tmp_path / "sc", steps=[{"replay": {"pcap": value}}])
        _refused(path, "steps[0].replay.pcap")


def test_files_in_the_folder_and_the_labs_own_folders_are_used(tmp_path: Path) -> None:
    folder = tmp_path / "sc"
    (folder / "traces").mkdir(parents=True)
    (folder / "traces" / "mine.trace.yaml").write_text(SEED_TRACE_PATH.read_text())
    (folder / "topo.yaml").write_text(SEED_TOPOLOGY_PATH.read_text())
    path = _scenario(folder, topology="topo.yaml", trace="traces/../traces/mine.trace.yaml")
    sc, _ = load_scenario(path)
    assert sc.trace_path() == (folder / "traces" / "mine.trace.yaml").resolve()
    assert sc.topology_path() == (folder / "topo.yaml").resolve()
    load_scenario_trace(sc)
    # the lab's own topologies/ and scenarios/ (by absolute path, as the tests' copies do)
    sc, _ = load_scenario(_scenario(folder))
    assert sc.trace_path() == SEED_TRACE_PATH


def test_every_shipped_scenario_names_only_files_it_may() -> None:
    shipped = all_scenarios()
    assert len(shipped) > 10
    for path in shipped:
        sc, _ = load_scenario(path)
        for field, file in sc.referenced_files():
            assert file.is_relative_to(SCENARIO_DIR.parent), (path, field)


def test_a_trace_with_a_secret_value_is_quoted_short(tmp_path: Path) -> None:
    """The scenario's own trace holding a long value: its error quotes an excerpt."""
    folder = tmp_path / "sc"
    folder.mkdir()
    long_value = "A" * 5000 + "\x1b]0;retitled\x07"
    (folder / "sc.trace.yaml").write_text(yaml.safe_dump({"claims": long_value}))
    sc, _ = load_scenario(_scenario(folder, trace=None))
    with pytest.raises(ScenarioError) as info:
        load_scenario_trace(sc)
    message = str(info.value)
    (line,) = [ln for ln in message.splitlines() if ": claims: " in ln]
    assert line.endswith("... (5013 characters))")
    assert line.count("A") <= 60, line  # an excerpt, never the whole value
    assert "\x1b" not in message


def test_a_loop_or_nul_byte_is_one_error(tmp_path: Path) -> None:
    folder = tmp_path / "sc"
    folder.mkdir()
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    with pytest.raises(ScenarioError, match=r"trace: "):
        _load(_scenario(folder, trace="loop.yaml"))
    with pytest.raises(ScenarioError, match=r"trace: cannot resolve 'a\\x00b'"):
        load_scenario(_scenario(folder, trace="a\0b"))


def test_a_tree_laid_out_as_the_labs_reaches_its_own_topologies_only(
        tmp_path: Path, outside: Path) -> None:
    """scenarios/x.yaml (or scenarios/sub/x.yaml) of a user's tree may name
    ../topologies/; nothing else beside its scenarios/ folder."""
    (tmp_path / "topologies").mkdir()
    (tmp_path / "topologies" / "seed.yaml").write_text(SEED_TOPOLOGY_PATH.read_text())
    for folder, up in ((tmp_path / "scenarios", ".."), (tmp_path / "scenarios" / "sub", "../..")):
        _load(_scenario(folder, topology=f"{up}/topologies/seed.yaml"))
        assert "outside the scenario's folder" in _refused(
            _scenario(folder, name="out", topology=f"{up}/outside/topo.yaml"), "topology")
    plain = tmp_path / "mine"  # not named scenarios: its own folder only
    assert "outside the scenario's folder" in _refused(
        _scenario(plain, topology="../topologies/seed.yaml"), "topology")
