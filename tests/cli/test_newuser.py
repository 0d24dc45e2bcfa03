"""What a new user trips over (issue 18), as a user meets it: real ``dsrlab``
processes, stdout a pipe or a pseudo-terminal of a chosen width.

Piped output shows every row; on a terminal no value is split inside a word
at any width (columns are left out instead, and a line says which); help is
plain text when piped; ``run --all`` prints a line as each scenario ends and
an overall verdict as its last line; a run id chosen by the user.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.utils import wrpcap

from lab.pytest_plugin import require_cmd
from tests.cli.helpers import DSRLAB, ENV, REPO, dsrlab, dsrlab_on_terminal, dsrlab_piped, plain
from tests.seed import (
    NODE_PORT,
    SEED_SCENARIO_PATH,
    SEED_TOPOLOGY_PATH,
    SEED_TRACE_PATH,
    VIP,
    dsr_syn,
    service_synack,
)

SERVICE = f"{VIP}:{NODE_PORT}"
FLOWS = 51
BOX = re.compile("[╭╮╰╯│─┏┓┃━]")
ADDRESS_LIKE = re.compile(r"\d+\.\d+|\d:\d")  # a piece of an address or endpoint


def many_flows(tmp_path: Path) -> Path:
    """A backend node's capture of :data:`FLOWS` DSR flows, each SYN answered."""
    pcap = tmp_path / "many.pcap"
    frames = []
    for i in range(FLOWS):
        frames += [dsr_syn(32768 + i * 7), service_synack(32768 + i * 7)]
    wrpcap(str(pcap), frames)
    return pcap


def review_flows(pcap: Path) -> list[dict[str, Any]]:
    out = dsrlab("review", str(pcap), "--json")
    [f] = json.loads(out.stdout)["files"]
    flows: list[dict[str, Any]] = f["flows"]
    return flows


def ep(d: dict[str, Any]) -> str:
    return f"{d['ip']}:{d['port']}"


# -- piped: every row -------------------------------------------------------------------------


def test_review_piped_shows_every_flow_and_limits_only_when_asked(tmp_path: Path) -> None:
    pcap = many_flows(tmp_path)
    flows = review_flows(pcap)
    assert len(flows) == FLOWS
    out = dsrlab_piped(["review", str(pcap)], ["grep", "-F", SERVICE])
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert len(rows) == FLOWS  # not 30 and "... and 21 more flows"
    assert {r.split()[2] for r in rows} == {ep(f["client"]) for f in flows}
    whole = dsrlab("review", str(pcap))
    assert "more flows" not in whole.stdout
    limited = dsrlab("review", str(pcap), "--limit", "5")
    assert sum(SERVICE in line for line in limited.stdout.splitlines()) == 5
    assert f"... and {FLOWS - 5} more flows" in limited.stdout


# -- a terminal: no value split, at any width --------------------------------------------------


@pytest.mark.parametrize("columns", [40, 60, 80, 120])
def test_a_terminal_never_splits_an_address_at_any_width(tmp_path: Path, columns: int) -> None:
    require_cmd("script")
    pcap = many_flows(tmp_path)
    flows = review_flows(pcap)
    whole = {ep(f["client"]) for f in flows} | {ep(f["backend"]) for f in flows} | {SERVICE}
    out = dsrlab_on_terminal("review", str(pcap), columns=columns)
    assert out.returncode == 0, out.stdout
    text = plain(out.stdout)
    table_lines = [line for line in text.splitlines() if "│" in line or "┃" in line]
    assert table_lines, text
    shown = 0
    for line in table_lines:
        assert len(line) <= columns, line  # the table fits the terminal
        for token in re.split(r"[│┃\s()]+", line):
            if ADDRESS_LIKE.search(token):
                assert token in whole, f"{token!r} is a piece of a value: {line!r}"
                shown += token.startswith("172.18.0.1:")
    assert shown == 30  # a terminal shows a screenful (--limit says otherwise)
    if columns < 100:  # too narrow for every column whole: some left out, and said so
        assert "columns left out at this width: " in text
    else:
        assert "left out" not in text


# -- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["datapath", "run", "--help"]])
def test_help_is_plain_text_when_piped_and_boxed_on_a_terminal(args: list[str]) -> None:
    piped = dsrlab(*args)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("Usage: "), piped.stdout
    assert not BOX.search(piped.stdout), piped.stdout
    require_cmd("script")
    tty = dsrlab_on_terminal(*args, columns=100)
    assert "╭" in tty.stdout


