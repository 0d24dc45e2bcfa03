"""The HTTP server each lab pod runs on its port (a stand-in for the net tool image).

It answers every GET with ``PodName: <name> | PodIP: eth0 <ip>/32``, the
body the seed write-up's DaemonSet returns. The listening socket is made
by the lab inside the pod's namespace and inherited here (``--fd``), so the
pod is reachable the moment the lab returns, before this process has even
started; run on its own with ``--bind`` for manual use.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType


def body_for(name: str, ip: str) -> str:
    return f"PodName: {name} | PodIP: eth0 {ip}/32\n"


class _Handler(BaseHTTPRequestHandler):
    server_version = "dsrlab-pod/1"
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(self.body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.client_address[0]}:{self.client_address[1]} {format % args}\n")


class _InheritedServer(HTTPServer):
    """An HTTPServer over an already bound and listening socket."""

    def __init__(self, sock: socket.socket, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.env.podserver")
    ap.add_argument("--name", required=True, help="pod name for the answer body")
    ap.add_argument("--ip", required=True, help="pod address for the answer body")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--fd", type=int, help="inherited listening socket")
    src.add_argument("--bind", help="HOST:PORT to bind and listen on")
    args = ap.parse_args(argv)

    handler = type("PodHandler", (_Handler,), {"body": body_for(args.name, args.ip).encode()})
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        server: HTTPServer = _InheritedServer(sock, handler)
    else:
        host, _, port = args.bind.rpartition(":")
        server = HTTPServer((host, int(port)), handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
