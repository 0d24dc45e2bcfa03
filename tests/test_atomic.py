"""lab.atomic: every output whole or not at all, on real file systems that refuse.

A tiny tmpfs fills up mid-write, a read-only bind mount refuses the file,
Ctrl-C arrives inside the writing block: each time the old file is left as
it was, no temporary file stays beside it, and the failure is one
:class:`OutputError` naming the file. ``check_folder`` refuses, before any
work, the folders outputs cannot go to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.atomic import (
    AtomicFile,
    OutputError,
    check_folder,
    copy_file,
    replace_symlink,
    write_bytes,
    write_text,
)
from tests.mounts import fill, leftovers, read_only, small_disk

BIG = 300 * 1024  # more than the 200 KiB disk holds


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "200k") as d:
        yield d


def _by_name(path: Path, data: bytes) -> None:
    """As scapy's pcapng writer does: a library opens the temporary file by its name."""
    with AtomicFile(path) as out, open(out.tmp_path, "wb") as f:
        f.write(data)


def _copy(path: Path, data: bytes) -> None:
    src = path.parent.parent / "src.bin"
    src.write_bytes(data)
    copy_file(src, path)


def _stream(path: Path, data: bytes) -> None:
    with AtomicFile(path) as out:
        for i in range(0, len(data), 4096):
            out.write(data[i:i + 4096])


WRITERS: dict[str, Callable[[Path, bytes], object]] = {
    "write_bytes": write_bytes,
    "write_text": lambda p, d: write_text(p, d.decode()),
    "streamed": _stream,
    "by name": _by_name,
    "copy_file": _copy,
}


@pytest.mark.parametrize("how", WRITERS)
def test_a_full_disk_leaves_the_old_file_and_no_temporary(disk: Path, how: str) -> None:
    target = disk / "report.html"
    target.write_text("old\n")
    with pytest.raises(OutputError) as info:
        WRITERS[how](target, b"x" * BIG)
    assert str(info.value) == f"{target}: cannot write: no space left on device"
    assert target.read_text() == "old\n"
    assert leftovers(disk) == []
    assert sorted(os.listdir(disk)) == ["report.html"]


def test_a_write_that_fits_replaces_the_file_whole(disk: Path) -> None:
    target = disk / "results.json"
    target.write_text("old\n")
    target.chmod(0o640)
    write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o640  # the old file's permissions kept
    assert leftovers(disk) == []


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_leaving_the_block_by_an_exception_removes_the_temporary(
        tmp_path: Path, exc: type[BaseException]) -> None:
    target = tmp_path / "manifest.json"
    target.write_text("old\n")
    def write_half() -> None:
        with AtomicFile(target) as out:
            out.write(b"half of it")
            raise exc

    with pytest.raises(exc):
        write_half()
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_a_read_only_mount_is_one_error(tmp_path: Path) -> None:
    with read_only(tmp_path / "ro") as ro:
        with pytest.raises(OutputError, match=r"/ro/steps\.json: cannot write in .*: "
                                              r"read-only file system$"):
            write_text(ro / "steps.json", "[]\n")
        with pytest.raises(OutputError, match="is on a read-only file system"):
            check_folder(ro)
        with pytest.raises(OutputError, match=r"cannot be made: .*/ro is on a read-only"):
            check_folder(ro / "seed")
        assert os.listdir(ro) == []


def test_a_link_at_the_destination_is_replaced_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    dest = tmp_path / "dsr_option.lua"
    dest.symlink_to(victim)
    src = tmp_path / "src.lua"
    src.write_text("-- dissector\n")
    copy_file(src, dest)
    assert not dest.is_symlink()
    assert dest.read_text() == "-- dissector\n"
    assert victim.read_text() == "do not touch\n"


def test_latest_is_replaced_only_when_it_is_a_link(tmp_path: Path) -> None:
    (tmp_path / "aaaaaa").mkdir()
    link = replace_symlink(tmp_path / "latest", "aaaaaa")
    assert os.readlink(link) == "aaaaaa"
    replace_symlink(link, "bbbbbb")
    assert os.readlink(link) == "bbbbbb"
    link.unlink()
    link.mkdir()
    (link / "mine").write_text("x")
    with pytest.raises(OutputError, match=r"/latest: exists and is not a symbolic link"):
        replace_symlink(link, "aaaaaa")
    assert (link / "mine").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["aaaaaa", "latest"]


def test_check_folder_refuses_what_outputs_cannot_go_to(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    loop_a, loop_b = tmp_path / "loop-a", tmp_path / "loop-b"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    cases = {
        afile: "is a regular file, not a folder",
        afile / "sub": "a folder on its path is not a directory",
        loop_a: "too many levels of symbolic links",
        loop_a / "sub": "too many levels of symbolic links",
        dangling: "is a symbolic link to nothing",
        Path("/dev/null"): "is a device, not a folder",
        Path("/proc/dsrlab-x"): "cannot be made: /proc cannot hold a new file",
    }
    for folder, why in cases.items():
        with pytest.raises(OutputError) as info:
            check_folder(folder, "captures folder")
        assert str(info.value).startswith(f"captures folder {folder}: ")
        assert why in str(info.value), str(info.value)
    check_folder(tmp_path / "new" / "deeper")  # made when the first output goes there
    assert not (tmp_path / "new").exists()
    assert sorted(os.listdir(tmp_path)) == ["afile", "dangling", "loop-a", "loop-b"]


def test_check_folder_refuses_a_full_disk(disk: Path) -> None:
    check_folder(disk)
    fill(disk)
    with pytest.raises(OutputError, match=r"its file system is full \(no space left"):
        check_folder(disk)
    with pytest.raises(OutputError, match=r"its file system is full"):
        check_folder(disk / "seed")
