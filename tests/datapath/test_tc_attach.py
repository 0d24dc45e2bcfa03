"""The programs attached with tc: attach, find again, detach; a real TCP connection.

One test attaches the LB and backend programs to veths in scratch
namespaces and pushes a real TCP connection from a client through them.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.datapath import BackendEntry, DatapathError, DatapathObject
from lab.datapath import tc as dp_tc
from lab.plumbing import nsutil
from lab.plumbing.names import netns_name, new_run_id
from tests.datapath.frames import scratch_name, tcp_frame
from tests.seed import CLIENT_IP, NODE_PORT, OPTION, POD_CIDR, POD_IP, POD_PORT, VIP, WORKER_IP

pytestmark = [pytest.mark.bpf, pytest.mark.netns]


# --- tc attachment --------------------------------------------------------------------


def _tc_filters(netns: str, dev: str, direction: str) -> str:
    argv = nsutil.exec_argv(netns, ["tc", "filter", "show", "dev", dev, direction])
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_attach_and_detach_on_veth(obj_path: Path, bare_ns: str) -> None:
    name = scratch_name("dp-tc")
    with nsutil.scratch(name):
        with nsutil.open_iproute(name) as ipr:
            ipr.link("add", ifname="a", kind="veth", peer={"ifname": "b"})
            idx = ipr.link_lookup(ifname="a")[0]
        with nsutil.in_netns(name):
            with DatapathObject.load(obj_path) as dp:
                dp.add_service(VIP, NODE_PORT, "tcp", dsr=True,
                               backends=[BackendEntry(POD_IP, POD_PORT)])
                ingress = dp.attach_tc(idx, "ingress", "dsr_from_netdev")
                egress = dp.attach_tc(idx, "egress", "dsr_to_netdev")
                again = dp.attach_tc(idx, "ingress", "dsr_from_netdev")  # replaces
                assert again.prog_id == ingress.prog_id
            # the object is closed: the filters keep the programs alive
            assert ingress.query_prog_id() == ingress.prog_id > 0
            assert egress.query_prog_id() == egress.prog_id > 0
            # another process (here: a new handle) finds the running datapath again
            found = dp_tc.find(idx, "ingress", "dsr_from_netdev")
            assert found is not None
            assert found.prog_id == ingress.prog_id
            with DatapathObject.from_prog_ids([found.prog_id]) as running:
                assert [s.vip for s in running.services()] == [VIP]
                res = running.test_run("dsr_from_netdev", tcp_frame("S"))
                assert res.data[34:42] == OPTION
                assert running.counters()["opt_inserted"] == 1
                with pytest.raises(DatapathError, match="unknown program"):
                    running.test_run("dsr_to_netdev", tcp_frame("S"))
            assert dp_tc.find(idx, "egress", "x", priority=7) is None
        shown = _tc_filters(name, "a", "ingress")
        assert "dsr_from_netdev" in shown
        assert "direct-action" in shown
        assert "dsr_to_netdev" in _tc_filters(name, "a", "egress")

        with nsutil.in_netns(bare_ns), pytest.raises(DatapathError, match="namespace"):
            ingress.detach()  # not from another namespace than the one it attached in
        with nsutil.in_netns(name):
            with ingress, egress:
                pass
            assert ingress.query_prog_id() is None
            assert egress.query_prog_id() is None
            ingress.detach()  # idempotent
        assert "dsr_from_netdev" not in _tc_filters(name, "a", "ingress")


def test_attach_to_missing_interface_fails_cleanly(dp: DatapathObject, bare_ns: str) -> None:
    with nsutil.in_netns(bare_ns), pytest.raises(DatapathError, match="ifindex 4242"):
        dp.attach_tc(4242, "ingress", "dsr_from_netdev")
    with nsutil.in_netns(bare_ns), pytest.raises(DatapathError, match="unknown program"):
        dp.attach_tc(1, "ingress", "nope")


# --- a real connection through attached programs ---------------------------------------


@dataclass
class Lan:
    client: str
    lb: str
    backend: str


def _build_lan(sw: str, lan: Lan) -> None:
    """Three hosts on a bridge in ``sw``: the seed's client, LB node and the first pod's
    node, which holds the pod address."""
    hosts = {lan.client: ("c", CLIENT_IP), lan.lb: ("l", VIP), lan.backend: ("w", WORKER_IP)}
    with nsutil.open_iproute(sw) as ipr:
        ipr.link("add", ifname="br0", kind="bridge")
        br = ipr.link_lookup(ifname="br0")[0]
        ipr.link("set", index=br, state="up")
        for host, (tag, _) in hosts.items():
            ipr.link("add", ifname=f"p-{tag}", kind="veth", peer={"ifname": f"h-{tag}"})
            ipr.link("set", index=ipr.link_lookup(ifname=f"p-{tag}")[0], master=br, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=f"h-{tag}")[0], net_ns_fd=host)
    for host, (tag, addr) in hosts.items():
        with nsutil.open_iproute(host) as ipr:
            idx = ipr.link_lookup(ifname=f"h-{tag}")[0]
            ipr.link("set", index=idx, ifname="eth0", state="up")
            ipr.addr("add", index=idx, address=addr, prefixlen=24)
    nsutil.write_sysctl(lan.lb, "net.ipv4.ip_forward", 1)
    with nsutil.open_iproute(lan.lb) as ipr:
        ipr.route("add", dst=POD_CIDR, gateway=WORKER_IP)
    with nsutil.open_iproute(lan.backend) as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname="lo")[0], address=POD_IP, prefixlen=32)


def _ifindex(netns: str, ifname: str) -> int:
    with nsutil.open_iproute(netns) as ipr:
        return int(ipr.link_lookup(ifname=ifname)[0])


def test_tcp_connection_through_lb_and_backend(obj_path: Path) -> None:
    """curl-like: client -> VIP:NodePort, LB adds the option, backend replies as the VIP."""
    run = new_run_id()
    lan = Lan(netns_name(run, "client"), netns_name(run, "lb"), netns_name(run, "worker"))
    sw = netns_name(run, "switch")
    with (
        nsutil.scratch(sw),
        nsutil.scratch(lan.client),
        nsutil.scratch(lan.lb),
        nsutil.scratch(lan.backend),
        DatapathObject.load(obj_path) as lb_dp,
        DatapathObject.load(obj_path) as be_dp,
    ):
        _build_lan(sw, lan)
        lb_dp.add_service(VIP, NODE_PORT, "tcp", dsr=True,
                          backends=[BackendEntry(POD_IP, POD_PORT)])
        attachments = []
        for netns, obj in ((lan.lb, lb_dp), (lan.backend, be_dp)):
            with nsutil.in_netns(netns):
                idx = _ifindex(netns, "eth0")
                attachments.append((netns, obj.attach_tc(idx, "ingress", "dsr_from_netdev")))
                attachments.append((netns, obj.attach_tc(idx, "egress", "dsr_to_netdev")))

        server = nsutil.socket_in(lan.backend, socket.AF_INET, socket.SOCK_STREAM)
        client = nsutil.socket_in(lan.client, socket.AF_INET, socket.SOCK_STREAM)
        with server, client:
            server.bind((POD_IP, POD_PORT))
            server.listen(1)
            server.settimeout(5)
            client.settimeout(5)
            client.connect((VIP, NODE_PORT))
            assert client.getpeername() == (VIP, NODE_PORT)
            conn, peer = server.accept()
            with conn:
                assert peer == (CLIENT_IP, client.getsockname()[1])  # the pod sees the client
                client.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert conn.recv(100).startswith(b"GET /")
                conn.sendall(f"PodName: worker | PodIP: eth0 {POD_IP}/32".encode())
                assert client.recv(100).endswith(f"{POD_IP}/32".encode())

        lb_counts, be_counts = lb_dp.counters(), be_dp.counters()
        assert lb_counts["opt_inserted"] == 1  # only the SYN
        assert lb_counts["ct_hit"] >= 2  # ACK, data, FIN: DNATed without option
        assert be_counts["backend_learned"] == 1
        assert be_counts["revnat_rewrite"] >= 2  # SYN+ACK and the reply data
        assert lb_counts["revnat_rewrite"] == 0  # the LB never sees a reply
        for netns, att in attachments:
            with nsutil.in_netns(netns):
                att.detach()
