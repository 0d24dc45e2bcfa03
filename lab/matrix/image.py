"""The guests' Python on an ext4 image: what the matrix's pytest reads, off 9p.

Under TCG a guest reaches the host's root through 9p, one round trip per
``stat`` and ``open``, each costing milliseconds; Python's imports make
thousands of them (``import scapy.all`` alone took ~100 s, ``python -c pass``
8 s). So the host writes the files the guest's pytest reads to an ext4
image once per matrix run: the standard library, the venv's site-packages
and the repository's code and data folders, each under the same path the
guest sees on 9p. The image also carries the interpreter and the
shared libraries it and libbpf load (under ``files/`` at their own paths):
executing a binary over 9p pages it in a round trip at a time (``python -S
-c pass``: 15.9 s from 9p, 2.5-4.3 s from memory, loaded host). The guest
copies the image into its memory in one sequential 9p read, mounts it
(loop, read-only) and bind-mounts each folder and file over its 9p twin;
paths, ``__file__`` and compiled files stay the same.

The image is content-addressed (every file's path, size and mtime) and
kept in the cache folder, so a later run, or the next kernel, reuses it. A
guest that cannot mount it (no loop or ext4 module) runs on 9p as
before, slower, and says so in its log.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.matrix.kernels import REPO, MatrixError

LABEL = "dsrlab-py"  # the image's ext4 label
GUEST_MOUNT = "/run/dsrlab-image"
GUEST_COPY = "/tmp/dsrlab-python.img"  # the guest's /tmp is memory (tmpfs)
FILES = "files"  # the image's folder of single files, at their own paths below it
# run by the lab again and again (each step, each capture point): over 9p every run
# pages the binary and its libraries in a round trip at a time
PROGRAMS = ("curl", "tcpdump", "nsenter", "ip", "tc")
REPO_FOLDERS = ("lab", "tests", "scenarios", "topologies", "bpf", "kernels")
KEEP_IMAGES = 3  # older images of the cache folder are removed
# what the guest's tests never read, hidden in the guest by the bind mounts: the
# venv's development tools (~80 MB); the interpreter's own site-packages (a venv
# does not use them), tests, build files, GUI and optimised bytecode
SITE_LEFT_OUT = ("mypy", "mypyc", "*__mypyc.*.so", "pip", "ruff", "grimp", "importlinter")
STDLIB_LEFT_OUT = ("site-packages", "dist-packages", "test", "config-*", "idlelib",
                   "tkinter", "turtledemo", "ensurepip", "lib2to3", "*.opt-1.pyc",
                   "*.opt-2.pyc")


@dataclass(frozen=True)
class Folder:
    """A host folder the image carries, under ``name`` in the image."""

    name: str
    path: Path
    left_out: tuple[str, ...] = ()  # names (fnmatch patterns) not carried, at any depth


def folders() -> list[Folder]:
    """The standard library, the venv's packages, and the repository's folders."""
    paths = sysconfig.get_paths()
    out = [Folder("stdlib", Path(paths["stdlib"]).resolve(), STDLIB_LEFT_OUT),
           Folder("site", Path(paths["purelib"]).resolve(), SITE_LEFT_OUT)]
    if paths["platlib"] != paths["purelib"]:
        out.append(Folder("plat", Path(paths["platlib"]).resolve(), SITE_LEFT_OUT))
    out += [Folder(f"repo-{d}", REPO / d) for d in REPO_FOLDERS if (REPO / d).is_dir()]
    return out


def _ldd(path: Path) -> list[Path]:
    try:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        parts = line.split()
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux... (0x...)"
        target = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
        if target.startswith("/"):
            found.append(Path(target))
    return found


def single_files() -> list[Path]:
    """The interpreter, the programs the lab runs once per step or packet capture
    (:data:`PROGRAMS`) and the shared libraries they and libbpf load, at their real
    paths (where a bind mount over the 9p file must go); ~30 MB."""
    python = Path(sys.executable).resolve()
    wanted = [python, *_ldd(python)]
    for name in PROGRAMS:
        found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if found:
            wanted += [Path(found), *_ldd(Path(found))]
    for libdir in (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib64"), Path("/usr/lib")):
        libbpf = libdir / "libbpf.so.1"
        if libbpf.exists():
            wanted += [libbpf, *_ldd(libbpf)]
            break
    out: list[Path] = []
    for p in wanted:
        real = p.resolve()
        if real.is_file() and real not in out:
            out.append(real)
    return out


def _left_out(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _files(folder: Folder) -> list[tuple[str, os.stat_result]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder.path):
        dirnames[:] = sorted(d for d in dirnames if not _left_out(d, folder.left_out))
        for name in sorted(f for f in filenames if not _left_out(f, folder.left_out)):
            p = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                out.append((os.path.relpath(p, folder.path), os.lstat(p)))
    return out


def content_key(items: list[Folder], files: Sequence[Path] = ()) -> tuple[str, int, int]:
    """(key, bytes, files) over every file's path, size and mtime."""
    h = hashlib.sha256()
    total = count = 0
    for p in files:
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        total += st.st_size
        count += 1
    for f in items:
        h.update(f"{f.name}={f.path}\n".encode())
        for rel, st in _files(f):
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\n".encode())
            total += st.st_size
            count += 1
    return h.hexdigest()[:16], total, count


