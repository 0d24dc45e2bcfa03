"""Loading the datapath: the build, the verifier, the object's maps and config.

``bpf/dsr.c`` built by clang and loaded through the kernel's verifier; a
build or verifier error carries its log; the C enum of events matches the
Python names; services, config fields and test-run repeats through the
object's maps.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from lab.datapath import (
    EVENT_NAMES,
    BackendEntry,
    DatapathError,
    DatapathObject,
    build_object,
    libbpf,
    maps,
)
from lab.datapath import build as dp_build
from lab.datapath.loader import PROGRAMS, load_counted
from tests.datapath.broken import VERIFIER_SAYS, broken_object
from tests.datapath.frames import Node, backend_syn
from tests.seed import NODE_PORT, OPTION, POD2_IP, POD_IP, POD_PORT, REPO, VIP

DSR_H = REPO / "bpf" / "dsr.h"


# --- loading and building ------------------------------------------------------


@pytest.mark.bpf
def test_object_loads_through_verifier(obj_path: Path) -> None:
    try:
        obj = DatapathObject.load(obj_path)
    except DatapathError as exc:  # pragma: no cover - the message carries the verifier log
        pytest.fail(f"dsr.o was rejected:\n{exc}")
    with obj:
        assert obj.program_fd("dsr_from_netdev") > 0
        assert obj.program_fd("dsr_to_netdev") > 0
        assert obj.option_order() == "host"
    assert obj.closed
    with pytest.raises(DatapathError, match="closed"):
        obj.counters()


def test_missing_object_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatapathError, match="bpf_object__open_file"):
        DatapathObject.load(tmp_path / "missing.o")


def test_build_is_cached(obj_path: Path) -> None:
    mtime = obj_path.stat().st_mtime_ns
    assert build_object() == obj_path
    assert obj_path.stat().st_mtime_ns == mtime


def test_clang_error_is_reported(tmp_path: Path) -> None:
    (tmp_path / "dsr.c").write_text("int broken(void) { return nope; }\n")
    with pytest.raises(DatapathError, match="nope") as info:
        build_object(source_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert "error" in info.value.log


@pytest.mark.bpf
def test_verifier_rejection_carries_log(tmp_path: Path) -> None:
    with pytest.raises(DatapathError, match="verifier log") as info:
        DatapathObject.load(broken_object(tmp_path))
    assert VERIFIER_SAYS in info.value.log
    # the whole log, instruction by instruction, not the statistics level's last lines
    assert re.search(r"^0: \(", info.value.log, re.M), info.value.log[-2000:]


@pytest.mark.bpf
def test_the_statistics_log_counts_what_the_kernel_counts(obj_path: Path) -> None:
    """Before 5.16 the kernel reports no ``verified_insns``: the count comes from the
    load's statistics log. Where the kernel has both (here), they agree program by
    program."""
    obj, _log, processed = load_counted(obj_path)
    try:
        assert set(processed) == set(PROGRAMS)
        for name in PROGRAMS:
            fd = libbpf.lib().bpf_program__fd(
                libbpf.lib().bpf_object__find_program_by_name(obj, name.encode()))
            kernel_count, _translated = libbpf.prog_sizes(fd)
            if kernel_count is None:
                pytest.skip(f"kernel {platform.release()} reports no verified_insns")
            assert processed[name] == kernel_count, name
    finally:
        libbpf.lib().bpf_object__close(obj)


def test_object_name_does_not_depend_on_the_source_folder(tmp_path: Path) -> None:
    """The same sources in another folder (a VM's view of the checkout) hit the cache;
    a changed byte does not."""
    dp_build.copy_sources(tmp_path)
    assert build_object(source_dir=tmp_path) == build_object()
    (tmp_path / "dsr.h").write_text((tmp_path / "dsr.h").read_text() + "\n")
    assert build_object(source_dir=tmp_path) != build_object()


def test_a_lib_header_edit_rebuilds(tmp_path: Path) -> None:
    """bpf/lib/ is on the include path and in the key: a byte changed in one of its
    headers makes another object."""
    dp_build.copy_sources(tmp_path)
    assert f"-I{tmp_path / 'lib'}" in dp_build.cflags(tmp_path)
    assert build_object(source_dir=tmp_path) == build_object()
    parse_h = tmp_path / "lib" / "parse.h"
    parse_h.write_text(parse_h.read_text() + "\n")
    assert build_object(source_dir=tmp_path) != build_object()


def test_a_header_from_outside_bpf_is_in_the_key(tmp_path: Path) -> None:
    """A header the source includes from another folder (libbpf's, the kernel's, an
    extra -I) is hashed too: editing it rebuilds, the object says the new value."""
    src, inc, cache = tmp_path / "src", tmp_path / "inc", tmp_path / "cache"
    src.mkdir()
    inc.mkdir()
    (src / "tiny.c").write_text('#include "outside.h"\nint value(void) { return VALUE; }\n')
    (inc / "outside.h").write_text("#define VALUE 1\n")
    build = lambda: build_object(source_dir=src, cache_dir=cache,  # noqa: E731
                                 extra_cflags=[f"-I{inc}"], source="tiny.c")
    first = build()
    assert build() == first
    (inc / "outside.h").write_text("#define VALUE 2\n")
    second = build()
    assert second != first
    assert first.read_bytes() != second.read_bytes()


def test_included_files_follow_quotes_then_include_dirs(tmp_path: Path) -> None:
    """The scan finds what clang would read: nested, through -I, each once; a name
    found nowhere is left out."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "main.c").write_text('#include "lib/a.h"\n#include <nowhere.h>\n')
    (tmp_path / "lib" / "a.h").write_text('#include "b.h"\n  #  include "c.h"\n')
    (tmp_path / "lib" / "b.h").write_text('#include "a.h"\n')
    (tmp_path / "c.h").write_text("")
    found = dp_build.included_files(tmp_path / "main.c", [f"-I{tmp_path}"])
    names = sorted(p.relative_to(tmp_path).as_posix() for p in found)
    assert names == ["c.h", "lib/a.h", "lib/b.h", "main.c"]


def test_event_names_match_c_enum() -> None:
    enum = dict(
        (int(value), name.lower().removeprefix("ev_"))
        for name, value in re.findall(
            r"^\s*((?:EV|DROP)_[A-Z0-9_]+) = (\d+),", DSR_H.read_text(), re.M
        )
        if name not in ("EV_NONE", "EV_MAX")
    )
    assert enum == EVENT_NAMES


@pytest.mark.bpf
def test_service_update_and_removal(dp: DatapathObject) -> None:
    three = [BackendEntry(POD_IP, POD_PORT), BackendEntry(POD2_IP, POD_PORT),
             BackendEntry("10.0.1.5", 81, local=True)]
    dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=three)
    dp.add_service(VIP, NODE_PORT, "udp", dsr=False, backends=three[:1])
    (svc,) = [s for s in dp.services() if s.proto == "tcp"]
    assert svc.backends == tuple(three)
    assert svc.dsr
    dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=three[:1])
    assert len(dp.map("lb_backends").keys()) == 2  # stale slots 2 and 3 removed
    assert dp.remove_service(VIP, NODE_PORT, "tcp")
    assert not dp.remove_service(VIP, NODE_PORT, "tcp")
    assert [s.proto for s in dp.services()] == ["udp"]


