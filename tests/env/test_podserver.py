"""The pods' one server process: every pod answers with its own identity, one
process per lab, one pod can stop while the others go on (real namespaces,
real sockets, real curl)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lab.env.netns import NetnsBackend, NetnsLab, PodServers
from lab.env.podserver import body_for
from lab.env.traffic import curl_until
from lab.model.topology import Pod, Topology
from lab.plumbing import names, nsutil, procs

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab(seed_topology: Topology) -> Iterator[NetnsLab]:
    with NetnsBackend().up(seed_topology) as lab:
        yield lab


def _curl(lab: NetnsLab, host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.run(host, ["curl", "-sS", "--max-time", "5", *args], check=False)


def _other_node(t: Topology, pod: Pod) -> str:
    return next(n.name for n in t.nodes if n.name != pod.node)


def test_each_pod_answers_with_its_own_identity(lab: NetnsLab) -> None:
    t = lab.topology
    # through the NodePort, from the client: both pods, each with its own body
    url = f"http://{t.nodes[0].ip}:{t.services[0].node_port}/"
    exchanges = curl_until(lab, "client", url, want_pods={p.name for p in t.pods},
                           min_requests=2, max_requests=40)
    assert all(ex.ok for ex in exchanges), [ex.error for ex in exchanges]
    by_pod = {ex.pod: ex.body for ex in exchanges}
    assert by_pod == {p.name: body_for(p.name, str(p.ip)) for p in t.pods}
    # straight to each pod address, from a node that does not host it
    for pod in t.pods:
        out = _curl(lab, _other_node(t, pod), "-i", f"http://{pod.ip}/")
        head, _, body = out.stdout.partition("\n\n")  # text mode: CRLF reads as LF
        assert body == body_for(pod.name, str(pod.ip)), out.stderr
        lines = head.splitlines()
        assert lines[0].startswith("HTTP/1.")
        assert lines[0].split()[1] == "200"
        assert {"Content-Type: text/plain", f"Content-Length: {len(body)}",
                "Connection: close"} <= set(lines)
        head_only = _curl(lab, _other_node(t, pod), "-I", f"http://{pod.ip}/")
        assert head_only.stdout.splitlines()[1:-1] == lines[1:]  # HEAD: the same headers


def test_one_server_process_in_the_lab_serves_every_pod(lab: NetnsLab) -> None:
    assert lab.servers is not None
    in_lab = nsutil.pids_in_each([h.netns for h in lab.hosts.values()])
    found = {pid for pids in in_lab.values() for pid in pids}
    assert found == {lab.servers.pid}
    assert in_lab[lab.netns("client")] == [lab.servers.pid]  # where dsrlab clean looks
    assert set(lab.pids) == {p.name for p in lab.topology.pods}
    assert set(lab.pids.values()) == {lab.servers.pid}
    assert procs.running(lab.servers.pid)


def test_stopping_one_pod_leaves_the_other_serving(seed_topology: Topology) -> None:
    with NetnsBackend(datapath=False).up(seed_topology) as lab:
        assert lab.servers is not None
        gone, stays = seed_topology.pods
        # a connection open to the pod when it stops is dropped, as if its process died
        node_ns = lab.netns(_other_node(seed_topology, gone))
        with nsutil.socket_in(node_ns, socket.AF_INET, socket.SOCK_STREAM) as open_conn:
            open_conn.settimeout(5)
            open_conn.connect((str(gone.ip), 80))
            assert sorted(lab.servers.serving()) == sorted(p.name for p in seed_topology.pods)
            lab.stop_pod_server(gone.name)
            with contextlib.suppress(ConnectionResetError):
                assert open_conn.recv(100) == b""
        assert lab.servers.serving() == [stays.name]
        refused = _curl(lab, _other_node(seed_topology, gone), f"http://{gone.ip}/")
        assert refused.returncode == 7, refused  # curl: could not connect
        out = _curl(lab, _other_node(seed_topology, stays), f"http://{stays.ip}/")
        assert out.stdout == body_for(stays.name, str(stays.ip))
        assert procs.running(lab.servers.pid)


def test_udp_echo_says_who_answered_and_control_commands_work() -> None:
    ns = names.netns_name(names.new_run_id(), "podsrv")
    with nsutil.scratch(ns):
        tcp = nsutil.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        udp = nsutil.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
        with tcp, udp:
            tcp.bind(("127.0.0.1", 0))
            tcp.listen(8)
            udp.bind(("127.0.0.1", tcp.getsockname()[1]))
            pod = Pod(name="echo-pod", node="n", ip="10.9.9.9")  # type: ignore[arg-type]
            servers = PodServers.start(ns, [(pod, [(tcp, "tcp"), (udp, "udp")])])
            port = tcp.getsockname()[1]
        try:
            assert servers.command("ping") == "pong"
            with nsutil.socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.settimeout(5)
                c.sendto(b"hello", ("127.0.0.1", port))
                assert c.recvfrom(100)[0] == body_for("echo-pod", "10.9.9.9").encode() + b"hello"
                head = body_for("echo-pod", "10.9.9.9").encode()
                c.sendto(b"dsrlab 1 10 answer 4000\nxyz", ("127.0.0.1", port))
                assert c.recvfrom(65535)[0] == head + bytes(4000)  # as big as asked
                c.sendto(b"answer 65001", ("127.0.0.1", port))  # too big: an echo
                assert c.recvfrom(65535)[0] == head + b"answer 65001"
            with nsutil.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM) as c:
                c.settimeout(5)
                c.connect(("127.0.0.1", port))
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = b""
                while chunk := c.recv(4096):
                    reply += chunk
            assert reply.endswith(body_for("echo-pod", "10.9.9.9").encode())
            assert servers.command("stop nope") == "error no pod nope"
        finally:
            servers.stop()
        assert not procs.running(servers.pid)


def test_manual_use_with_bind() -> None:
    ns = names.netns_name(names.new_run_id(), "podsrv")
    with nsutil.scratch(ns):
        proc = subprocess.Popen(
            nsutil.exec_argv(ns, [sys.executable, "-m", "lab.env.podserver", "--bind",
                                  "127.0.0.1:8080", "--name", "manual", "--ip", "10.1.2.3"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            out = None
            while time.monotonic() < deadline:
                out = subprocess.run(nsutil.exec_argv(ns, ["curl", "-sS", "--max-time", "2",
                                                           "http://127.0.0.1:8080/"]),
                                     capture_output=True, text=True, check=False)
                if out.returncode == 0:
                    break
                time.sleep(0.05)
            assert out is not None
            assert out.stdout == body_for("manual", "10.1.2.3"), out
        finally:
            proc.terminate()
            proc.wait(5)


@pytest.mark.parametrize(("line", "rate"), [
    (b"GET /bytes/1000?rate=5000 HTTP/1.1\r\n\r\n", 5000),
    (b"GET /bytes/1000 HTTP/1.1\r\n\r\n", None),
    (b"GET /bytes/1000?rate=0 HTTP/1.1\r\n\r\n", None),
    (b"GET /bytes/1000?rate=x HTTP/1.1\r\n\r\n", None),
    (b"GET / HTTP/1.1\r\n\r\n", None),
])
def test_a_sized_body_can_be_paced(line: bytes, rate: int | None) -> None:
    from lab.env.podserver import answer, pace  # noqa: PLC0415

    assert pace(line) == rate
    if rate:  # the size is still the size
        head, zeros = answer(line, b"pod\n")
        assert zeros == 1000
        assert b"Content-Length: 1000" in head
