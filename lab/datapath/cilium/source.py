"""A Cilium source tree the lab can build: a checkout, its ``bpf/``, or a tarball.

Users point the lab at their own Cilium with ``--cilium-src PATH`` (or
``DSRLAB_CILIUM_SRC``). Three shapes are accepted:

- a checkout (a folder holding ``bpf/bpf_host.c``; ``VERSION`` and git give
  the version and commit);
- the ``bpf/`` folder itself;
- a ``git archive`` tarball of ``bpf/`` (``cilium-<tag>/bpf/...``, as in
  ``shared/cilium/``): the tag comes from the top folder's name, the commit
  from the archive's pax header (what ``git get-tar-commit-id`` reads).

The lab never writes into the user's tree: :meth:`CiliumSource.extract_to`
copies ``bpf/`` into the build cache, where the build changes its copy.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lab.datapath.errors import DatapathError

ENTRY_SOURCES = ("bpf_host.c", "bpf_lxc.c")
_TAG = re.compile(r"^cilium-(v?\d+\.\d+\.\d+[\w.+-]*)$")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


class CiliumSourceError(DatapathError):
    """The Cilium source given cannot be used (missing, unreadable, no ``bpf/``)."""


@dataclass(frozen=True)
class CiliumVersion:
    """A Cilium release line, from a tag such as ``v1.13.0`` or ``1.16.0-rc.1``."""

    major: int
    minor: int
    patch: int
    text: str  # as found: "v1.13.0", "1.16.0-rc.2"

    @classmethod
    def parse(cls, text: str) -> CiliumVersion:
        m = _VERSION.match(text.strip())
        if not m:
            raise CiliumSourceError(f"cannot read a Cilium version from {text.strip()[:40]!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]), text.strip())

    @property
    def line(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def at_least(self, major: int, minor: int) -> bool:
        return self.line >= (major, minor)

    def __str__(self) -> str:
        return self.text if self.text.startswith("v") else f"v{self.text}"


@dataclass(frozen=True)
class CiliumSource:
    """Where Cilium's ``bpf/`` comes from, its version, commit and content hash."""

    path: Path
    version: CiliumVersion
    commit: str | None
    sha256: str  # of the bpf/ files (names and contents), whatever the shape
    kind: str  # "checkout" | "bpf-dir" | "tarball"

    @classmethod
    def open(cls, path: Path | str) -> CiliumSource:
        """Look at ``path`` and say what it is; one :class:`CiliumSourceError` if unusable."""
        p = Path(path).expanduser()
        if not p.exists():
            raise CiliumSourceError(f"Cilium source {p}: no such file or folder")
        if p.is_dir():
            return _open_dir(p)
        if p.is_file() and (p.name.endswith((".tar.gz", ".tgz", ".tar"))):
            return _open_tarball(p)
        raise CiliumSourceError(
            f"Cilium source {p}: neither a folder holding bpf/ nor a .tar.gz of bpf/"
        )

    def describe(self) -> str:
        commit = f" ({self.commit[:12]})" if self.commit else ""
        return f"Cilium {self.version}{commit}"

    def extract_to(self, dest: Path) -> Path:
        """Copy ``bpf/`` into ``dest/bpf`` (created; must not exist) and return it."""
        target = dest / "bpf"
        if self.kind == "tarball":
            with tarfile.open(self.path) as tar:
                for member in tar.getmembers():
                    rel = _bpf_relative(member.name)
                    if rel is None or not (member.isfile() or member.isdir()):
                        continue
                    out = target / rel
                    if member.isdir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    fobj = tar.extractfile(member)
                    if fobj is None:
                        continue
                    out.write_bytes(fobj.read())
        else:
            src = self.path / "bpf" if self.kind == "checkout" else self.path
            shutil.copytree(src, target, symlinks=False,
                            ignore=shutil.ignore_patterns("*.o", "*.ll", "*.i", ".git"))
        return target


def _bpf_relative(name: str) -> PurePosixPath | None:
    """``cilium-v1.13.0/bpf/lib/maps.h`` -> ``lib/maps.h``; None outside ``bpf/``
    or for a name that climbs out (``..``) or is absolute."""
    parts = PurePosixPath(name).parts
    if "bpf" not in parts or name.startswith("/") or ".." in parts:
        return None
    idx = parts.index("bpf")
    rest = parts[idx + 1:]
    return PurePosixPath(*rest) if rest else None


