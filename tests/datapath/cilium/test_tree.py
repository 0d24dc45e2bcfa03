"""The build's rewrites of its copy of Cilium's tree, each on its own."""

from __future__ import annotations

from lab.datapath.cilium.tree import (
    config_reads_constants,
    legacy_maps_as_btf,
    static_tail_calls_global,
)

LEGACY = """before
struct bpf_elf_map __section_maps CALLS_MAP = {
	.type		= BPF_MAP_TYPE_PROG_ARRAY,
	.id		= CILIUM_MAP_CALLS,
	.size_key	= sizeof(__u32),
	.size_value	= sizeof(__u32),
	.pinning	= CILIUM_PIN_REPLACE,
	.max_elem	= CILIUM_CALL_SIZE,
};
after
"""


def test_a_legacy_map_becomes_the_same_btf_map() -> None:
    text, names = legacy_maps_as_btf(LEGACY)
    assert names == ["CALLS_MAP"]
    assert "bpf_elf_map" not in text
    assert text.startswith("before\n")
    assert text.endswith("after\n")
    for line in ("__uint(type, BPF_MAP_TYPE_PROG_ARRAY);", "__uint(key_size, sizeof(__u32));",
                 "__uint(value_size, sizeof(__u32));", "__uint(max_entries, CILIUM_CALL_SIZE);",
                 "} CALLS_MAP __section_maps_btf;"):
        assert line in text
    assert "pinning" not in text
    assert ".id" not in text


def test_static_tail_calls_become_global_in_functions_and_macros() -> None:
    src = ("__section_tail(CILIUM_MAP_CALLS, CILIUM_CALL_X)\nstatic __always_inline\nint f(void)\n"
           "#define T(ID) \\\n__section_tail(CILIUM_MAP_CALLS, ID)\t\t\\\n"
           "static __always_inline\t\\\n"
           "int g(void)\nstatic __always_inline int helper(void)\n")
    text, n = static_tail_calls_global(src)
    assert n == 2
    assert "static __always_inline int helper" in text  # not a tail call: unchanged
    assert text.count("__attribute__((always_inline))") == 2
    assert "__attribute__((always_inline))\t\\\n" in text  # the macro's continuation kept


def test_config_reads_the_compile_time_constant() -> None:
    src = ("#define X 1\n#define CONFIG(name) ({ \\\n\t/* a comment\n\t * on lines */ \\\n"
           "\t__u64 out; \\\n\tasm volatile(\"...\"); \\\n\t(typeof(__config_##name))out; \\\n})\n"
           "#define fetch_u32(x) CONFIG(x)\n")
    text, changed = config_reads_constants(src)
    assert changed
    assert "asm volatile" not in text
    assert "#define CONFIG(name) ((typeof(__config_##name))__config_##name)\n" in text
    assert text.startswith("#define X 1\n")
    assert text.endswith("#define fetch_u32(x) CONFIG(x)\n")
    assert config_reads_constants("#define Y 2\n") == ("#define Y 2\n", False)