@pytest.mark.bpf
@pytest.mark.netns
def test_reset_gives_every_map_as_a_fresh_load_has_it(node: Node, obj_path: Path) -> None:
    """The ``dp`` fixture shares one loaded object and resets it between tests: every
    map written (by the library, by hand, and by the programs themselves), then reset,
    must read entry for entry as a fresh load's."""
    dp = node.dp
    dp.set_mtu(9000)
    dp.set_selection_seed(7)
    dp.add_service(VIP, NODE_PORT, "tcp", dsr=True, backends=[BackendEntry(POD_IP, POD_PORT)])
    node.run("dsr_from_netdev", backend_syn(OPTION))  # the programs' own writes
    for name in maps.LAYOUTS:
        found = dp.map(name)
        key = (maps.TUNNEL_KEY.pack(32, bytes([10, 0, 0, 1])) if name == "dsr_tunnel"
               else bytes(found.key_size))
        found.update(key, b"\x01" * found.value_size)
    assert all(dp.map(name).items() for name in maps.LAYOUTS)
    dp.reset()
    with DatapathObject.load(obj_path) as fresh:
        for name in maps.LAYOUTS:
            assert dp.map(name).items() == fresh.map(name).items(), name


@pytest.mark.bpf
def test_mtu_setting_keeps_the_other_config_fields(dp: DatapathObject) -> None:
    dp.set_option_order("network")
    dp.set_selection_seed(77)
    dp.set_mtu(9000)
    assert (dp.option_order(), dp.selection_seed(), dp.mtu()) == ("network", 77, 9000)
    dp.set_option_order("host")
    dp.set_selection_seed(None)
    assert dp.mtu() == 9000
    dp.set_selection_seed(5)
    dp.set_mtu(1500)
    assert (dp.option_order(), dp.selection_seed(), dp.mtu()) == ("host", 5, 1500)
    for bad in (-1, 1, 67, 65536):
        with pytest.raises(ValueError, match="mtu"):
            dp.set_mtu(bad)
    assert dp.mtu() == 1500


@pytest.mark.bpf
@pytest.mark.netns
def test_repeat_reports_duration(node: Node) -> None:
    # repeats run on the same skb, so use a frame the program leaves unchanged
    frame = backend_syn(OPTION)
    res = node.run("dsr_from_netdev", frame, repeat=1000)
    assert (res.verdict, res.data) == ("ok", frame)
    assert res.duration_ns > 0
    assert node.dp.counters()["backend_learned"] == 1000
