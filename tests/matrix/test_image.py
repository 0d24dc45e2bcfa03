"""The guests' Python image: a real ext4 image (mke2fs) of the folders and files the
guest's pytest reads, content-addressed and shrunk, read back with debugfs; the
guest's shell binds each over its 9p twin or says it could not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.matrix import image
from lab.matrix.image import Folder


def _debugfs(img: Path, request: str) -> str:
    proc = subprocess.run(["debugfs", "-R", request, str(img)], capture_output=True,
                          text=True, check=True)
    return proc.stdout


def _file(tmp_path: Path) -> list[Path]:
    lib = tmp_path / "src" / "usr" / "lib" / "libx.so.1"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF" + b"\x01" * 5000)
    return [lib]


def _tree(tmp_path: Path) -> list[Folder]:
    a = tmp_path / "src" / "stdlib"
    (a / "pkg" / "__pycache__").mkdir(parents=True)
    (a / "pkg" / "__init__.py").write_text("X = 1\n")
    (a / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\x00" * 100)
    b = tmp_path / "src" / "repo"
    b.mkdir()
    (b / "conf.yaml").write_text("a: 1\n")
    (b / "link").symlink_to("conf.yaml")
    return [Folder("stdlib", a), Folder("repo-x", b)]


@pytest.fixture
def need_e2fsprogs() -> None:
    for tool in ("debugfs",):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"needs {tool} (e2fsprogs)")


@pytest.mark.usefixtures("need_e2fsprogs")
def test_the_image_holds_every_file_under_its_folder_name(tmp_path: Path) -> None:
    items = _tree(tmp_path)
    files = _file(tmp_path)
    img = image.build_image(tmp_path / "cache", items, files)
    assert img.parent == tmp_path / "cache"
    lib = _debugfs(img, f"stat /{image.FILES}{files[0]}")
    assert "Size: 5004" in lib  # a single file, under files/ at its own path
    assert _debugfs(img, "cat /stdlib/pkg/__init__.py") == "X = 1\n"
    assert "__init__.cpython-311.pyc" in _debugfs(img, "ls /stdlib/pkg/__pycache__")
    assert _debugfs(img, "cat /repo-x/conf.yaml") == "a: 1\n"
    assert "conf.yaml" in _debugfs(img, "stat /repo-x/link")  # a link stays a link
    assert "dsrlab-py" in subprocess.run(["/usr/sbin/dumpe2fs", "-h", str(img)],
                                         capture_output=True, text=True, check=True).stdout
    # nothing of the staging is left beside it, and the image is shrunk to its files
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [img.name]
    assert img.stat().st_size < 16 << 20


@pytest.mark.usefixtures("need_e2fsprogs")
def test_the_same_files_reuse_the_image_and_a_change_makes_a_new_one(tmp_path: Path) -> None:
    items = _tree(tmp_path)
    first = image.build_image(tmp_path / "cache", items, [])
    stamp = first.stat().st_mtime_ns
    assert image.build_image(tmp_path / "cache", items, []) == first
    assert first.stat().st_mtime_ns == stamp  # not rebuilt
    init = items[0].path / "pkg" / "__init__.py"
    init.write_text("X = 22\n")
    second = image.build_image(tmp_path / "cache", items, [])
    assert second != first
    assert _debugfs(second, "cat /stdlib/pkg/__init__.py") == "X = 22\n"


def test_the_default_image_carries_python_and_the_repository() -> None:
    names = {f.name: f.path for f in image.folders()}
    assert {"stdlib", "site", "repo-lab", "repo-tests", "repo-scenarios"} <= set(names)
    assert (names["stdlib"] / "os.py").exists()
    assert (names["site"] / "pytest").is_dir()
    assert (names["repo-lab"] / "pytest_plugin.py").exists()


def test_the_interpreter_and_its_libraries_ride_along() -> None:
    files = image.single_files()
    assert Path(sys.executable).resolve() in files
    assert any(p.name.startswith("libc.so") for p in files)
    assert all(p.is_absolute() and p == p.resolve() for p in files)  # where binds go
    for name in image.PROGRAMS:  # the programs the lab runs at every step ride along
        found = shutil.which(name, path="/usr/sbin:/usr/bin")
        if found:
            assert Path(found).resolve() in files, name


def test_the_guest_binds_every_folder_and_file_or_says_it_reads_9p(tmp_path: Path) -> None:
    items = _tree(tmp_path)
    files = _file(tmp_path)
    img = tmp_path / "python-x.img"
    text = image.guest_mounts(img, items, files)
    for f in items:
        assert f"mount --bind {image.GUEST_MOUNT}/{f.name} {f.path}" in text
    assert f"mount --bind {image.GUEST_MOUNT}/files{files[0]} {files[0]}" in text
    assert f"cp {img} {image.GUEST_COPY}" in text
    # a step that fails (no image to copy here): the shell says so and goes on
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("modprobe", "mount", "mkdir"):
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
        (fake / tool).chmod(0o755)
    proc = subprocess.run(["/bin/sh", "-c", text.replace(image.GUEST_COPY,
                                                         str(tmp_path / "copy.img"))],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PATH": f"{fake}:/usr/bin:/bin"})
    assert "python over 9p (the image did not mount)" in proc.stdout
