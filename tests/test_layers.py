"""The layering rule of pyproject.toml holds, and a wrong import breaks it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"),
                           "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def lab_copy(tmp_path: Path) -> Path:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (make install)")
    shutil.copytree(REPO / "lab", tmp_path / "lab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.lua", "templates"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_layers(lab_copy: Path) -> None:
    out = _lint(lab_copy)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


def test_an_import_cycle_breaks_the_acyclic_contract(lab_copy: Path) -> None:
    """The diagnosis type's leaf module importing the rules that use it: a cycle, even
    from inside a function."""
    path = lab_copy / "lab" / "check" / "diagnosis.py"
    path.write_text(path.read_text() + "\n\ndef _back() -> None:\n"
                    "    import lab.check.diagnose  # noqa\n")
    out = _lint(lab_copy)
    assert out.returncode != 0
    text = " ".join(out.stdout.split())
    assert re.search(r"no import cycles[^.]*? BROKEN", text), out.stdout
    assert "lab.check" in text, out.stdout


@pytest.mark.parametrize(("module", "bad_import", "contract"), [
    ("check/__init__.py", "import lab.env.netns", "forbidden"),  # a check needing a live lab
    ("report/__init__.py", "import lab.datapath.loader", "forbidden"),
    ("datapath/__init__.py", "import lab.env.netns", "layers"),  # the datapath borrowing a backend
    ("wire/__init__.py", "import lab.capture.layout", "layers"),  # a low layer reaching up
    ("plumbing/__init__.py", "import lab.model.errors", "layers"),  # siblings stay apart
])
def test_a_wrong_import_breaks_a_contract(lab_copy: Path, module: str, bad_import: str,
                                          contract: str) -> None:
    path = lab_copy / "lab" / module
    path.write_text(path.read_text() + f"\n{bad_import}  # noqa\n")
    out = _lint(lab_copy)
    assert out.returncode != 0
    text = " ".join(out.stdout.split())  # the report wraps long contract names
    broken = "stages import downward" if contract == "layers" \
        else "capture sets are read without a live lab"
    assert re.search(rf"{broken}[^.]*? BROKEN", text), out.stdout
    importer = "lab." + module.split("/", maxsplit=1)[0]
    assert f"{importer} -> {bad_import.split()[1]}" in text or \
        f"{importer} is not allowed to import" in text, out.stdout
