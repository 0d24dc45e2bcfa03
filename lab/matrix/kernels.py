"""The kernel matrix as data: the list file, its typed model, and resolving it with apt.

``kernels/matrix.yaml`` names each kernel line by a regular expression over
Debian package names; :func:`resolve` asks ``apt-cache`` which packages match,
takes the newest (natural order of the name: ``6.1.0-57`` after ``6.1.0-9``)
and records its exact Debian version and whether it is installed. The parsing
is split from the running (:func:`parse_search`, :func:`parse_policy`) so the
tests feed it real ``apt-cache`` output kept as files.
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lab.errors import LabError
from lab.matrix.aptsource import ere_problem, preferences_name, suite_problem
from lab.model.errors import validation_message
from lab.model.yamldoc import read_yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LIST = REPO / "kernels" / "matrix.yaml"
HOST = "host"
IMAGE_PREFIX = "linux-image-"


class MatrixError(LabError, ValueError):
    """The kernel list, apt or a guest run failed in a way the user can act on."""


class KernelSpec(BaseModel):
    """One kernel line of the list: a name, the package pattern apt resolves and, for a
    kernel the system's own suite lacks, the Debian suite (codename) that has it: the
    install step adds that suite's apt source for this package only
    (:mod:`lab.matrix.aptsource`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[0-9][0-9A-Za-z.+_-]*$")]
    package: Annotated[str, Field(min_length=1)]
    suite: str | None = None

    @field_validator("suite")
    @classmethod
    def _suite(cls, value: str | None) -> str | None:
        problem = None if value is None else suite_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _pattern_for_apt(self) -> KernelSpec:
        # the pattern becomes apt's pin of the suite: it must mean the same to apt
        problem = None if self.suite is None else ere_problem(self.package)
        if problem:
            raise ValueError(f"package {self.package!r} with a suite: {problem}")
        return self

    @field_validator("package")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if not value.startswith(IMAGE_PREFIX.replace("-", "")) and not value.startswith("linux"):
            raise ValueError(f"{value!r} does not name a linux-image package")
        return value


class Group(BaseModel):
    """A test group run under each kernel: pytest paths, in the default set or ``--full``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
    paths: Annotated[list[str], Field(min_length=1)]
    full: bool = False
    # scenarios whose Cilium objects the host builds first (with DSRLAB_CILIUM_SRC):
    # the guest finds them in its cache instead of compiling under emulation
    cilium_scenarios: list[str] = []


class MatrixList(BaseModel):
    """The whole list file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kernels: list[KernelSpec]
    groups: Annotated[list[Group], Field(min_length=1)]

    @field_validator("kernels", "groups")
    @classmethod
    def _unique(cls, value: list[KernelSpec] | list[Group]) -> list[KernelSpec] | list[Group]:
        names = [v.name for v in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"names given twice: {', '.join(dup)}")
        if HOST in names:
            raise ValueError(f"{HOST!r} is the running kernel, not a list entry")
        return value

    def kernel(self, name: str) -> KernelSpec:
        for k in self.kernels:
            if k.name == name:
                return k
        known = ", ".join([HOST, *(k.name for k in self.kernels)])
        raise MatrixError(f"no kernel {name!r} in the matrix (known: {known})")

    def suites(self, names: list[str] | None = None) -> dict[str, list[str]]:
        """``{suite: package patterns}`` of the named kernels (all without names) that
        come from another Debian suite; the host needs none."""
        specs = self.kernels if names is None else [
            self.kernel(n) for n in names if n != HOST]
        out: dict[str, list[str]] = {}
        for k in specs:
            if k.suite is not None:
                out.setdefault(k.suite, []).append(k.package)
        return out

    def selected_groups(self, full: bool, names: list[str] | None = None) -> list[Group]:
        """The default groups (``full``: every group), or the ones ``names`` gives,
        in the list's order; an unknown name is a :class:`MatrixError`."""
        if names:
            known = {g.name for g in self.groups}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise MatrixError(f"no group {', '.join(map(repr, unknown))} in the matrix "
                                  f"(known: {', '.join(g.name for g in self.groups)})")
            return [g for g in self.groups if g.name in names]
        return [g for g in self.groups if full or not g.full]


class ResolvedKernel(BaseModel):
    """A kernel line resolved with apt: the exact package and version to boot."""

    model_config = ConfigDict(frozen=True)

    name: str
    package: str | None  # None for the host kernel
    version: str | None  # Debian version (apt's candidate), None for the host
    release: str  # ``uname -r`` of the kernel: /boot/vmlinuz-<release>, /lib/modules/<release>
    installed: bool

    @property
    def vmlinuz(self) -> Path:
        return Path("/boot") / f"vmlinuz-{self.release}"

    @property
    def modules(self) -> Path:
        return Path("/lib/modules") / self.release


def load_list(path: Path = DEFAULT_LIST) -> MatrixList:
    """The list file, validated; a :class:`MatrixError` names the file and the field
    (the lab's one document reader and error format: :mod:`lab.model`)."""
    data = read_yaml(path, MatrixError)
    try:
        return MatrixList.model_validate(data)
    except ValidationError as exc:
        raise MatrixError(validation_message(path, exc, MatrixList)) from None


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers: ``6.1.0-57`` > ``6.1.0-9``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p)
                 for p in re.findall(r"\d+|[^\d]+", text))


