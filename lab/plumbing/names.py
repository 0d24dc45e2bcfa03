"""Names of everything the lab creates: one prefix, one run id, one place.

Every namespace is called ``dsrlab-<run id>-<host>``; the run id is the tag
that ``dsrlab clean`` looks for. Interface names live inside the lab's own
namespaces, so they only need to be unique per namespace and within the
kernel's 15-character limit.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

PREFIX = "dsrlab"
RUN_ID_LEN = 6
IFNAMSIZ = 15  # usable characters in an interface name

_RUN_ID_RE = re.compile(rf"^[0-9a-f]{{{RUN_ID_LEN}}}$")
_NETNS_RE = re.compile(
    rf"^{PREFIX}-(?P<run_id>[0-9a-f]{{{RUN_ID_LEN}}})-(?P<host>[a-z0-9][a-z0-9.-]*)$")


def new_run_id() -> str:
    """A fresh random run id (6 hex digits)."""
    return os.urandom(RUN_ID_LEN // 2).hex()


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} is not {RUN_ID_LEN} lowercase hex digits")
    return run_id


def netns_name(run_id: str, host: str) -> str:
    """The namespace that holds ``host`` in run ``run_id``."""
    return f"{PREFIX}-{check_run_id(run_id)}-{host}"


@dataclass(frozen=True)
class LabNetnsName:
    """A namespace name parsed back into its run id and host."""

    name: str
    run_id: str
    host: str


def parse_netns_name(name: str) -> LabNetnsName | None:
    """Parse a namespace name the lab made; ``None`` for anything else."""
    m = _NETNS_RE.match(name)
    if m is None:
        return None
    return LabNetnsName(name=name, run_id=m["run_id"], host=m["host"])


def check_ifname(ifname: str) -> str:
    if not ifname or len(ifname) > IFNAMSIZ or "/" in ifname or " " in ifname:
        raise ValueError(f"interface name {ifname!r} is empty, longer than {IFNAMSIZ} or invalid")
    return ifname


def docker_mac(ip: str | ipaddress.IPv4Address) -> str:
    """Docker's MAC for a container address: ``02:42`` then the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(str(ip)).packed)
