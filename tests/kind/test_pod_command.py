"""The pods of the kind backend run the command its manifest says (the lab's pod
server from the ConfigMap, with the downward API's name and address): run here,
that command answers as a netns pod does, over TCP and the UDP echo."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.env.kind.manifests import SERVER_MOUNT, manifests
from lab.env.netns import NetnsLab
from lab.env.traffic import curl, udp_exchange
from lab.model.topology import load_topology
from tests.seed import SEED_TOPOLOGY_PATH

pytestmark = [pytest.mark.netns]


def test_the_manifests_command_serves_the_write_ups_answer(seed_lab: NetnsLab,
                                                           tmp_path: Path) -> None:
    t = load_topology(SEED_TOPOLOGY_PATH.parent / "modes.yaml")  # TCP and UDP on 80
    cm, ds, _ = manifests(t, "abc123")
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    (tmp_path / "podserver.py").write_text(cm["data"]["podserver.py"])
    ip, port = str(seed_lab.hosts["client"].ip), 8080
    env = {"POD_NAME": "cni-test1", "POD_IP": ip}
    argv = [sys.executable if a == "python" else
            a.replace(SERVER_MOUNT, str(tmp_path)).replace("0.0.0.0:80", f"{ip}:{port}")
            .replace("$(POD_NAME)", env["POD_NAME"]).replace("$(POD_IP)", env["POD_IP"])
            for a in container["command"]]
    proc = seed_lab.start("client", argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:  # the server binds once Python is up
            ex = curl(seed_lab, "client", f"http://{ip}:{port}/", timeout_s=2)
            if ex.ok or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ex.ok, (ex.error, proc.poll())
        assert ex.body == f"PodName: cni-test1 | PodIP: eth0 {ip}/32\n"
        udp = udp_exchange(seed_lab, "client", ip, port, payload="hello", timeout_s=5)
        assert udp.ok, udp.error
        assert udp.body.startswith(f"PodName: cni-test1 | PodIP: eth0 {ip}/32\nhello ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