def parse_search(text: str, pattern: str) -> list[str]:
    """Package names in ``apt-cache search --names-only`` output that match ``pattern``
    whole, newest first."""
    rx = re.compile(pattern)
    names = {line.split(" - ", 1)[0].strip() for line in text.splitlines() if line.strip()}
    return sorted((n for n in names if rx.fullmatch(n)), key=natural_key, reverse=True)


def parse_policy(text: str) -> dict[str, tuple[str | None, str | None]]:
    """``apt-cache policy PKG...`` output as ``{package: (installed, candidate)}``
    (``None`` where apt says ``(none)``)."""
    out: dict[str, tuple[str | None, str | None]] = {}
    current: str | None = None
    fields: dict[str, str | None] = {}
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
            fields = {}
            out[current] = (None, None)
            continue
        m = re.match(r"^\s+(Installed|Candidate):\s*(\S+)", line)
        if m and current is not None:
            fields[m.group(1)] = None if m.group(2) == "(none)" else m.group(2)
            out[current] = (fields.get("Installed"), fields.get("Candidate"))
    return out


def resolve_from(spec: KernelSpec, search: str, policy: str) -> ResolvedKernel:
    """``spec`` resolved from captured ``apt-cache search`` and ``apt-cache policy`` output."""
    names = parse_search(search, spec.package)
    if not names:
        hint = ("apt-get update first?" if spec.suite is None else
                f"scripts/install-matrix.sh {spec.name} adds {spec.suite}'s apt source")
        raise MatrixError(f"kernel {spec.name}: apt offers no package matching "
                          f"{spec.package!r} ({hint})")
    package = names[0]
    installed, candidate = parse_policy(policy).get(package, (None, None))
    if spec.suite is not None and installed is None and candidate is None:
        # pinned away: the suite's preferences file is not this list's
        raise MatrixError(f"kernel {spec.name}: apt knows {package} but would not install "
                          f"it (no candidate: see /etc/apt/preferences.d/"
                          f"{preferences_name(spec.suite)})")
    return ResolvedKernel(name=spec.name, package=package, version=installed or candidate,
                          release=package.removeprefix(IMAGE_PREFIX),
                          installed=installed is not None)


def _apt_cache(*args: str) -> str:
    try:
        proc = subprocess.run(["apt-cache", *args], capture_output=True, text=True,
                              check=False, timeout=120)
    except FileNotFoundError:
        raise MatrixError("apt-cache not found: the kernel matrix needs Debian's apt") from None
    if proc.returncode != 0:
        raise MatrixError(f"apt-cache {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def resolve(spec: KernelSpec) -> ResolvedKernel:
    """``spec`` resolved with the apt of this machine: the newest matching package."""
    search = _apt_cache("search", "--names-only", f"^{spec.package}$")
    names = parse_search(search, spec.package)
    policy = _apt_cache("policy", names[0]) if names else ""
    return resolve_from(spec, search, policy)


def host_kernel() -> ResolvedKernel:
    """The running kernel (no VM, no package)."""
    return ResolvedKernel(name=HOST, package=None, version=None, release=platform.release(),
                          installed=True)
