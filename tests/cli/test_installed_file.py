"""``dsrlab wireshark --install`` writes through lab.atomic: a symbolic link at the
destination is replaced (its target left alone), a read-only plugins folder is one
error line naming the file, with nothing left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.check import wireshark as ws
from tests.cli.helpers import DSRLAB, ENV, REPO
from tests.mounts import read_only

PLUGINS = Path(".local/lib/wireshark/plugins")  # under HOME (tshark -G folders)


@pytest.fixture(autouse=True)
def _tshark() -> None:
    if shutil.which("tshark") is None:
        pytest.skip("needs tshark")


def install(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DSRLAB, "wireshark", "--install"], capture_output=True,
                          text=True, cwd=REPO, env={**ENV, "HOME": str(home)}, timeout=120,
                          check=False)


def test_a_link_at_the_destination_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("someone else's file\n")
    plugins = tmp_path / PLUGINS
    plugins.mkdir(parents=True)
    (plugins / ws.LUA_NAME).symlink_to(victim)
    out = install(tmp_path)
    assert out.returncode == 0, out.stderr
    assert victim.read_text() == "someone else's file\n"
    assert not (plugins / ws.LUA_NAME).is_symlink()
    assert (plugins / ws.LUA_NAME).read_bytes() == ws.lua_path().read_bytes()


def test_a_read_only_plugins_folder_is_one_error(tmp_path: Path) -> None:
    with read_only(tmp_path / PLUGINS) as plugins:
        out = install(tmp_path)
        assert "Traceback" not in out.stderr
        assert out.stderr.splitlines() == [
            f"error: {plugins / ws.LUA_NAME}: cannot write in {plugins}: read-only file "
            "system"], out.stderr
        assert out.returncode == 1
        assert os.listdir(plugins) == []
