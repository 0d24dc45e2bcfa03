"""What the MTU and fragment scenario tests share: the datagram step's records, and a
copy of a scenario (with its trace) under another setting, to show that its trace
can fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from lab.model.scenario import SCENARIO_DIR
from lab.runner.scenario import ScenarioRun

MTU = SCENARIO_DIR / "mtu"
_TOPOLOGY = "topology: ../../topologies/modes.yaml"


def datagrams(run: ScenarioRun) -> list[dict[str, object]]:
    """The records of the run's one step, a datagram step."""
    (step,) = run.steps
    assert step.kind == "datagram"
    return list(step.figures["datagrams"])


def with_setting(tmp_path: Path, name: str, setting: str,
                 replace: tuple[str, str] | None = None) -> Path:
    """scenarios/mtu/NAME.yaml and its trace copied into ``tmp_path``, the topology by
    absolute path and ``setting`` ("key: value") set under ``settings`` (over the
    scenario's own value of it); ``replace`` (old, new) changes one more piece of the
    scenario's text."""
    for file in (f"{name}.yaml", f"{name}.trace.yaml"):
        shutil.copy(MTU / file, tmp_path / file)
    sc = tmp_path / f"{name}.yaml"
    text = sc.read_text()
    assert _TOPOLOGY in text
    if replace is not None:
        text = text.replace(*replace)
    data = yaml.safe_load(text)
    data["topology"] = f"{SCENARIO_DIR.parent}/topologies/modes.yaml"
    data.setdefault("settings", {}).update(yaml.safe_load(setting))
    sc.write_text(yaml.safe_dump(data, sort_keys=False))
    return sc
