"""What the build changes in its copy of Cilium's ``bpf/`` so plain libbpf loads it.

Cilium's agent loads its objects with its own Go ELF loader, which accepts
things libbpf 1.x does not. The lab's build copies the tree into its cache
and rewrites, in that copy only, the three constructs that differ; each
rewrite is a function from text to text, tested on its own, and each says
how many places it changed so a tree where it found nothing it expected is
visible:

- legacy ``struct bpf_elf_map __section_maps NAME = {...}`` definitions (the
  prog arrays: ``POLICY_CALL_MAP``, ``CALLS_MAP``, ...) become BTF-defined
  maps of the same type, key, value and size;
- tail-call programs declared ``static`` (v1.16: libbpf 1.1 refuses a
  static program) become global;
- v1.16's ``CONFIG()`` reads a ``.rodata.config`` constant through an asm
  ``ldimm64`` that the agent's loader patches into an immediate; under
  libbpf it would be a map pointer, so the copy reads the compile-time
  value of the ``static const`` instead (the headers the lab writes carry
  the values the agent would substitute).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MARK = "dsrlab"

_LEGACY_MAP = re.compile(
    r"struct\s+bpf_elf_map\s+__section_maps\s+(?P<name>\w+)\s*=\s*\{(?P<body>.*?)\};",
    re.DOTALL,
)
_FIELD = re.compile(r"\.(?P<key>\w+)\s*=\s*(?P<value>[^,\n]+?)\s*,?\s*(?:/\*.*?\*/)?\s*$",
                    re.MULTILINE)
_STATIC_TAIL = re.compile(
    r"(?P<head>__section_tail\([^)]*\)[ \t]*\\?[ \t]*\n)static[ \t]+__always_inline(?P<tail>[ \t]*)"
)
_CONFIG_MACRO = re.compile(r"^#define CONFIG\(name\) \(\{ \\\n.*?^\}\)\n", re.MULTILINE | re.DOTALL)

# bpf_elf_map field -> BTF map attribute
_BTF_FIELDS = (("type", "type"), ("size_key", "key_size"), ("size_value", "value_size"),
               ("max_elem", "max_entries"), ("flags", "map_flags"))


@dataclass
class TreeChanges:
    """How many places each rewrite changed in the copy."""

    legacy_maps: list[str]
    static_tail_calls: int
    config_macro: bool

    def summary(self) -> str:
        return (f"{len(self.legacy_maps)} legacy map(s) as BTF maps "
                f"({', '.join(self.legacy_maps) or 'none'}), "
                f"{self.static_tail_calls} static tail call(s) made global, "
                f"CONFIG() {'reads compile-time values' if self.config_macro else 'unchanged'}")


def legacy_maps_as_btf(text: str) -> tuple[str, list[str]]:
    """Every ``bpf_elf_map`` definition in ``text`` as a BTF-defined map."""
    names: list[str] = []

    def convert(m: re.Match[str]) -> str:
        fields = {f["key"]: f["value"].strip() for f in _FIELD.finditer(m["body"])}
        lines = [f"\t__uint({attr}, {fields[key]});"
                 for key, attr in _BTF_FIELDS if key in fields]
        names.append(m["name"])
        return (f"/* {MARK}: a legacy iproute2 map definition as a BTF map (libbpf >= 1.0) */\n"
                "struct {\n" + "\n".join(lines) + f"\n}} {m['name']} __section_maps_btf;")

    return _LEGACY_MAP.sub(convert, text), names


def static_tail_calls_global(text: str) -> tuple[str, int]:
    """``__section_tail(...) static __always_inline`` programs made global."""
    return _STATIC_TAIL.subn(
        lambda m: f"{m['head']}__attribute__((always_inline)){m['tail']}", text)


def config_reads_constants(text: str) -> tuple[str, bool]:
    """v1.16's asm ``CONFIG()`` replaced by a read of the compile-time constant."""
    new, n = _CONFIG_MACRO.subn(
        f"/* {MARK}: the agent patches the asm load into an immediate; libbpf would not */\n"
        "#define CONFIG(name) ((typeof(__config_##name))__config_##name)\n", text)
    return new, n > 0


def prepare(bpf_dir: Path) -> TreeChanges:
    """Rewrite the copy of ``bpf/`` at ``bpf_dir`` in place; say what changed."""
    changes = TreeChanges([], 0, False)
    for path in sorted(bpf_dir.rglob("*")):
        if path.suffix not in (".c", ".h") or not path.is_file() or "tests" in path.parts:
            continue
        text = path.read_text(errors="surrogateescape")
        new, maps = legacy_maps_as_btf(text)
        new, statics = static_tail_calls_global(new)
        config = False
        if path.name == "static_data.h":
            new, config = config_reads_constants(new)
        if new != text:
            path.write_text(new, errors="surrogateescape")
            changes.legacy_maps += maps
            changes.static_tail_calls += statics
            changes.config_macro = changes.config_macro or config
    return changes
