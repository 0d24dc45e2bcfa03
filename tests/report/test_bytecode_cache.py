"""The report's templates are compiled once per cache, not once per process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jinja2 import Environment

from lab.report import render


@pytest.fixture
def fresh_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The lab's cache in ``tmp_path``; the process's environment made again."""
    monkeypatch.setenv("DSRLAB_CACHE_DIR", str(tmp_path / "cache"))
    render.environment.cache_clear()
    yield tmp_path / "cache"
    render.environment.cache_clear()


def test_a_second_process_loads_the_compiled_templates(
        fresh_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = render.environment().get_template("report.md.j2")
    assert list((fresh_environment / "jinja").iterdir())  # compiled and kept
    render.environment.cache_clear()  # as a new process starts

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(Environment, "compile", no_compiling)
    again = render.environment().get_template("report.md.j2")
    assert again.name == first.name == "report.md.j2"


def test_an_unusable_cache_folder_only_means_compiling(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("DSRLAB_CACHE_DIR", str(blocked))
    render.environment.cache_clear()
    try:
        assert render.environment().bytecode_cache is None
        assert render.environment().get_template("report.md.j2") is not None
    finally:
        render.environment.cache_clear()
