"""A lab namespace records who holds its run, in the kernel (lo's alias), for every
state directory to see."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from lab.plumbing import interrupts, names, nsmark, nsutil, procs


@pytest.mark.parametrize("text", [
    "", "dsrlab", "dsrlab abcdef run 1 2", "dsrlab ABCDEF run 1 2 12", "dsrlab abcdef gone 1 2 12",
    "dsrlab abcdef run x 2 12", "dsrlab abcdef run 0 2 12", "dsrlab abcdef run 1 2 99",
    "lab abcdef run 1 2 12", "dsrlab abcdef run 1 2 12 extra", "dsrlab ../../x run 1 2 12",
])
def test_anything_but_a_record_is_no_record(text: str) -> None:
    assert nsmark.Mark.parse(text) is None


def test_a_record_reads_back_as_written() -> None:
    mark = nsmark.Mark("abcdef", "keep", 123, 456, int(signal.SIGUSR2))
    assert mark.text() == "dsrlab abcdef keep 123 456 12"
    assert nsmark.Mark.parse(mark.text()) == mark
    assert mark.left_up_by == "dsrlab run --keep"
    assert nsmark.Mark("abcdef", "run", 1, 2, 2).left_up_by is None


@pytest.mark.netns
def test_a_lab_namespace_records_its_creator_in_the_kernel() -> None:
    run_id = names.new_run_id()
    ns = names.netns_name(run_id, "x")
    nsutil.create(ns)
    try:
        mark = nsutil.read_mark(ns)
        me = procs.ProcessRef.of(os.getpid())
        assert me is not None
        assert mark == nsmark.Mark(run_id, "run", me.pid, me.start_time,
                                   interrupts.stop_signal())
        # where `ip` (and any state directory) sees it too
        shown = subprocess.run(["ip", "-n", ns, "link", "show", "lo"], capture_output=True,
                               text=True, check=True).stdout
        assert f"alias {mark.text()}" in shown
        left = nsmark.Mark(run_id, "up", me.pid, me.start_time, mark.stop_signal)
        nsutil.write_mark(ns, left)
        assert nsutil.read_mark(ns) == left
    finally:
        nsutil.remove(ns)
    assert nsutil.read_mark(ns) is None  # gone with its namespace


@pytest.mark.netns
def test_a_namespace_that_is_not_the_labs_holds_no_record() -> None:
    with nsutil.scratch(f"dsrlab-test-{names.new_run_id()}") as ns:
        assert nsutil.read_mark(ns) is None
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "alias", "someone else's"],
                       check=True)
        assert nsutil.read_mark(ns) is None
    assert nsutil.read_mark("dsrlab-no-such-namespace") is None
