"""The oldest kernel the datapath loads on, as ``bpf/dsr.h`` states it, checked before loading.

``bpf/dsr.h`` carries ``DSRLAB_MIN_KERNEL`` and ``DSRLAB_MIN_KERNEL_WHY``;
:func:`check_kernel` refuses an older running kernel with that reason (a
:class:`KernelTooOld`), so a test or scenario is skipped with a sentence
instead of failing on the verifier's ``unknown func``.
"""

from __future__ import annotations

import functools
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from lab.datapath.build import bpf_source_dir
from lab.datapath.errors import DatapathError

HEADER = "dsr.h"
_DEFINE = r'^#define {name}\s+"([^"\n]*)"'


class KernelTooOld(DatapathError):
    """The running kernel is older than the datapath's stated minimum."""


@dataclass(frozen=True)
class KernelRequirement:
    """The datapath's minimum kernel: ``version`` (e.g. ``(5, 12)``) and the reason."""

    version: tuple[int, ...]
    why: str

    @property
    def text(self) -> str:
        return ".".join(str(p) for p in self.version)


def release_version(release: str) -> tuple[int, ...]:
    """``6.1.0-57-amd64`` -> ``(6, 1, 0)``; a release without a number -> ``(0,)``."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    return tuple(int(x) for x in m.groups(default="0")) if m else (0,)


@functools.cache
def _read(header: Path) -> KernelRequirement:
    try:
        text = header.read_text()
    except OSError as exc:
        raise DatapathError(f"{header}: {exc.strerror}") from None
    found = {}
    for name in ("DSRLAB_MIN_KERNEL", "DSRLAB_MIN_KERNEL_WHY"):
        m = re.search(_DEFINE.format(name=name), text, re.M)
        if not m:
            raise DatapathError(f"{header} does not define {name} (the datapath's minimum "
                                "kernel, as a string)")
        found[name] = m.group(1)
    if not re.fullmatch(r"\d+\.\d+", found["DSRLAB_MIN_KERNEL"]):
        raise DatapathError(f"{header}: DSRLAB_MIN_KERNEL {found['DSRLAB_MIN_KERNEL']!r} "
                            "is not MAJOR.MINOR")
    return KernelRequirement(release_version(found["DSRLAB_MIN_KERNEL"])[:2],
                             found["DSRLAB_MIN_KERNEL_WHY"])


def requirement(source_dir: Path | None = None) -> KernelRequirement:
    """The minimum kernel that ``bpf/dsr.h`` (of ``source_dir``) states."""
    return _read((source_dir or bpf_source_dir()) / HEADER)


def unmet(release: str | None = None, source_dir: Path | None = None) -> str | None:
    """Why the datapath cannot load on ``release`` (default: the running kernel), or None."""
    release = release or platform.release()
    need = requirement(source_dir)
    if release_version(release) >= need.version:
        return None
    return (f"the lab's datapath needs kernel >= {need.text} ({need.why}); "
            f"this kernel is {release}")


def check_kernel(release: str | None = None, source_dir: Path | None = None) -> None:
    """Raise :class:`KernelTooOld` when the datapath cannot load on ``release``."""
    reason = unmet(release, source_dir)
    if reason:
        raise KernelTooOld(reason)
