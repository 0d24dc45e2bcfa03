"""The Wireshark Lua dissector for the DSR option, run in the real tshark.

Hand-built pcaps for each encoding, the session's real seed capture set
(``seed_capture``: root, netns, BPF), and ``dsrlab wireshark``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, IPOption
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

from lab.check import wireshark as ws
from lab.check.review import plausible_order, review
from lab.wire import dsropt
from tests.seed import (
    CLIENT_IP,
    MISREAD_ADDR,
    NODE_PORT,
    OPTION,
    OPTION_NETWORK,
    POD2_IP,
    POD_IP,
    POD_PORT,
    SERVICE_ADDR,
    VIP,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")


def tshark(pcap: Path, *args: str, lua: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = ws.tshark_argv(pcap, *args) if lua else ["tshark", "-r", str(pcap), *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert "Lua: Error" not in out.stderr, out.stderr
    return out


def fields(pcap: Path, dfilter: str, *names: str, lua: bool = True,
           opts: tuple[str, ...] = ()) -> list[list[str]]:
    args = [*opts, "-Y", dfilter, "-T", "fields", "-E", "separator=|"]
    for n in names:
        args += ["-e", n]
    out = tshark(pcap, *args, lua=lua)
    return [line.split("|") for line in out.stdout.splitlines() if line]


def syn(opt: bytes, sport: int = 40000) -> Packet:
    return (Ether() / IP(src=CLIENT_IP, dst=POD_IP, options=[IPOption(opt)])
            / TCP(sport=sport, dport=POD_PORT, flags="S"))


def plain(sport: int = 40000) -> Packet:
    return Ether() / IP(src=CLIENT_IP, dst=VIP) / TCP(sport=sport, dport=NODE_PORT, flags="S")


def write(tmp_path: Path, name: str, pkts: list[Packet]) -> Path:
    path = tmp_path / name
    wrpcap(str(path), pkts)
    return path


# -- the package ----------------------------------------------------------------------------


def test_lua_file_ships_inside_the_package() -> None:
    path = ws.lua_path()
    assert path.name == "dsr_option.lua"
    assert path.parent == REPO / "lab" / "check" / "wireshark"
    text = path.read_text()
    assert 'Proto("dsropt"' in text
    assert "register_postdissector" in text
    for name in ws.FIELDS:
        assert f'"{name}"' in text or name == "dsropt", name
    # hatch builds the wheel from packages = ["lab"]: every file under lab/ that git
    # does not ignore goes in (checked by building a wheel by hand: the .lua is there)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["lab"]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO, check=False)
    assert ignored.returncode == 1, "the .lua file is git-ignored: hatch would leave it out"


def test_tshark_has_lua_and_loads_the_script() -> None:
    info = ws.tshark_info()
    assert info.lua is not None
    assert info.lua.startswith("Lua 5.")
    loaded = ws.check_loads()
    assert {"dsropt", "dsropt.service", "dsropt.service.ip", "dsropt.service.port",
            "dsropt.order", "dsropt.alt.service", "dsropt.alt.ip", "dsropt.alt.port",
            "dsropt.first", "dsropt.raw"} <= set(loaded)
    if os.geteuid() == 0:
        # root runs user Lua only if init.lua allows it; Debian's 4.0 does
        assert info.run_as_superuser is True
        assert not info.blocked_for_root


def test_init_lua_settings_are_read() -> None:
    text = "enable_lua = true\n-- run_user_scripts_when_superuser = true\n" \
           "run_user_scripts_when_superuser = false\n"
    assert ws._init_setting(text, "enable_lua") is True
    assert ws._init_setting(text, "run_user_scripts_when_superuser") is False
    assert ws._init_setting(text, "disable_lua") is None


# -- decoding ---------------------------------------------------------------------------------


def test_without_the_script_the_option_is_unknown(tmp_path: Path) -> None:
    pcap = write(tmp_path, "seed.pcap", [plain(), syn(OPTION)])
    out = tshark(pcap, "-V", lua=False)
    assert "Unknown (0x9a) (8 bytes)" in out.stdout
    assert "dsropt" not in out.stdout
    with_lua = tshark(pcap, "-V")
    assert f"Cilium DSR option: service {SERVICE_ADDR} (host byte order)" in with_lua.stdout


def test_host_order_option_decoded_as_fields(tmp_path: Path) -> None:
    pcap = write(tmp_path, "host.pcap", [plain(), syn(OPTION), plain()])
    rows = fields(pcap, "dsropt", "frame.number", "dsropt.service", "dsropt.service.ip",
                  "dsropt.service.port", "dsropt.order", "dsropt.alt.service",
                  "dsropt.alt.order", "dsropt.first", "dsropt.raw")
    assert rows == [["2", SERVICE_ADDR, VIP, str(NODE_PORT), "host",
                     MISREAD_ADDR, "network", "1", OPTION.hex()]]
    assert fields(pcap, f"dsropt.service.ip == {VIP} && dsropt.service.port == {NODE_PORT}",
                  "frame.number") == [["2"]]
    info = tshark(pcap, "-Y", "dsropt").stdout
    assert f"[DSR {SERVICE_ADDR}]" in info


def test_network_order_option_decoded(tmp_path: Path) -> None:
    pcap = write(tmp_path, "net.pcap", [syn(OPTION_NETWORK)])
    assert fields(pcap, "dsropt", "dsropt.service", "dsropt.order", "dsropt.alt.service") == [
        [SERVICE_ADDR, "network", MISREAD_ADDR]]
    # the preference forces a reading
    forced = fields(pcap, "dsropt", "dsropt.service", "dsropt.order",
                    opts=("-o", "dsropt.order:host"))
    assert forced == [[MISREAD_ADDR, "host"]]


def test_lua_and_python_pick_the_same_reading(tmp_path: Path) -> None:
    services = [(VIP, NODE_PORT), ("10.96.0.10", 53), ("203.0.113.5", 443),
                ("192.168.1.5", 80), ("52.10.20.30", 8080), ("100.64.3.4", 30080),
                ("1.2.3.0", 0), ("239.1.2.3", 5000)]
    opts = [dsropt.encode(ip, port, order) for ip, port in services
            for order in dsropt.ORDERS]
    pcap = write(tmp_path, "many.pcap", [syn(o, 40000 + i) for i, o in enumerate(opts)])
    rows = fields(pcap, "dsropt", "dsropt.raw", "dsropt.order", "dsropt.service")
    assert len(rows) == len(opts)
    for (raw, order, service), opt in zip(rows, opts, strict=True):
        assert bytes.fromhex(raw) == opt
        want = plausible_order(opt)
        assert order == want, (raw, order, want)
        ip, port = dsropt.decode(opt, want)
        assert service == f"{ip}:{port}"
    # and the review, with no replies to go by, agrees too
    r = review(pcap)
    assert [f.order for f in r.flows] == [plausible_order(o) for o in opts]


def test_option_not_first_and_quoted_in_icmp(tmp_path: Path) -> None:
    opt = OPTION
    quoted = (IP(src=CLIENT_IP, dst=POD_IP, options=[IPOption(opt)])
              / TCP(sport=40000, dport=POD_PORT))
    pkts = [syn(b"\x01\x01\x01\x01" + opt),
            Ether() / IP(src=POD_IP, dst=CLIENT_IP) / ICMP(type=3, code=4, nexthopmtu=1492)
            / bytes(quoted)[:36]]
    pcap = write(tmp_path, "odd.pcap", pkts)
    rows = fields(pcap, "dsropt", "frame.number", "dsropt.first", "dsropt.service")
    assert rows == [["1", "0", SERVICE_ADDR], ["2", "1", SERVICE_ADDR]]
    expert = tshark(pcap, "-Y", "dsropt.not_first.expert").stdout
    assert len(expert.splitlines()) == 1


# -- the real seed captures -------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.bpf
def test_service_filter_finds_exactly_the_option_packets_of_the_seed(
        seed_capture: Path) -> None:
    pcaps = sorted(seed_capture.glob("*.pcap"))
    assert len(pcaps) == 6
    total = 0
    for pcap in pcaps:
        by_service = fields(pcap, f"dsropt.service.ip == {VIP} && "
                                  f"dsropt.service.port == {NODE_PORT}", "frame.number")
        by_bytes = fields(pcap, "ip[20:2] == 9a:08", "frame.number", lua=False)
        assert by_service == by_bytes, pcap.name
        # the same packets as the review counts, and they are the SYNs to a pod
        assert len(by_service) == review(pcap).option_packets, pcap.name
        syns = fields(pcap, "dsropt", "tcp.flags.syn", "tcp.flags.ack", "ip.dst",
                      "dsropt.service", "dsropt.order")
        assert {tuple(r) for r in syns} <= {("1", "0", POD_IP, SERVICE_ADDR, "host"),
                                            ("1", "0", POD2_IP, SERVICE_ADDR, "host")}
        total += len(by_service)
    # every hop but the client's own sees each flow's SYN with the option at least once
    assert total >= 4
    # without the script the same packets are opaque to tshark
    client = seed_capture / "client--br-kind.pcap"
    verbose = tshark(client, "-V", "-Y", "ip[20:2] == 9a:08", lua=False).stdout
    assert "Unknown (0x9a) (8 bytes)" in verbose


# -- dsrlab wireshark ---------------------------------------------------------------------------


def dsrlab(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": "200", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO, env=env)


def test_dsrlab_wireshark_prints_how_to_load_it(tmp_path: Path) -> None:
    out = dsrlab("wireshark", "--check", home=tmp_path)
    assert out.returncode == 0, out.stderr
    lua = str(ws.lua_path())
    assert f"Lua dissector:  {lua}" in out.stdout
    assert f"tshark -X lua_script:{lua} -r FILE.pcap -Y dsropt" in out.stdout
    assert f"wireshark -X lua_script:{lua}" in out.stdout
    assert f"{tmp_path}/.local/lib/wireshark/plugins" in out.stdout
    assert "check: tshark loads it" in out.stdout
    assert dsrlab("wireshark", "--path").stdout.strip() == lua


def test_dsrlab_wireshark_install_into_personal_plugins(tmp_path: Path) -> None:
    out = dsrlab("wireshark", "--install", home=tmp_path)
    assert out.returncode == 0, out.stderr
    dest = tmp_path / ".local" / "lib" / "wireshark" / "plugins" / "dsr_option.lua"
    assert dest.read_bytes() == ws.lua_path().read_bytes()
    # tshark with that HOME loads it without -X
    pcap = write(tmp_path, "p.pcap", [syn(OPTION)])
    env = {**os.environ, "HOME": str(tmp_path)}
    got = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"dsropt.service.port == {NODE_PORT}"],
                         capture_output=True, text=True, timeout=60, check=False, env=env)
    assert got.returncode == 0, got.stderr
    assert f"[DSR {SERVICE_ADDR}]" in got.stdout
