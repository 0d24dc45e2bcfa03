"""Cilium's programs attached where the agent attaches them (clsact filters).

As ``pkg/datapath/loader`` does for a node in native routing with legacy
host routing and no endpoint routes:

=====================  =========================  ======================
device                 hook                       program (object)
=====================  =========================  ======================
eth0                   ingress                    cil_from_netdev (host)
eth0                   egress                     cil_to_netdev (host)
cilium_host            egress                     cil_from_host (host)
cilium_host            ingress                    cil_to_host (host)
cilium_net             ingress                    cil_to_host (host)
each pod's lxc veth    ingress                    cil_from_container (its bpf_lxc)
=====================  =========================  ======================

Runs in the calling thread's namespace (enter the node's first). The
filters hold the programs, not the prog arrays: whatever keeps the lab
alive must keep :meth:`lab.datapath.cilium.load.CiliumNode.keep_fds` open.
"""

from __future__ import annotations

from lab.datapath import tc
from lab.datapath.cilium.node import LoadedNode

HOST_HOOKS: tuple[tuple[str, tc.TcHookPoint, str], ...] = (
    ("eth0", "ingress", "cil_from_netdev"),
    ("eth0", "egress", "cil_to_netdev"),
    ("cilium_host", "egress", "cil_from_host"),
    ("cilium_host", "ingress", "cil_to_host"),
    ("cilium_net", "ingress", "cil_to_host"),
)


def attach_node(loaded: LoadedNode) -> list[tc.TcAttachment]:
    """Attach every program of the node; returns the attachments (in attach order)."""
    node = loaded.plan.node
    index = {"eth0": node.eth0_ifindex, "cilium_host": node.cilium_host_ifindex,
             "cilium_net": node.cilium_net_ifindex}
    host = loaded.node.objects["host"]
    done: list[tc.TcAttachment] = []
    for device, hook, program in HOST_HOOKS:
        done.append(tc.attach(host.program_fd(program), program, index[device], hook))
    for pod in loaded.plan.pods:
        lxc = loaded.node.objects[pod.name]
        done.append(tc.attach(lxc.program_fd("cil_from_container"), "cil_from_container",
                              pod.lxc_ifindex, "ingress"))
    return done
