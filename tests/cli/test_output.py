"""What ``dsrlab`` prints: whole values when piped, Rich tables on a terminal, no markup.

Real commands as subprocesses: stdout a pipe (as in ``| grep`` or a CI log,
80 columns in the environment) or a pseudo-terminal (util-linux
``script``). The capture set is the session's one real seed run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from scapy.utils import wrpcap

from lab.pytest_plugin import require_cmd
from tests.cli.helpers import dsrlab, dsrlab_on_terminal, dsrlab_piped, plain
from tests.seed import (
    CLIENT_IP,
    CLIENT_PORT,
    NODE_PORT,
    POD_IP,
    POD_PORT,
    VIP,
    client_syn,
    dsr_syn,
    pod_synack,
)

SERVICE = f"{VIP}:{NODE_PORT}"
CUT_OR_DRAWN = re.compile("[\x1b…│┃┏━]")  # ellipsis, table borders, ANSI escapes


def review_json(*paths: Path) -> dict[str, Any]:
    out = dsrlab("review", *map(str, paths), "--json")
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def ep(d: dict[str, Any]) -> str:
    return f"{d['ip']}:{d['port']}"


def client_pcap(capture_dir: Path) -> Path:
    manifest = json.loads((capture_dir / "manifest.json").read_text())
    [name] = [p["file"] for p in manifest["points"] if p["role"] == "client"]
    return capture_dir / name


def long_dir(tmp_path: Path) -> Path:
    d = tmp_path / ("captures-from-a-real-cluster-" * 2) / ("node-" * 12)
    d.mkdir(parents=True)
    return d


@pytest.mark.netns
@pytest.mark.bpf
def test_review_piped_shows_every_value_whole(seed_capture: Path) -> None:
    out = dsrlab("review", str(seed_capture))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert SERVICE in text
    assert not CUT_OR_DRAWN.search(text), text
    lines = text.splitlines()
    doc = review_json(seed_capture)
    assert len(doc["files"]) >= 4
    for f in doc["files"]:
        # the header names the whole path, on one line
        assert f["path"].startswith(str(seed_capture)), f["path"]
        assert any(line.startswith(f"{f['path']} ({f['point']}, {f['role']}): ")
                   for line in lines), f["path"]
        # a flow is one row, every value whole
        for flow in f["flows"]:
            assert ep(flow["service"]) == SERVICE
            row = (f"{flow['first_frame']} {flow['proto']} {ep(flow['client'])} "
                   f"{ep(flow['backend'])} {SERVICE} ({flow['order']}) {flow['option_hex']} ")
            assert any(" ".join(line.split()).startswith(row) for line in lines), row
        # the overview: one row per file, starting with its capture point
        assert any(line.split()[:2] == [f["point"], f["role"]] for line in lines), f["point"]


@pytest.mark.netns
@pytest.mark.bpf
def test_review_of_merged_pcapng_through_grep(seed_capture: Path) -> None:
    merged = seed_capture / "merged.pcapng"
    [flows] = [f["flows"] for f in review_json(merged)["files"]]
    out = dsrlab_piped(["review", str(merged)], ["grep", "-F", SERVICE])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == len(flows) >= 2, out.stdout
    for line, flow in zip(lines, flows, strict=True):
        assert f" {ep(flow['client'])} " in line
        assert ep(flow["client"]).startswith(f"{CLIENT_IP}:")
        assert f" {SERVICE} (host) " in line, line


@pytest.mark.netns
@pytest.mark.bpf
def test_review_on_a_terminal_draws_rich_tables(seed_capture: Path) -> None:
    require_cmd("script")
    pcap = client_pcap(seed_capture)
    wide = dsrlab_on_terminal("review", str(pcap), columns=200)
    assert wide.returncode == 0, wide.stdout
    assert "┏" in wide.stdout  # borders
    assert "\x1b[" in wide.stdout  # colours
    text = plain(wide.stdout)
    assert f"{pcap} (" in text
    assert f"│ {SERVICE} (host) " in text
    # narrow: a value too wide for its column folds onto the next line, never "…"
    narrow = plain(dsrlab_on_terminal("review", str(pcap), columns=60).stdout)
    assert "┏" in narrow
    assert "…" not in narrow
    assert f"{pcap} (" in narrow  # lines are not wrapped by Rich (the terminal does)


@pytest.mark.netns
@pytest.mark.bpf
def test_markup_like_and_long_paths_print_literally(seed_capture: Path,
                                                    tmp_path: Path) -> None:
    odd = long_dir(tmp_path) / "[red]x[/] :smile:.pcap"  # "[/": a directory "[red]x["
    odd.parent.mkdir()
    shutil.copyfile(client_pcap(seed_capture), odd)
    assert len(str(odd)) > 100
    out = dsrlab("review", str(odd))
    assert out.returncode == 0, out.stderr
    assert any(line.startswith(f"{odd}: pcap, Ethernet; ") for line in out.stdout.splitlines()), \
        out.stdout
    tty = plain(dsrlab_on_terminal("review", str(odd), columns=80).stdout)
    assert f"{odd}: pcap, Ethernet; " in tty
    # and in an error line, on stderr, as one line
    junk = odd.parent.parent / "[bold]junk[/].pcap"
    junk.parent.mkdir()
    junk.write_bytes(b"GET / HTTP/1.1\r\n\r\n")
    bad = dsrlab("review", str(junk))
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"error: {junk}: at byte offset 0: not a pcap or pcapng "
                                 "file"), bad.stderr
    assert bad.stderr.count("\n") == 1, bad.stderr


def test_findings_piped_show_the_whole_message(tmp_path: Path) -> None:
    broken = long_dir(tmp_path) / "broken.pcap"
    wrpcap(str(broken), [dsr_syn(), pod_synack()])
    [f] = review_json(broken)["files"]
    [finding] = [x for x in f["findings"] if x["kind"] == "not-rewritten"]
    assert f"{POD_IP}:{POD_PORT}" in finding["message"]
    out = dsrlab("review", str(broken))
    assert out.returncode == 1
    assert not CUT_OR_DRAWN.search(out.stdout), out.stdout
    [row] = [line for line in out.stdout.splitlines() if line.startswith("error ")]
    assert row.split()[1:3] == [str(finding["frame"]), "not-rewritten"]
    assert row.endswith(f"  {finding['message']}"), row
    [flow] = [line.split() for line in out.stdout.splitlines()
              if line.split()[2:3] == [f"{CLIENT_IP}:{CLIENT_PORT}"]]
    assert flow[-1] == "not-rewritten"


def test_wireshark_prints_a_markup_like_home_literally(tmp_path: Path) -> None:
    home = long_dir(tmp_path) / "[red]home[/]"
    home.mkdir(parents=True)
    out = dsrlab("wireshark", env={"HOME": str(home)})
    assert out.returncode == 0, out.stderr
    plugins = f"{home}/.local/lib/wireshark/plugins"
    [line] = [x for x in out.stdout.splitlines() if x.startswith("for good:")]
    assert line.startswith(f"for good:       mkdir -p {plugins} && cp /"), line
    assert line.endswith(f"dsr_option.lua {plugins}/"), line


@pytest.mark.netns
@pytest.mark.bpf
def test_datapath_run_summary_names_the_whole_output_path(tmp_path: Path) -> None:
    d = long_dir(tmp_path)
    src, dst = d / "in.pcap", d / "[red]out[/].pcap"
    dst.parent.mkdir()
    wrpcap(str(src), [client_syn()])
    out = dsrlab("datapath", "run", "--program", "lb", "--service", SERVICE,
                 "--backend", f"{POD_IP}:{POD_PORT}", "--input", str(src), "--output",
                 str(dst), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "frame 1 dsr_from_netdev: redirect, 62 bytes -> eth0"
    assert out.stderr == f"1 packets (redirect 1); 1 written to {dst}\n"


def test_no_progress_bar_into_a_pipe(tmp_path: Path) -> None:
    pcap = tmp_path / "one.pcap"
    wrpcap(str(pcap), [dsr_syn(), pod_synack()])
    out = dsrlab("review", "--progress", str(pcap))
    assert out.returncode == 1  # the unrewritten reply
    assert out.stderr == ""
    assert not CUT_OR_DRAWN.search(out.stdout), out.stdout
