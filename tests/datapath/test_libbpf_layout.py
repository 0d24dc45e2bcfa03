"""The ctypes mirrors of kernel structs against the C headers they copy (the host's
uapi headers: kernel-independent, so not part of the kernel matrix)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.datapath import libbpf
from lab.datapath.build import arch_include_dirs

UAPI_BPF = Path("/usr/include/linux/bpf.h")


@pytest.mark.skipif(not UAPI_BPF.exists() or not shutil.which("clang"),
                    reason="needs clang and the kernel's uapi headers (linux-libc-dev)")
def test_prog_info_layout_matches_the_kernel_header(tmp_path: Path) -> None:
    """ctypes' struct bpf_prog_info puts verified_insns where the C header does."""
    src = tmp_path / "off.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <linux/bpf.h>\n"
                   "int main(void) { printf(\"%zu %zu %zu\\n\", "
                   "offsetof(struct bpf_prog_info, verified_insns), "
                   "offsetof(struct bpf_prog_info, attach_btf_id), "
                   "offsetof(struct bpf_prog_info, name)); return 0; }\n")
    exe = tmp_path / "off"
    subprocess.run(["clang", *arch_include_dirs(), "-o", str(exe), str(src)], check=True)
    got = [int(x) for x in subprocess.run([str(exe)], capture_output=True, text=True,
                                          check=True).stdout.split()]
    info = libbpf.BpfProgInfo
    assert got == [info.verified_insns.offset, info.attach_btf_id.offset, info.name.offset]
    assert ctypes.sizeof(info) % 8 == 0
