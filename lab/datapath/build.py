"""Compile ``bpf/dsr.c`` (or another source of ``bpf/``) with clang into a
content-addressed cache.

The object's name carries a hash of every source file under ``bpf/`` (its
``lib/`` too), of every header the source includes from elsewhere, the
compiler flags and clang's version, so an unchanged tree never rebuilds and a
changed one never reuses a stale object. The cache lives in
``$DSRLAB_CACHE_DIR/bpf`` or ``$XDG_CACHE_HOME/dsrlab/bpf`` (default
``~/.cache/dsrlab/bpf``), outside the repository.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lab import settings
from lab.datapath.errors import DatapathError

MAIN_SOURCE = "dsr.c"
EMPTY_SOURCE = "empty.c"  # the benchmark's floor: a tc program returning TC_ACT_OK
BASE_CFLAGS: tuple[str, ...] = ("-O2", "-g", "-target", "bpf", "-Wall")
LIB_DIR = "lib"  # bpf/lib/: the datapath's headers by concern, as Cilium's bpf/lib/
SYSTEM_INCLUDE_DIRS: tuple[str, ...] = ("/usr/local/include", "/usr/include")
_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]', re.MULTILINE)


def bpf_source_dir() -> Path:
    """``bpf/`` of the checkout (``$DSRLAB_BPF_DIR`` overrides; :mod:`lab.settings`)."""
    return settings.bpf_dir()


def default_cache_dir() -> Path:
    """The object cache, made and checked (:func:`lab.settings.cache_dir`)."""
    return settings.cache_dir()


def arch_include_dirs() -> list[str]:
    """``-I/usr/include/<arch>-linux-gnu`` (for asm/types.h) when it exists."""
    candidate = Path(f"/usr/include/{platform.machine()}-linux-gnu")
    return [f"-I{candidate}"] if candidate.is_dir() else []


def cflags(source_dir: Path, extra: Sequence[str] = ()) -> list[str]:
    """clang's flags: ``-I`` for ``bpf/`` and its ``bpf/lib/`` (the parts by concern)."""
    return [*BASE_CFLAGS, *arch_include_dirs(), f"-I{source_dir}",
            f"-I{source_dir / LIB_DIR}", *extra]


def copy_sources(dest: Path, source_dir: Path | None = None) -> Path:
    """Copy the datapath's sources (``*.c``/``*.h``, ``lib/`` included) into ``dest``,
    for a variant build (a test's or a benchmark's patched copy); ``dest``."""
    src = source_dir or bpf_source_dir()
    for path in src.rglob("*"):
        if path.suffix in (".c", ".h") and path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return dest


def find_clang() -> str:
    """``$CLANG`` or clang on ``PATH``, checked to run (:func:`lab.settings.clang`)."""
    return settings.clang()


@functools.cache
def _clang_version(clang: str) -> str:
    out = subprocess.run([clang, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else clang


def include_dirs(flags: Sequence[str]) -> list[Path]:
    """The folders ``#include`` searches, in clang's order: the ``-I`` flags, then the
    system's."""
    dirs = [Path(f[2:]) for f in flags if f.startswith("-I") and len(f) > 2]
    return [*dirs, *(Path(d) for d in SYSTEM_INCLUDE_DIRS)]


def included_files(main: Path, flags: Sequence[str]) -> list[Path]:
    """Every file ``main`` includes, directly or not, that exists on disk.

    A plain scan of ``#include`` lines (conditionals ignored, so a file under an
    ``#if`` counts too: more than clang reads, never less), resolved as clang does:
    ``"x"`` in the including file's folder first, then the ``-I`` folders, then the
    system's. A name found nowhere (clang's own stddef.h, say) is left out: the
    compiler's version stands for those.
    """
    search = include_dirs(flags)
    seen: dict[Path, None] = {}
    todo = [main.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        try:
            text = path.read_bytes()
        except OSError:
            continue
        for kind, name in _INCLUDE.findall(text):
            rel = name.decode(errors="replace")
            where = ([path.parent] if kind == b'"' else []) + search
            for folder in where:
                candidate = folder / rel
                if candidate.is_file():
                    todo.append(candidate.resolve())
                    break
    return list(seen)


def source_hash(source_dir: Path, flags: Sequence[str], compiler: str,
                main: Path | None = None) -> str:
    """Hash of the sources, the flags and the compiler: the object's cache key.

    It covers every ``*.c``/``*.h`` file under ``source_dir`` (``bpf/lib/``
    included) and, with ``main``, every header it includes from elsewhere
    (:func:`included_files`: libbpf's, the kernel's UAPI, an extra ``-I``), so a
    header edit anywhere rebuilds. Files of ``source_dir`` hash by their path in
    it, not the folder's own path (``-I<source_dir>`` hashes as ``-I<src>``): the
    same sources elsewhere, such as a checkout seen from a VM, reuse the object.
    """
    root = source_dir.resolve()
    flags = [f.replace(str(source_dir), "<src>") for f in flags]
    h = hashlib.sha256()
    files = sorted(p for p in source_dir.rglob("*") if p.suffix in (".c", ".h") and p.is_file())
    for path in files:
        h.update(path.relative_to(source_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    outside = sorted(p for p in (included_files(main, flags_for_scan(source_dir, flags))
                                 if main else [])
                     if not p.is_relative_to(root))
    for path in outside:
        h.update(path.as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    h.update("\0".join(flags).encode() + b"\0")
    h.update(compiler.encode())
    return h.hexdigest()[:20]


def flags_for_scan(source_dir: Path, flags: Sequence[str]) -> list[str]:
    """``flags`` with the ``<src>`` placeholder back to the folder, for the scan."""
    return [f.replace("<src>", str(source_dir)) for f in flags]


def build_object(
    source_dir: Path | None = None,
    cache_dir: Path | None = None,
    extra_cflags: Sequence[str] = (),
    source: str = MAIN_SOURCE,
) -> Path:
    """Compile the datapath (once per content) and return the object's path.

    ``source`` picks another file of ``bpf/`` (e.g. :data:`EMPTY_SOURCE`); the
    object is named after it. Raises :class:`DatapathError` with clang's
    stderr when compilation fails.
    """
    src_dir = source_dir or bpf_source_dir()
    main = src_dir / source
    if not main.is_file():
        raise DatapathError(f"BPF source {main} not found")
    clang = find_clang()
    flags = cflags(src_dir, extra_cflags)
    digest = source_hash(src_dir, flags, _clang_version(clang), main)
    out_dir = cache_dir or default_cache_dir()
    target = out_dir / f"{Path(source).stem}-{digest}.o"
    if target.is_file():
        return target

    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{Path(source).stem}-", suffix=".o", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = subprocess.run(
            [clang, *flags, "-c", str(main), "-o", str(tmp)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DatapathError(
                f"clang failed to compile {main} (exit {proc.returncode})", proc.stderr
            )
        os.replace(tmp, target)  # atomic: concurrent builders agree on the result
    finally:
        tmp.unlink(missing_ok=True)
    return target
