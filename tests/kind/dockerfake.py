"""A recording stand-in for the Docker daemon's API on a unix socket (DOCKER_HOST),
answering the few requests the kind backend makes through the Docker SDK: the API
version, ping, a container's state, the kind network; like Docker 29 it refuses a
client that asks for an API version below 1.44. It runs no container."""

from __future__ import annotations

import json
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

NODE_PIDS = {"cilium-dsr-control-plane": 4001, "cilium-dsr-worker": 4002,
             "cilium-dsr-worker2": 4003}
NETWORK = {"Name": "kind", "Id": "67ecd2c684e4" + "0" * 52, "Options": {},
           "IPAM": {"Config": [{"Subnet": "fc00:f853:ccd:e793::/64",
                                "Gateway": "fc00:f853:ccd:e793::1"},
                               {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}}


# what Docker 29 says of its API: it refuses a client below its minimum version
API_VERSION, MIN_API_VERSION = "1.52", "1.44"


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    seen: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        asked = re.match(r"^/v([\d.]+)/", self.path)
        if asked and _version_tuple(asked[1]) < _version_tuple(MIN_API_VERSION):
            self._json(400, {"message": f"client version {asked[1]} is too old. Minimum "
                                        f"supported API version is {MIN_API_VERSION}, please "
                                        "upgrade your client to a newer version"})
            return
        path = re.sub(r"^/v[\d.]+", "", self.path.split("?")[0])
        m = re.match(r"^/containers/([^/]+)/json$", path)
        if path == "/version":
            self._json(200, {"Version": "29.1.0", "ApiVersion": API_VERSION,
                             "MinAPIVersion": MIN_API_VERSION, "Os": "linux"})
        elif path == "/_ping":
            self._send(200, b"OK", "text/plain")
        elif path == "/networks/kind":
            self._json(200, NETWORK)
        elif m and m[1] in NODE_PIDS:
            self._json(200, {"Id": m[1] * 2, "Name": f"/{m[1]}",
                             "State": {"Running": True, "Pid": NODE_PIDS[m[1]]}})
        else:
            self._json(404, {"message": f"No such object: {path}"})

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "docker-fake"

    def log_message(self, format: str, *args: Any) -> None:
        return


class FakeDockerApi:
    """Serves on ``socket`` until :meth:`close`; ``seen`` lists the request paths."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._server = _Server(str(socket), _Handler)
        self._server.seen = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def seen(self) -> list[str]:
        return self._server.seen

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
