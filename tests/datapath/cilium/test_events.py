"""Cilium's own drop notifications, read from cilium_events with the version's names."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from lab.datapath.cilium.build import prepared_tree
from lab.datapath.cilium.events import CiliumEvent, EventDecoder, EventLog, EventReader, Names
from lab.datapath.cilium.node import LoadedNode, load_node
from lab.datapath.cilium.source import CiliumSource
from lab.datapath.testrun import run_program
from lab.plumbing import nsutil
from tests.datapath.frames import tcp_frame
from tests.seed import CLIENT_IP, TOPOLOGY, VIP


@pytest.fixture(scope="module")
def lb_node(cilium_source: CiliumSource) -> Iterator[LoadedNode]:
    with load_node(cilium_source, TOPOLOGY, "cilium-dsr-control-plane") as loaded:
        yield loaded


def test_names_are_the_versions_own(cilium_source: CiliumSource) -> None:
    names = Names.from_tree(prepared_tree(cilium_source))
    assert names.drop(169) == "DROP_NO_FIB"
    assert names.drop(133) == "DROP_POLICY"
    assert names.point(0) == "TRACE_TO_LXC"
    assert names.drop(250).startswith("DROP_UNKNOWN_")


def test_a_syn_with_no_route_to_its_backend_is_a_named_drop(
        lb_node: LoadedNode, unrouted_lb_ns: str, cilium_source: CiliumSource) -> None:
    names = Names.from_tree(prepared_tree(cilium_source))
    got: list[CiliumEvent] = []
    seen = threading.Event()

    def sink(event: CiliumEvent) -> None:
        got.append(event)
        if event.kind == "drop":
            seen.set()

    host = lb_node.node.objects["host"]
    decoder = EventDecoder(lb_node.plan.node.name, names)
    with EventReader(lb_node.node.map_fd("cilium_events"), decoder, sink):
        with nsutil.in_netns(unrouted_lb_ns):
            result = run_program(host.program_fd("cil_from_netdev"), tcp_frame("S"),
                                 ingress_ifindex=10, ifindex=10)
        assert seen.wait(10), f"no drop notification (verdict {result.verdict}, got {got})"
    drops = [e for e in got if e.kind == "drop"]
    assert result.verdict == "shot"
    assert drops[0].what == "DROP_NO_FIB"
    assert drops[0].node == "cilium-dsr-control-plane"
    assert f"{CLIENT_IP}:" in drops[0].summary()
    assert drops[0].summary().startswith("drop DROP_NO_FIB at cilium-dsr-control-plane")
    assert VIP not in drops[0].summary()  # the packet was DNATed to the pod before the lookup
    assert drops[0].where.startswith("nodeport.h:")  # the version's own file numbering
    assert drops[0].where == f"nodeport.h:{drops[0].line}"


def test_source_files_are_named_as_the_version_numbers_them(
        cilium_source: CiliumSource) -> None:
    names = Names.from_tree(prepared_tree(cilium_source))
    assert names.file(1) == "bpf_host.c"
    assert names.file(2) == "bpf_lxc.c"
    assert names.file(105) == "nodeport.h"
    assert names.file(250) == "file 250"


def test_sync_returns_with_every_event_written_so_far(
        lb_node: LoadedNode, unrouted_lb_ns: str, cilium_source: CiliumSource) -> None:
    """A threaded reader's sync() hands over what the kernel wrote before it: no
    sleep, no poll interval to wait out."""
    names = Names.from_tree(prepared_tree(cilium_source))
    log = EventLog()
    host = lb_node.node.objects["host"]
    decoder = EventDecoder(lb_node.plan.node.name, names, ifnames={10: "eth0"})
    with EventReader(lb_node.node.map_fd("cilium_events"), decoder, log) as reader:
        log.open_window()
        with nsutil.in_netns(unrouted_lb_ns):
            for port in range(41000, 41005):
                run_program(host.program_fd("cil_from_netdev"), tcp_frame("S", sport=port),
                            ingress_ifindex=10, ifindex=10)
        reader.sync()
        said = log.close_window("Cilium test")
    drops = said.drops
    assert [d.sport for d in drops] == list(range(41000, 41005))
    assert {(d.node, d.ifname, d.what) for d in drops} == {
        ("cilium-dsr-control-plane", "eth0", "DROP_NO_FIB")}
    assert said.drop_groups()[0].count == 5


def test_a_later_fragment_has_no_ports() -> None:
    """Its first bytes after the IP header are data, not a UDP header: a drop of one
    names the addresses only (and so belongs to no connection of the client's)."""
    from scapy.layers.inet import IP, UDP  # noqa: PLC0415
    from scapy.layers.l2 import Ether  # noqa: PLC0415

    first = bytes(Ether() / IP(src=CLIENT_IP, dst="10.0.0.216", flags="MF", frag=0)
                  / UDP(sport=40000, dport=80) / (b"x" * 32))
    later = bytes(Ether() / IP(src=CLIENT_IP, dst="10.0.0.216", frag=185, proto=17)
                  / (b"\x9c\x40\x00\x50" + b"x" * 28))
    for frame, ports in ((first, (40000, 80)), (later, (None, None))):
        event = CiliumEvent("n", "drop", "DROP_FRAG_NOT_FOUND", 10, 0, 0, frame)
        record = event.record()
        assert (record.src, record.dst, record.proto) == (CLIENT_IP, "10.0.0.216", "UDP")
        assert (record.sport, record.dport) == ports


def test_a_window_keeps_its_bounds_however_many_events_come() -> None:
    """A long run's notifications cost no memory beyond the file's bounds: drops and
    traces past them are counted, not kept."""
    from lab.capture.dpevents import MAX_DROPS, MAX_TRACES  # noqa: PLC0415

    log = EventLog()
    log.open_window()
    for i in range(MAX_DROPS + 700):
        log(CiliumEvent("n", "drop", "DROP_NO_FIB", 10, 0, 0, b"", ifname="eth0",
                        where=f"nodeport.h:{i % 3}"))
    for _ in range(MAX_TRACES * 4):
        log(CiliumEvent("n", "trace", "TRACE_TO_LXC", 13, 0, 0, b""))
    said = log.close_window("Cilium test")
    assert len(said.drops) == MAX_DROPS
    assert said.drops_left_out == 700
    assert said.drop_count == MAX_DROPS + 700
    assert len([e for e in said.events if e.kind == "trace"]) == MAX_TRACES
    assert said.traces == {"n TRACE_TO_LXC": MAX_TRACES * 4}
    assert len(log.drops()) == EventLog.RECENT_DROPS  # outside a window: the latest only