def _hash_files(files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _open_dir(p: Path) -> CiliumSource:
    if (p / "bpf" / "bpf_host.c").is_file():
        bpf, kind, root = p / "bpf", "checkout", p
    elif (p / "bpf_host.c").is_file():
        bpf, kind, root = p, "bpf-dir", p.parent
    else:
        raise CiliumSourceError(f"Cilium source {p}: no bpf/bpf_host.c (not a Cilium checkout)")
    for entry in ENTRY_SOURCES:
        if not (bpf / entry).is_file():
            raise CiliumSourceError(f"Cilium source {p}: bpf/{entry} is missing")
    version_text = None
    if (root / "VERSION").is_file():
        version_text = (root / "VERSION").read_text(errors="replace").strip()
    commit = _git(root, "rev-parse", "HEAD")
    if version_text is None:
        version_text = _git(root, "describe", "--tags", "--abbrev=0")
    if version_text is None:
        m = _TAG.match(root.name)
        version_text = m[1] if m else None
    if version_text is None:
        raise CiliumSourceError(
            f"Cilium source {p}: no VERSION file, git tag or cilium-<tag> folder name "
            "says which Cilium this is"
        )
    files = [(f.relative_to(bpf).as_posix(), f.read_bytes())
             for f in bpf.rglob("*") if f.is_file() and f.suffix in (".c", ".h")]
    return CiliumSource(p, CiliumVersion.parse(version_text), commit, _hash_files(files), kind)


def _git(root: Path, *args: str) -> str | None:
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=False, timeout=20)
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def _open_tarball(p: Path) -> CiliumSource:
    try:
        with tarfile.open(p) as tar:
            commit = tar.pax_headers.get("comment")
            members = tar.getmembers()
            top = {PurePosixPath(m.name).parts[0] for m in members if m.name}
            files = []
            for m in members:
                rel = _bpf_relative(m.name)
                if rel is None or not m.isfile() or rel.suffix not in (".c", ".h"):
                    continue
                fobj = tar.extractfile(m)
                if fobj is not None:
                    files.append((rel.as_posix(), fobj.read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
        raise CiliumSourceError(f"Cilium source {p}: not a readable tarball ({reason})") from None
    names = {name for name, _ in files}
    for entry in ENTRY_SOURCES:
        if entry not in names:
            raise CiliumSourceError(f"Cilium source {p}: the tarball has no bpf/{entry}")
    tags = [found[1] for t in top if (found := _TAG.match(t))]
    if not tags:
        raise CiliumSourceError(
            f"Cilium source {p}: the tarball's top folder is not cilium-<tag>/ "
            "(make it with git archive --prefix=cilium-<tag>/ <tag> bpf)"
        )
    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
        commit = None
    return CiliumSource(p, CiliumVersion.parse(tags[0]), commit, _hash_files(files), "tarball")


ENV_VAR = "DSRLAB_CILIUM_SRC"


def discover(path: Path | str) -> list[CiliumSource]:
    """The Cilium sources at ``path``: one checkout, ``bpf/`` or tarball, or a folder
    holding ``cilium-<tag>-bpf.tar.gz`` files (as ``shared/cilium/``), oldest first."""
    p = Path(path).expanduser()
    if p.is_dir() and not (p / "bpf").is_dir() and not (p / "bpf_host.c").is_file():
        tarballs = sorted(p.glob("cilium-*.tar.gz"))
        if not tarballs:
            raise CiliumSourceError(
                f"{p}: no Cilium checkout, bpf/ folder or cilium-<tag>-bpf.tar.gz in it")
        found = [CiliumSource.open(t) for t in tarballs]
        return sorted(found, key=lambda s: (s.version.major, s.version.minor, s.version.patch))
    return [CiliumSource.open(p)]


def choose(given: Path | str | None, environ: dict[str, str] | None = None, *,
           wanted_by: str = "--datapath cilium") -> CiliumSource:
    """The one Cilium source a command runs on: ``given`` (``--cilium-src``), else
    ``$DSRLAB_CILIUM_SRC``; a folder of several tarballs is refused, naming them.
    ``wanted_by`` is what asked for Cilium, for the error when there is no source
    (``topologies/x.yaml: datapath: cilium``)."""
    where = given if given is not None else (environ or dict(os.environ)).get(ENV_VAR)
    if not where:
        raise CiliumSourceError(f"{wanted_by} needs a Cilium source: --cilium-src PATH "
                                f"(a checkout, its bpf/, or a bpf/ tarball) or {ENV_VAR}")
    found = discover(where)
    if len(found) > 1:
        raise CiliumSourceError(
            f"{where} holds {len(found)} Cilium sources "
            f"({', '.join(s.path.name for s in found)}); name one of them")
    return found[0]
