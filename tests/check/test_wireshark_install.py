"""``dsrlab wireshark --install`` replaces the file at its place, never writes through it:
a symbolic link there (to a file, to nothing, to a folder) is replaced and what it
pointed at left as it was; nothing the lab did not mean to write is touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.check import wireshark as ws

REPO = Path(__file__).resolve().parents[2]


def _installed(dest_dir: Path) -> Path:
    dest = dest_dir / ws.LUA_NAME
    assert not dest.is_symlink()
    assert dest.read_bytes() == ws.lua_path().read_bytes()
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in dest_dir.iterdir()) == [ws.LUA_NAME]  # no temporary left
    return dest


def test_a_link_to_a_file_is_replaced_and_its_target_kept(tmp_path: Path) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / ws.LUA_NAME).symlink_to(victim)
    assert ws.install(plugins) == plugins / ws.LUA_NAME
    _installed(plugins)
    assert victim.read_text() == "precious\n"


def test_a_dangling_link_and_a_link_to_a_folder_are_replaced(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    nowhere = tmp_path / "would-be-created"
    (plugins / ws.LUA_NAME).symlink_to(nowhere)
    ws.install(plugins)
    _installed(plugins)
    assert not nowhere.exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    (plugins / ws.LUA_NAME).unlink()
    (plugins / ws.LUA_NAME).symlink_to(folder, target_is_directory=True)
    ws.install(plugins)
    _installed(plugins)
    assert list(folder.iterdir()) == []


def test_an_existing_copy_is_replaced_whole(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    old = plugins / ws.LUA_NAME
    old.write_text("-- an old version\n" * 5000)
    other = tmp_path / "hardlink"
    os.link(old, other)  # a second name of the old file keeps the old content
    ws.install(plugins)
    _installed(plugins)
    assert other.read_text().startswith("-- an old version")


def test_what_is_in_the_way_is_one_error(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / ws.LUA_NAME).mkdir(parents=True)
    with pytest.raises(ws.WiresharkError, match=r"dsr_option\.lua: a directory is in the way"):
        ws.install(plugins)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ws.WiresharkError, match=r"file/sub: cannot create the plugins folder"):
        ws.install(a_file / "sub")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_dsrlab_wireshark_install_through_a_link_keeps_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("VICTIM\n")
    plugins = tmp_path / ".local" / "lib" / "wireshark" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / ws.LUA_NAME).symlink_to(victim)
    out = subprocess.run([sys.executable, "-m", "lab.cli", "wireshark", "--install"],
                         capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert victim.read_text() == "VICTIM\n"
    _installed(plugins)