def test_plan_help_offers_only_the_kind_backend() -> None:
    out = dsrlab("plan", "--help")
    assert "netns]" not in out.stdout  # no [kind|netns] choice
    assert "kind, the one backend with a plan" in " ".join(out.stdout.split())
    bad = dsrlab("plan", "--backend", "netns", str(SEED_TOPOLOGY_PATH))
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: the netns backend has no plan: "), bad.stderr


# -- run --all: a line per scenario as it ends, the verdict last -------------------------------


def scenario_folder(tmp_path: Path) -> Path:
    """Two scenarios: ``a-seed`` (the seed, passes) and ``b-snat`` (the seed's DSR trace
    on a SNAT run, paced: a 20 kB download at 5 kB/s, so it lasts 4 s at least; fails)."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    seed = yaml.safe_load(SEED_SCENARIO_PATH.read_text())
    seed.update(topology=str(SEED_TOPOLOGY_PATH), trace=str(SEED_TRACE_PATH))
    (folder / "a-seed.yaml").write_text(yaml.safe_dump({**seed, "name": "a-seed"}))
    snat = {**seed, "name": "b-snat", "settings": {"load_balancer.mode": "snat"},
            "steps": [{"transfer": {"bytes": 20000, "rate": 5000}}]}
    del snat["requests"]
    (folder / "b-snat.yaml").write_text(yaml.safe_dump(snat))
    return folder


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.scenario
def test_run_all_piped_prints_a_line_as_each_scenario_ends_and_the_verdict_last(
        tmp_path: Path) -> None:
    folder = scenario_folder(tmp_path)
    # one at a time (-j 1): the folder's order is the order they end in
    argv = [*DSRLAB, "run", "--all", "-j", "1", "--scenarios", str(folder), "--captures",
            str(tmp_path / "captures"), "--no-screenshot"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=REPO, env=ENV) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        # the second scenario's download takes 4 s at least: the first line came as the
        # first scenario ended, not with the table at the end
        still_running = proc.poll() is None
        rest, err = proc.communicate(timeout=300)
    assert re.fullmatch(r"\[1/2\] a-seed: pass, claims 6/6, \d+\.\d s\n", first), first
    assert still_running
    lines = rest.splitlines()
    assert re.fullmatch(r"\[2/2\] b-snat: FAIL, claims \d/6, \d+\.\d s", lines[0]), lines
    assert lines[1] == "2 scenarios, 1 passed, 1 failed"
    assert lines[-1] == "FAIL: 1 of 2 scenarios failed", rest
    assert proc.returncode == 1, err


@pytest.mark.netns
@pytest.mark.bpf
@pytest.mark.scenario
def test_a_failing_run_ends_with_its_verdict_and_takes_a_chosen_run_id(tmp_path: Path) -> None:
    folder = scenario_folder(tmp_path)
    captures = tmp_path / "captures"
    run_id = "c0ffee"
    out = dsrlab("run", str(folder / "b-snat.yaml"), "--captures", str(captures),
                 "--run-id", run_id, "--no-screenshot", timeout=300)
    assert out.returncode == 1, out.stderr
    last = out.stdout.splitlines()[-1]
    assert re.fullmatch(r"FAIL: b-snat, \d of 6 claims failed( \(\d diagnosis lines? above\))?",
                        last), out.stdout
    assert f"scenario b-snat run {run_id} on netns" in out.stdout
    assert (captures / "b-snat" / run_id / "results.json").is_file()
    # the same id again: refused before anything starts, the capture set kept
    again = dsrlab("run", str(folder / "b-snat.yaml"), "--captures", str(captures),
                   "--run-id", run_id)
    assert again.returncode == 2
    assert again.stderr == (f"error: --run-id: run id {run_id} already has a capture set "
                            f"({captures / 'b-snat' / run_id}); choose another\n")


@pytest.mark.netns
@pytest.mark.bpf
def test_up_takes_a_run_id_checked_like_the_labs_own_and_refused_in_use() -> None:
    run_id = "0ddba1"
    bad = dsrlab("up", str(SEED_TOPOLOGY_PATH), "--run-id", "Seed-1")
    assert bad.returncode == 2
    assert bad.stderr == ("error: --run-id: run id 'Seed-1' is not 6 lowercase hex "
                          "digits\n")
    up = dsrlab("up", str(SEED_TOPOLOGY_PATH), "--run-id", run_id, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        assert f"lab {run_id} (" in up.stdout
        assert Path(f"/run/netns/dsrlab-{run_id}-client").exists()
        again = dsrlab("up", str(SEED_TOPOLOGY_PATH), "--run-id", run_id)
        assert again.returncode == 2
        assert again.stderr.startswith(f"error: --run-id: run id {run_id} is in use on this "
                                       "machine ("), again.stderr
    finally:
        down = dsrlab("down", run_id, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not Path(f"/run/netns/dsrlab-{run_id}-client").exists()
