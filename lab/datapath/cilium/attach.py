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
cilium_geneve          ingress                    cil_from_overlay (overlay)
cilium_geneve          egress                     cil_to_overlay (overlay)
=====================  =========================  ======================

``cilium_geneve`` (a Geneve device in external mode, UDP 6081, at the index the
headers name as ``ENCAP_IFINDEX``) is made here when the node has a tunnel
(Geneve dispatch); a kernel without the Geneve driver refuses it, and the
error says so.

Runs in the calling thread's namespace (enter the node's first). The
filters hold the programs, not the prog arrays: whatever keeps the lab
alive must keep :meth:`lab.datapath.cilium.load.CiliumNode.keep_fds` open.
"""

from __future__ import annotations

from lab.datapath import tc
from lab.datapath.cilium.config import GENEVE_PORT
from lab.datapath.cilium.node import OVERLAY, LoadedNode
from lab.datapath.errors import DatapathError
from lab.plumbing import nsutil

GENEVE_DEVICE = "cilium_geneve"

HOST_HOOKS: tuple[tuple[str, tc.TcHookPoint, str], ...] = (
    ("eth0", "ingress", "cil_from_netdev"),
    ("eth0", "egress", "cil_to_netdev"),
    ("cilium_host", "egress", "cil_from_host"),
    ("cilium_host", "ingress", "cil_to_host"),
    ("cilium_net", "ingress", "cil_to_host"),
)


OVERLAY_HOOKS: tuple[tuple[str, tc.TcHookPoint, str], ...] = (
    (GENEVE_DEVICE, "ingress", "cil_from_overlay"),
    (GENEVE_DEVICE, "egress", "cil_to_overlay"),
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
    if node.encap_ifindex is not None:  # made by add_geneve_device first
        overlay = loaded.node.objects[OVERLAY]
        for _device, hook, program in OVERLAY_HOOKS:
            done.append(tc.attach(overlay.program_fd(program), program, node.encap_ifindex,
                                  hook))
    return done


def add_geneve_device(netns: str, index: int, mac: bytes) -> None:
    """``cilium_geneve`` as the agent makes it (external, UDP 6081) in ``netns``; a
    clear error where the kernel has no Geneve driver."""
    with nsutil.open_iproute(netns) as ipr:
        try:
            ipr.link("add", ifname=GENEVE_DEVICE, kind="geneve", index=index,
                     address=":".join(f"{b:02x}" for b in mac),
                     geneve_collect_metadata=1, geneve_port=GENEVE_PORT)
        except Exception as e:  # pyroute2's NetlinkError: (errno, the kernel's words)
            said = e.args[-1] if e.args else e
            raise DatapathError(
                f"cannot make {GENEVE_DEVICE} for Geneve dispatch: the kernel refused a "
                f"Geneve device ({said}); a kernel without CONFIG_GENEVE cannot run Cilium's "
                "Geneve dispatch live (datapath run shows the LB's verdict)") from None
        ipr.link("set", index=index, state="up")
