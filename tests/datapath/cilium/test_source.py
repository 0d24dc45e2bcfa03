"""A Cilium source: checkout, bpf/ folder or tarball; version, commit, hash; bad input."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from lab.datapath.cilium.source import CiliumSource, CiliumSourceError, CiliumVersion, discover

COMMIT = "c9723a8df3cfa336da1f8457a864105d8349acfe"


def make_tarball(path: Path, top: str = "cilium-v1.15.2", *, files: dict[str, str] | None = None,
                 commit: str | None = COMMIT) -> Path:
    files = files if files is not None else {
        "bpf/bpf_host.c": "int host;\n", "bpf/bpf_lxc.c": "int lxc;\n", "bpf/lib/x.h": "#x\n"}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": commit} if commit else {}) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}" if not name.startswith("/") else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_tarball_gives_its_tag_commit_and_hash(tmp_path: Path) -> None:
    src = CiliumSource.open(make_tarball(tmp_path / "c.tar.gz"))
    assert (src.version.line, str(src.version), src.commit, src.kind) == (
        (1, 15), "v1.15.2", COMMIT, "tarball")
    assert len(src.sha256) == 64
    other = CiliumSource.open(make_tarball(tmp_path / "d.tar.gz", files={
        "bpf/bpf_host.c": "int host2;\n", "bpf/bpf_lxc.c": "int lxc;\n"}))
    assert other.sha256 != src.sha256


def test_extraction_keeps_only_bpf_and_never_climbs_out(tmp_path: Path) -> None:
    tar = make_tarball(tmp_path / "c.tar.gz", files={
        "bpf/bpf_host.c": "h", "bpf/bpf_lxc.c": "l", "bpf/../../escape.h": "x",
        "pkg/other.go": "go"})
    out = CiliumSource.open(tar).extract_to(tmp_path / "out")
    assert sorted(p.name for p in out.rglob("*")) == ["bpf_host.c", "bpf_lxc.c"]
    assert not (tmp_path / "escape.h").exists()


def test_a_checkout_gives_its_version_file(tmp_path: Path) -> None:
    (tmp_path / "bpf").mkdir()
    for name in ("bpf_host.c", "bpf_lxc.c"):
        (tmp_path / "bpf" / name).write_text("int x;\n")
    (tmp_path / "VERSION").write_text("1.16.0\n")
    src = CiliumSource.open(tmp_path)
    assert (str(src.version), src.kind, src.commit) == ("v1.16.0", "checkout", None)
    assert CiliumSource.open(tmp_path / "bpf").kind == "bpf-dir"


@pytest.mark.parametrize(("setup", "said"), [
    ("missing", "no such file or folder"),
    ("plain-file", "neither a folder holding bpf/ nor a .tar.gz"),
    ("empty-dir", "not a Cilium checkout"),
    ("no-lxc", "bpf/bpf_lxc.c"),
    ("bad-top", "top folder is not cilium-<tag>/"),
    ("not-gzip", "not a readable tarball"),
    ("no-version", "says which Cilium this is"),
])
def test_an_unusable_source_is_one_clear_error(tmp_path: Path, setup: str, said: str) -> None:
    target = tmp_path / "src"
    if setup == "plain-file":
        target.write_text("hello")
    elif setup == "empty-dir":
        target.mkdir()
    elif setup == "no-lxc":
        target = make_tarball(tmp_path / "c.tar.gz", files={"bpf/bpf_host.c": "h"})
    elif setup == "bad-top":
        target = make_tarball(tmp_path / "c.tar.gz", top="whatever")
    elif setup == "not-gzip":
        target = tmp_path / "c.tar.gz"
        target.write_bytes(b"\x1f\x8b not really")
    elif setup == "no-version":
        (target / "bpf").mkdir(parents=True)
        for name in ("bpf_host.c", "bpf_lxc.c"):
            (target / "bpf" / name).write_text("x")
    with pytest.raises(CiliumSourceError) as err:
        CiliumSource.open(target)
    assert said in str(err.value)
    assert "\n" not in str(err.value)


def test_a_folder_of_tarballs_is_every_version_oldest_first(tmp_path: Path) -> None:
    make_tarball(tmp_path / "cilium-v1.16.0-bpf.tar.gz", top="cilium-v1.16.0")
    make_tarball(tmp_path / "cilium-v1.13.0-bpf.tar.gz", top="cilium-v1.13.0")
    assert [str(s.version) for s in discover(tmp_path)] == ["v1.13.0", "v1.16.0"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CiliumSourceError, match="no Cilium checkout"):
        discover(empty)


def test_versions_compare_by_line() -> None:
    v = CiliumVersion.parse("1.14.3-rc.1")
    assert v.line == (1, 14)
    assert v.at_least(1, 14)
    assert not v.at_least(1, 15)
    with pytest.raises(CiliumSourceError):
        CiliumVersion.parse("main")
