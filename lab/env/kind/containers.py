"""The kind cluster's containers and network, through the Docker SDK; and a pod's
network namespace, found from this machine by the pod's UID in the cgroups.

:class:`Docker` asks the daemon (``DOCKER_HOST`` or its default socket) for a
node container's PID and the kind network's bridge and gateway; every failure
is a :class:`~lab.env.base.BackendError` in one line. The API version is the one
the daemon says it speaks (``version="auto"``), never a pinned one. :func:`pod_pid` needs no
call into the node at all: a pod's containers live in cgroups named by its UID
(``.../pod<uid>/...`` or, with the systemd driver, ``...-pod<uid_with_underscores>.slice``),
and any process there shares the pod's network namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.env.base import BackendError

# the API version, agreed with the daemon (GET /version) rather than pinned: Docker
# 29 refuses clients below its minimum (1.44), older daemons refuse newer clients
API_VERSION = "auto"
DEADLINE_S = 30


@dataclass(frozen=True)
class KindNetwork:
    bridge: str  # the bridge on this machine, e.g. br-67ecd2c684e4
    gateway: str  # this machine's address on it (the client's), e.g. 172.18.0.1
    gateway6: str | None = None  # its IPv6 address there (kind's dual-stack network)


class Docker:
    """The few questions the kind backend asks the Docker daemon."""

    def __init__(self) -> None:
        import docker  # noqa: PLC0415  (the SDK loads when a kind lab is used)
        import requests  # noqa: PLC0415  (the SDK's transport: a socket that is not there)

        try:
            self._client: Any = docker.from_env(version=API_VERSION, timeout=DEADLINE_S)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise BackendError(f"the Docker daemon does not answer: {exc}") from None
        self._errors = (docker.errors.DockerException, requests.exceptions.RequestException)

    def ping(self) -> None:
        try:
            self._client.ping()
        except self._errors as exc:
            raise BackendError(f"the Docker daemon does not answer: {exc}") from None

    def container_pid(self, name: str) -> int:
        """The PID, on this machine, of the node container's first process."""
        try:
            pid = int(self._client.containers.get(name).attrs["State"]["Pid"])
        except self._errors as exc:
            raise BackendError(f"node container {name}: {exc}") from None
        if pid <= 0:
            raise BackendError(f"node container {name} is not running")
        return pid

    def network(self, name: str = "kind") -> KindNetwork:
        """The kind network's bridge and gateway on this machine."""
        try:
            attrs = self._client.networks.get(name).attrs
        except self._errors as exc:
            raise BackendError(f"docker network {name}: {exc}") from None
        bridge = (attrs.get("Options") or {}).get("com.docker.network.bridge.name") or \
            f"br-{attrs['Id'][:12]}"
        gateway = next((c["Gateway"] for c in (attrs.get("IPAM") or {}).get("Config") or []
                        if "." in c.get("Gateway", "")), None)
        if gateway is None:
            raise BackendError(f"docker network {name} has no IPv4 gateway")
        gateway6 = next((c["Gateway"] for c in (attrs.get("IPAM") or {}).get("Config") or []
                         if ":" in c.get("Gateway", "")), None)
        return KindNetwork(bridge, gateway, gateway6)


def pod_pid(uid: str, proc: Path = Path("/proc")) -> int | None:
    """A process of this machine in the pod with ``uid`` (one pass over /proc)."""
    marks = (f"pod{uid}", f"pod{uid.replace('-', '_')}")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if any(m in cgroup for m in marks):
            return int(entry.name)
    return None
