"""Geneve dispatch on the lab's datapath: its switch and its tunnel map.

``bpf/lib/geneve.h`` writes and reads Geneve itself (no kernel tunnel
device). It needs, per node: whether DSR flows go in Geneve, this node's
address (the outer source at the LB, "addressed to me" at the backend's
node) and the VNI the LB writes (Cilium writes the source security
identity: world, 2, for a client outside the cluster); and the map from pod
CIDR to the node that owns it (Cilium's tunnel map), ``dsr_tunnel``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.datapath import maps
from lab.datapath.errors import DatapathError
from lab.datapath.loader import DatapathObject

WORLD_IDENTITY = 2  # Cilium's reserved:world identity, its VNI for an outside client
VNI_MAX = (1 << 24) - 1


@dataclass(frozen=True)
class TunnelConfig:
    """dsr_tunnel_cfg[0]: Geneve dispatch on or off, this node's address, the VNI."""

    geneve: bool
    addr: str | None
    vni: int


def set_geneve(dp: DatapathObject, addr: str | None, *, dispatch: bool = True,
               vni: int = WORLD_IDENTITY) -> None:
    """Turn Geneve dispatch on (or off) with this node's address ``addr``.

    With ``addr`` set the node also takes Geneve addressed to it apart, so a
    backend's node needs it even where ``dispatch`` is off.
    """
    if not 0 <= vni <= VNI_MAX:
        raise DatapathError(f"VNI {vni} is out of range (0..{VNI_MAX})")
    raw = maps.ip_bytes(addr) if addr else bytes(4)
    flags = maps.TUN_F_GENEVE if dispatch else 0
    dp.map("dsr_tunnel_cfg").update(maps.U32.pack(0), maps.TUNNEL_CFG_VAL.pack(flags, raw, vni))


def tunnel_config(dp: DatapathObject) -> TunnelConfig:
    raw = dp.map("dsr_tunnel_cfg").lookup(maps.U32.pack(0)) or bytes(maps.TUNNEL_CFG_VAL.size)
    flags, addr, vni = maps.TUNNEL_CFG_VAL.unpack(raw)
    return TunnelConfig(bool(flags & maps.TUN_F_GENEVE),
                        None if addr == bytes(4) else maps.ip_text(addr), vni)


def _key(cidr: str) -> bytes:
    try:
        net = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError as exc:
        raise DatapathError(f"not an IPv4 CIDR: {cidr!r} ({exc})") from None
    return maps.TUNNEL_KEY.pack(net.prefixlen, net.network_address.packed)


def add_route(dp: DatapathObject, cidr: str, node: str) -> None:
    """Pods in ``cidr`` live on ``node`` (its IPv4 address): Geneve goes there."""
    dp.map("dsr_tunnel").update(_key(cidr), maps.TUNNEL_VAL.pack(maps.ip_bytes(node)))


def remove_route(dp: DatapathObject, cidr: str) -> bool:
    return dp.map("dsr_tunnel").delete(_key(cidr))


def routes(dp: DatapathObject) -> dict[str, str]:
    """The tunnel map: pod CIDR -> node address."""
    out: dict[str, str] = {}
    for key, val in dp.map("dsr_tunnel").items():
        plen, addr = maps.TUNNEL_KEY.unpack(key)
        (node,) = maps.TUNNEL_VAL.unpack(val)
        out[f"{maps.ip_text(addr)}/{plen}"] = maps.ip_text(node)
    return out
