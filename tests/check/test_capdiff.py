"""``dsrlab diff``: real seed capture sets compared hop by hop (lab.check.capdiff).

Two runs of the seed on the lab's datapath differ in every client port, IP id,
ISN and backend address, and in which backend each connection reached: the
comparison must call them the same. A copy edited with scapy (a packet dropped
at the LB node, a flag changed) must be found at the right role and packet.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap, wrpcap

from lab.capture.capdir import CaptureDir
from lab.check.capdiff import DiffError, diff_folders, find_flows
from lab.pytest_plugin import require_cmd, require_root
from tests.cli.helpers import dsrlab


@pytest.fixture(scope="module")
def second_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another run of the seed on the lab's datapath (its own random ports, backends)."""
    require_root()
    require_cmd("tcpdump", "curl", "clang")
    from lab.runner.scenario import run_scenario  # noqa: PLC0415

    run = run_scenario("seed", captures_root=tmp_path_factory.mktemp("seed-again"))
    assert run.passed
    return run.capture_dir


def _lb_pcap(capture: Path) -> Path:
    cd = CaptureDir.load(capture)
    return next(cd.by_role("lb-node")).file


def test_two_lab_runs_are_the_same(seed_capture: Path, second_seed: Path) -> None:
    d = diff_folders(seed_capture, second_seed)
    assert d.same, "\n".join(d.summary_lines() + d.details())
    # the seed sends 4 requests or more, until every backend answered (chance)
    assert min(d.flows_a, d.flows_b) >= 4
    assert d.flows_same
    assert [r.role for r in d.roles] == ["client", "lb-node", "backend-node", "pod"]
    for r in d.roles:
        assert r.packets_a == r.packets_b > 0
        assert r.summary() == f"{r.role}: {r.packets_a} packets, same"
    # what was masked really differed: the client's ports are not the same
    ports_a = [f.port for f in find_flows(CaptureDir.load(seed_capture))]
    ports_b = [f.port for f in find_flows(CaptureDir.load(second_seed))]
    assert ports_a != ports_b


def test_dropped_packet_at_lb_node_found(seed_capture_copy: Path, seed_capture: Path) -> None:
    pcap = _lb_pcap(seed_capture_copy)
    frames = list(rdpcap(str(pcap)))
    flows = find_flows(CaptureDir.load(seed_capture))
    second = flows[1]
    # the 3rd packet of flow 2 at the LB node goes
    lb = next(CaptureDir.load(seed_capture).by_role("lb-node")).name
    victim = second.packets[lb][2].frame
    del frames[victim - 1]
    wrpcap(str(pcap), frames)
    d = diff_folders(seed_capture, seed_capture_copy)
    assert not d.same
    by_role = {r.role: r for r in d.roles}
    assert by_role["client"].same
    assert by_role["pod"].same
    lbd = by_role["lb-node"].difference
    assert lbd is not None
    assert (lbd.flow, lbd.packet) == (2, 3), by_role["lb-node"].summary()
    assert by_role["lb-node"].packets_a == by_role["lb-node"].packets_b + 1


def test_extra_packets_named(seed_capture_copy: Path, seed_capture: Path) -> None:
    """The last flow's last FIN at the LB node gone: "A has 1 more packet at lb-node"."""
    pcap = _lb_pcap(seed_capture_copy)
    flows = find_flows(CaptureDir.load(seed_capture))
    lb = next(CaptureDir.load(seed_capture).by_role("lb-node")).name
    # the last FIN there (the teardown's pure ACKs are left out of the comparison)
    last = max(p.frame for p in flows[-1].packets[lb] if "F" in p.flags)
    frames = list(rdpcap(str(pcap)))
    wrpcap(str(pcap), [f for i, f in enumerate(frames, 1) if i != last])
    d = diff_folders(seed_capture, seed_capture_copy)
    lbd = next(r for r in d.roles if r.role == "lb-node").difference
    assert lbd is not None
    assert lbd.flow == len(flows)
    assert lbd.message.startswith("A has 1 more packet at lb-node: ")


def test_changed_flag_found_with_its_table(seed_capture_copy: Path, seed_capture: Path) -> None:
    pcap = _lb_pcap(seed_capture_copy)
    frames = list(rdpcap(str(pcap)))
    cd = CaptureDir.load(seed_capture)
    lb = next(cd.by_role("lb-node")).name
    first = find_flows(cd)[0].packets[lb]
    data = next(p for p in first if p.flags == "PA")
    index = first.index(data) + 1
    pkt = frames[data.frame - 1]
    pkt[TCP].flags = "A"  # PSH dropped: checksums recomputed, so only the flag differs
    del pkt[TCP].chksum
    del pkt[IP].chksum
    frames[data.frame - 1] = pkt.__class__(bytes(pkt))
    wrpcap(str(pcap), frames)
    d = diff_folders(seed_capture, seed_capture_copy)
    lbd = next(r for r in d.roles if r.role == "lb-node").difference
    assert lbd is not None
    assert (lbd.flow, lbd.packet) == (1, index)
    wrong = [f for f in lbd.fields if not f.ok]
    assert [(f.field, f.expected, f.got) for f in wrong] == [("flags", "PA", "A")]
    text = "\n".join(d.details())
    assert "✗ flags" in text
    assert "expected PA" in text