def _stage(items: list[Folder], files: list[Path], stage: Path) -> None:
    """The image's tree: hard links where the cache shares the folders' file system,
    copies where it does not."""
    for p in files:
        dest = stage / FILES / p.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, dest)
        except OSError:
            shutil.copy2(p, dest)
    for f in items:
        dest = stage / f.name
        ignore = shutil.ignore_patterns(*f.left_out)
        try:
            shutil.copytree(f.path, dest, symlinks=True, copy_function=os.link, ignore=ignore)
        except (OSError, shutil.Error):
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(f.path, dest, symlinks=True, ignore=ignore)


def build_image(cache: Path, items: list[Folder] | None = None,
                files: list[Path] | None = None) -> Path:
    """The image of ``items`` and ``files`` (default: :func:`folders`,
    :func:`single_files`) in ``cache``, built unless a run built it before, shrunk to
    its contents. A :class:`MatrixError` says why it could not be."""
    items = folders() if items is None else items
    files = single_files() if files is None else files
    key, total, count = content_key(items, files)
    image = cache / f"python-{key}.img"
    if image.exists():
        return image
    mke2fs = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
    if not os.access(mke2fs, os.X_OK):
        raise MatrixError("mke2fs not found (Debian's e2fsprogs)")
    cache.mkdir(parents=True, exist_ok=True)
    size_mib = total * 13 // 10 // (1 << 20) + count * 4 // 1024 + 64
    with tempfile.TemporaryDirectory(prefix="stage-", dir=cache) as tmp:
        stage = Path(tmp) / "root"
        stage.mkdir()
        _stage(items, files, stage)
        partial = Path(tmp) / image.name
        _e2fs([mke2fs, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", LABEL,
               "-N", str(count * 5 // 4 + 4096), "-d", str(stage), str(partial),
               f"{size_mib}M"])
        # the guest copies the whole file: no free space in it
        _e2fs([shutil.which("resize2fs") or "/usr/sbin/resize2fs", "-M", str(partial)])
        os.replace(partial, image)
    _prune(cache, keep=image)
    return image


def _e2fs(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        name = Path(cmd[0]).name
        raise MatrixError(f"{name}: {(proc.stderr or proc.stdout).strip()[:300]}")


def _prune(cache: Path, keep: Path) -> None:
    olds = sorted((p for p in cache.glob("python-*.img") if p != keep),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds[KEEP_IMAGES - 1:]:
        old.unlink(missing_ok=True)


def guest_mounts(image: Path, items: list[Folder] | None = None,
                 files: list[Path] | None = None) -> str:
    """Shell for the guest: copy the image into memory, mount it, bind each folder
    and file over its 9p twin. Any step that fails leaves 9p in place and says so."""
    items = folders() if items is None else items
    files = single_files() if files is None else files
    binds = [f"mount --bind {GUEST_MOUNT}/{f.name} {shlex.quote(str(f.path))}" for f in items]
    binds += [f"mount --bind {GUEST_MOUNT}/{FILES}{shlex.quote(str(p))} {shlex.quote(str(p))}"
              for p in files]
    return (
        f"if modprobe -q -a loop ext4 && cp {shlex.quote(str(image))} {GUEST_COPY} && "
        f"mkdir -p {GUEST_MOUNT} && mount -o loop,ro {GUEST_COPY} {GUEST_MOUNT} && "
        + " && ".join(binds)
        + "; then echo 'dsrlab-matrix: python from the image'; "
        "else echo 'dsrlab-matrix: python over 9p (the image did not mount)'; fi")
