"""A datapath the verifier rejects: the real programs plus one unchecked packet read.

Built into the shared, content-addressed object cache (the object's name
hashes the sources, not their folder), so the kernel matrix's guests reuse
the host's build instead of running clang under emulation.
"""

from __future__ import annotations

from pathlib import Path

from lab.datapath import build as dp_build

CHECKED = "\tret = parse(skb, &p);\n\tif (ret == PARSE_IPV6)\n\t\treturn to_netdev6(skb);"
UNCHECKED = "\tif (((__u8 *)(long)skb->data)[40] == 1)\n\t\treturn TC_ACT_SHOT;\n"
BROKEN_PROGRAM = "dsr_to_netdev"  # the program the unchecked read goes into
VERIFIER_SAYS = "invalid access to packet"


def broken_object(folder: Path) -> Path:
    """Write the broken sources to ``folder`` and build them (cached); the object's path."""
    dp_build.copy_sources(folder)
    real = (folder / "dsr.c").read_text()
    broken = real.replace(CHECKED, UNCHECKED + CHECKED)
    assert broken != real, "dsr.c changed: the broken variant no longer applies"
    assert broken.count(UNCHECKED) == 1
    (folder / "dsr.c").write_text(broken)
    return dp_build.build_object(source_dir=folder)
