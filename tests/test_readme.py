"""The README cannot drift: its figures block is what ``scripts/readme_figures.py``
makes of ``bench/results/*.json``; its scenario-file reference names every key
the scenario model has; its complete example loads with the real loader and
runs, passing, as ``dsrlab run PATH.yaml``."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from lab.model import scenario as scenario_model
from lab.model.errors import known_keys
from lab.model.scenario import Scenario, load_scenario
from tests.seed import REPO, SEED_TOPOLOGY_PATH, SEED_TRACE_PATH

README = REPO / "README.md"
EXAMPLE = re.compile(r"<!-- scenario-example[^>]*-->\n```yaml\n(.*?)```", re.S)


def figures_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_figures",
                                                  REPO / "scripts" / "readme_figures.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


# -- figures ------------------------------------------------------------------------------------


def test_the_figures_block_is_what_the_results_give() -> None:
    fig = figures_module()
    text = README.read_text()
    assert fig.current(text) == fig.render(), \
        "README.md's figures are stale: run python scripts/readme_figures.py"
    # every results file with figures is in it, e.g. the datapath's ns per packet
    datapath = json.loads((REPO / "bench" / "results" / "datapath.json").read_text())
    assert f"| LB SYN (CT hit: DNAT, option, FIB, redirect) | " \
           f"{round(datapath['ns_per_pkt']['lb_syn']):,} |" in text


def test_the_stale_figures_are_gone() -> None:
    text = README.read_text()
    for stale in ("19 in 13 s", "8,288 / 328", "| 623 | 24.0 |", "182\N{EN DASH}223 ns"):
        assert stale not in text, stale
    # figures stand in the generated block only, not in the prose around it
    fig = figures_module()
    prose = text.replace(fig.current(text), "")
    for figure in ("16,006", "(8.3x)", "196,600,496"):
        assert figure not in prose, figure


def test_the_check_fails_on_a_stale_block_and_the_script_mends_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fig = figures_module()
    results = tmp_path / "results"
    shutil.copytree(REPO / "bench" / "results", results)
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text())
    monkeypatch.setattr(fig, "RESULTS", results)
    monkeypatch.setattr(fig, "README", readme)
    assert fig.main(["--check"]) == 0
    doc = json.loads((results / "datapath.json").read_text())
    doc["ns_per_pkt"]["reply"] = 12345.0  # a new benchmark run
    (results / "datapath.json").write_text(json.dumps(doc))
    assert fig.main(["--check"]) == 1
    assert fig.main([]) == 0
    assert fig.main(["--check"]) == 0
    assert "| reply (source rewritten to the service) | 12,345 |" in readme.read_text()


# -- scenario files -----------------------------------------------------------------------------


def every_key(model: type[BaseModel], loc: tuple[int | str, ...] = ()) -> set[str]:
    """Every key a scenario file can hold, found through the model itself."""
    out: set[str] = set()
    for key in known_keys(model, loc):
        out.add(key)
        for sub in ((key,), (key, 0)):
            inner = known_keys(model, (*loc, *sub))
            if inner and not set(inner) <= out:
                out |= every_key(model, (*loc, *sub))
    return out


def test_the_reference_names_every_key_and_every_step_kind() -> None:
    text = section("Scenario files")
    keys = every_key(Scenario)
    for kind in scenario_model.STEP_KINDS:
        keys |= set(known_keys(Scenario, ("steps", 0, kind, kind)))
    assert {"target", "min", "until_every_backend", "backends", "steps", "settings",
            "allow_fragments", "during"} <= keys
    missing = sorted(k for k in keys
                     if not any(f in text for f in (f"`{k}`", f"`{k}.", f".{k}`")))
    assert not missing, f"README's scenario reference misses {missing}"
    for kind in scenario_model.STEP_KINDS:
        assert f"| `{kind}` |" in text, kind
    assert "dsrlab run PATH.yaml" in text


def example_files(tmp_path: Path) -> Path:
    """The README's example, saved as it says: beside the seed trace, the topology one
    folder up (copies in a temporary folder)."""
    [text] = EXAMPLE.findall(README.read_text())
    (tmp_path / "topologies").mkdir()
    (tmp_path / "scenarios").mkdir()
    shutil.copy(SEED_TOPOLOGY_PATH, tmp_path / "topologies" / "seed.yaml")
    shutil.copy(SEED_TRACE_PATH, tmp_path / "scenarios" / "seed.trace.yaml")
    path = tmp_path / "scenarios" / "my-seed.yaml"
    path.write_text(text)
    return path


def test_the_example_loads_with_the_scenario_loader(tmp_path: Path) -> None:
    sc, topo = load_scenario(example_files(tmp_path))
    assert sc.name == "my-seed"
    assert [type(s).__name__ for s in sc.steps] == ["RequestsStep", "RequestsStep"]
    assert topo.load_balancer.algorithm == "maglev"  # the setting applied
    assert sc.trace_path() == tmp_path / "scenarios" / "seed.trace.yaml"
    assert sc.backends == ["netns"]
    used: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            used.update(value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(yaml.safe_load(sc.source.read_text()) if sc.source else {})  # the file as written
    assert {"target", "requests", "min", "max", "until_every_backend", "backends", "steps",
            "settings", "trace", "requires", "deadline_s"} <= used


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.scenario
def test_the_example_runs_and_passes_as_dsrlab_run_path(tmp_path: Path) -> None:
    path = example_files(tmp_path)
    out = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(path), "--captures",
                          str(tmp_path / "captures"), "--no-screenshot"],
                         capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "PASS: my-seed, 6 of 6 claims passed"