def test_cli_exit_codes_and_output(seed_capture: Path, second_seed: Path,
                                   seed_capture_copy: Path, tmp_path: Path) -> None:
    same = dsrlab("diff", str(seed_capture), str(second_seed))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "lb-node: " in same.stdout
    assert "packets, same" in same.stdout
    assert re.fullmatch(r"SAME: seed, \d+ flows at 4 roles", same.stdout.rstrip().splitlines()[-1])
    pcap = _lb_pcap(seed_capture_copy)
    cd = CaptureDir.load(seed_capture)
    lb = next(cd.by_role("lb-node")).name
    fin = max(p.frame for p in find_flows(cd)[0].packets[lb] if "F" in p.flags)
    wrpcap(str(pcap), [f for i, f in enumerate(rdpcap(str(pcap)), 1) if i != fin])
    differ = dsrlab("diff", str(seed_capture), str(seed_capture_copy))
    assert differ.returncode == 1, differ.stdout + differ.stderr
    assert "lb-node: first difference at packet" in differ.stdout
    as_json = json.loads(dsrlab("diff", "--json", str(seed_capture),
                                str(seed_capture_copy)).stdout)
    assert as_json["same"] is False


def test_bad_inputs_one_line_exit_2(seed_capture: Path, seed_capture_copy: Path,
                                    tmp_path: Path) -> None:
    other = seed_capture_copy
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["scenario"] = "seed-elsewhere"
    (other / "manifest.json").write_text(json.dumps(manifest))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    cases = {
        str(tmp_path / "absent"): "not a folder",
        str(tmp_path): "not a capture set (no manifest.json)",
        str(broken): "not a capture set",
        str(other): "of scenario 'seed-elsewhere'",
    }
    for folder, why in cases.items():
        out = dsrlab("diff", str(seed_capture), folder)
        assert out.returncode == 2, (folder, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert why in lines[0]
        assert folder in lines[0]
        assert "Traceback" not in out.stderr
        assert not out.stdout
    with pytest.raises(DiffError, match=r"^A "):
        diff_folders(tmp_path / "absent", seed_capture)


def test_unreadable_pcap_is_one_line(seed_capture: Path, seed_capture_copy: Path) -> None:
    _lb_pcap(seed_capture_copy).write_bytes(b"not a pcap at all")
    out = dsrlab("diff", str(seed_capture), str(seed_capture_copy))
    assert out.returncode == 2
    assert "cannot read" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_copy_of_itself_is_the_same(seed_capture: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(seed_capture, copy)
    assert diff_folders(seed_capture, copy).same


def _drop_last_flow(capture: Path, sent_fix: bool) -> int:
    """Remove the last flow's packets from every pcap of ``capture`` (and, with
    ``sent_fix``, one request from steps.json, as if the client had sent one fewer);
    returns the flow count left."""
    cd = CaptureDir.load(capture)
    flows = find_flows(cd)
    last = flows[-1]
    for pt in cd.points:
        gone = {p.frame for p in last.packets.get(pt.name, [])}
        if gone:
            frames = list(rdpcap(str(pt.file)))
            wrpcap(str(pt.file), [f for i, f in enumerate(frames, 1) if i not in gone])
    if sent_fix:
        steps = json.loads((capture / "steps.json").read_text())
        steps[0]["figures"]["sent"] -= 1
        (capture / "steps.json").write_text(json.dumps(steps))
    return len(flows) - 1


def test_fewer_flows_as_the_client_sent_fewer_is_noted(seed_capture: Path,
                                                       seed_capture_copy: Path) -> None:
    """A scenario that sends requests until every backend answered sends as many as
    chance needs: a flow count that differs exactly as the requests sent is noted."""
    left = _drop_last_flow(seed_capture_copy, sent_fix=True)
    d = diff_folders(seed_capture, seed_capture_copy)
    assert (d.flows_a, d.flows_b) == (left + 1, left)
    assert d.same, d.summary_lines()
    assert d.summary_lines()[0].startswith(f"flows: A has {left + 1}, B has {left}, as")


def test_a_flow_missing_without_reason_is_a_difference(seed_capture: Path,
                                                       seed_capture_copy: Path) -> None:
    left = _drop_last_flow(seed_capture_copy, sent_fix=False)
    d = diff_folders(seed_capture, seed_capture_copy)
    assert not d.same
    assert all(r.same for r in d.roles)  # the flows compared are the same
    assert d.summary_lines()[0] == (f"flows: A has {left + 1}, B has {left} "
                                    f"(the first {left} compared)")
    out = dsrlab("diff", str(seed_capture), str(seed_capture_copy))
    assert out.returncode == 1


@pytest.mark.parametrize("scenario", [
    # SNAT: the port the LB node picks for each connection is a run's own (a symbol,
    # $eph2), and the backend's FIN goes to the LB node, not the client (the teardown
    # is ordered by side, not by the client's address)
    "modes/snat-tcp-remote",
    # record route: the addresses it records are the backend's and its node's
    "failures/syn-with-ip-options",
    # crafted packets carry their seq and ack as they are, not relative to an ISN
    "crafted/out-of-window",
    # a SYN sent again after a reset: the backend answers with a new ISN
    "failures/fabric-strips-option-client-resets",
])
def test_two_runs_are_the_same(scenario: str, tmp_path: Path) -> None:
    require_root()
    require_cmd("tcpdump", "curl", "clang")
    from lab.runner.scenario import run_scenario  # noqa: PLC0415

    path = Path(__file__).resolve().parents[2] / "scenarios" / f"{scenario}.yaml"
    runs = [run_scenario(path, captures_root=tmp_path / str(i)) for i in (1, 2)]
    assert all(r.passed for r in runs)
    d = diff_folders(runs[0].capture_dir, runs[1].capture_dir)
    assert d.same, "\n".join(d.summary_lines() + d.details())
    pod = next(r for r in d.roles if r.role == "pod")
    assert pod.packets_a > 0
