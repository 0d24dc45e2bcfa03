"""The pods' servers: one process per lab serving every pod (a stand-in for the
net tool image).

Each pod answers every HTTP GET (and HEAD) with
``PodName: <name> | PodIP: eth0 <ip>/32``, the body the seed write-up's
DaemonSet returns (``GET /bytes/N``: N zero bytes, streamed, ``?rate=R`` paced at
R bytes a second; ``POST`` with a
Content-Length: the body is read and counted, and the answer is that line
and ``received N``); a pod's UDP port, when it has one, answers each datagram
with that line followed by the datagram's first 1024 bytes (an echo that says
who answered, never so big that the answer needs fragmenting), or, when the
datagram's first line ends ``answer N``, by that line and N zero bytes (an
answer as big as asked: over the MTU it leaves the pod in fragments).

The lab makes every listening socket itself, inside its pod's namespace
(a socket keeps the namespace it was made in), binds and listens, so a pod
is reachable the moment the lab returns; then it starts this module once,
handing it every socket (inherited file descriptors) and, over a control
socket (``--control FD``), a spec saying which descriptor is which pod::

    {"pods": [{"name": "cni-8zxj9", "ip": "10.0.2.123",
               "listeners": [{"fd": 7, "proto": "tcp"}]}, ...]}

One event loop serves them all; each pod is a :class:`Pod` with its own
servers, so one pod can stop while the others go on. Commands, one per line
on the control socket, each answered with one line:

* ``stop POD``: the pod stops listening and its open connections are closed
  (``stopped POD``), as if its process had died;
* ``pods``: the pods still serving (``pods A B ...``);
* ``ping``: ``pong``.

When the control socket closes (the lab was detached, or its process
exited) the server keeps serving; SIGTERM ends it. Run on its own for manual
use: ``python -m lab.env.podserver --bind HOST:PORT --name N --ip IP``.

Only the standard library is used, so the lab starts it as a plain script
(``python -I …/podserver.py``) without importing the rest of the lab.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, cast

SERVER_NAME = "dsrlab-pod/1"
MAX_REQUEST_HEAD = 16 * 1024
REQUEST_TIMEOUT_S = 10.0


def body_for(name: str, ip: str) -> str:
    return f"PodName: {name} | PodIP: eth0 {ip}/32\n"


MAX_SIZED_BODY = 1 << 30  # GET /bytes/N and a POST's body: at most 1 GiB
# GET /bytes/N, optionally paced: /bytes/N?rate=R sends R bytes a second (a transfer
# that lasts long enough for a fault to hit it mid-way; veth moves megabytes in ms)
_SIZED = re.compile(r"^/bytes/(\d{1,10})(?:\?rate=(\d{1,10}))?$")
PACED_CHUNK = 16 * 1024
CHUNK = 1 << 16
ECHO_MAX = 1024  # a UDP answer echoes at most this much of the datagram
ANSWER_MAX = 65000  # "answer N": at most this many bytes after the line (one datagram)
_ANSWER = re.compile(rb"(?:^| )answer (\d{1,5})$")


def http_head(status: int, reason: str, length: int,
              content_type: str = "text/plain") -> bytes:
    return (f"HTTP/1.0 {status} {reason}\r\n"
            f"Server: {SERVER_NAME}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n"
            "Connection: close\r\n\r\n").encode()


def http_response(status: int, reason: str, body: bytes, *, head_only: bool = False) -> bytes:
    head = http_head(status, reason, len(body))
    return head if head_only else head + body


def answer(request_head: bytes, body: bytes) -> tuple[bytes, int]:
    """The response to one request head (request line and headers, CRLF CRLF): the
    bytes to send, then how many zero bytes follow them (``GET /bytes/N``: a body of
    N bytes, streamed, for transfers of any size; ``/`` and anything else: the pod's
    line)."""
    line = request_line(request_head)
    if line is None:
        return http_response(400, "Bad Request", b"bad request\n"), 0
    method, target = line
    if method == "POST":
        length = content_length(request_head)
        if length is None or length > MAX_SIZED_BODY:
            return http_response(411, "Length Required",
                                 b"a POST needs a Content-Length up to 1 GiB\n"), 0
        return b"", 0  # the caller reads the body, then answers (posted())
    if method not in ("GET", "HEAD"):
        return http_response(501, "Not Implemented",
                             f"method {method} not served\n".encode()), 0
    sized = _SIZED.match(target)
    if sized and int(sized[1]) <= MAX_SIZED_BODY:
        n = int(sized[1])
        head = http_head(200, "OK", n, "application/octet-stream")
        return head, 0 if method == "HEAD" else n
    return http_response(200, "OK", body, head_only=method == "HEAD"), 0


_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d{1,10})\s*$", re.I | re.M)


def request_line(request_head: bytes) -> tuple[str, str] | None:
    """(method, target) of an HTTP/1.x request head; None when it is not one."""
    line = request_head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    return parts[0], parts[1]


def pace(request_head: bytes) -> int | None:
    """The bytes per second a ``GET /bytes/N?rate=R`` asks for (None: at once)."""
    line = request_line(request_head)
    m = _SIZED.match(line[1]) if line is not None else None
    return int(m[2]) if m and m[2] and int(m[2]) > 0 else None


def content_length(request_head: bytes) -> int | None:
    m = _CONTENT_LENGTH.search(request_head)
    return int(m[1]) if m else None


def posted(body: bytes, received: int) -> bytes:
    """The answer to a POST whose ``received`` body bytes were read."""
    return http_response(200, "OK", body + f"received {received}\n".encode())


@dataclass(frozen=True)
class Listener:
    fd: int
    proto: str = "tcp"  # tcp: HTTP; udp: echo


@dataclass
class Pod:
    """One pod's identity and the servers answering for it."""

    name: str
    ip: str
    listeners: list[Listener]
    servers: list[asyncio.AbstractServer] = field(default_factory=list)
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    connections: set[asyncio.StreamWriter] = field(default_factory=set)
    stopped: bool = False

    @property
    def body(self) -> bytes:
        return body_for(self.name, self.ip).encode()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for lst in self.listeners:
            sock = socket.socket(fileno=lst.fd)
            sock.setblocking(False)
            if lst.proto == "tcp":
                # TCP Fast Open served (the namespace's net.ipv4.tcp_fastopen allows it)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 128)
                self.servers.append(await asyncio.start_server(
                    self._serve, sock=sock, limit=MAX_REQUEST_HEAD, backlog=128))
            elif lst.proto == "udp":
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_Echo, self.body), sock=sock)
                self.transports.append(transport)
            else:
                sock.close()
                raise ValueError(f"pod {self.name}: unknown protocol {lst.proto!r}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            first, zeros = answer(head, self.body)
            if not first:  # a POST: read its body, then say how much came
                left = content_length(head) or 0
                got = 0
                while got < left:
                    data = await asyncio.wait_for(reader.read(min(CHUNK, left - got)),
                                                  REQUEST_TIMEOUT_S)
                    if not data:
                        break
                    got += len(data)
                first = posted(self.body, got)
            writer.write(first)
            rate = pace(head)
            step = PACED_CHUNK if rate else CHUNK
            chunk = bytes(step)
            while zeros > 0:
                writer.write(chunk[:zeros])
                zeros -= min(zeros, step)
                await writer.drain()
                if rate:
                    await asyncio.sleep(step / rate)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def stop(self) -> None:
        """Stop listening and drop every open connection (the pod is gone)."""
        self.stopped = True
        for server in self.servers:
            server.close()
        for transport in self.transports:
            transport.close()
        for writer in list(self.connections):
            writer.transport.abort()
        self.connections.clear()


class _Echo(asyncio.DatagramProtocol):
    """Answers each datagram with the pod's line (as its HTTP body) and the datagram's
    first :data:`ECHO_MAX` bytes, or the N zero bytes its ``answer N`` asks for."""

    transport: asyncio.DatagramTransport

    def __init__(self, head: bytes) -> None:
        self.head = head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a datagram endpoint's transport (the selector loop's is no DatagramTransport
        # subclass on every Python version, so no isinstance check)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        asked = _ANSWER.search(data.split(b"\n", 1)[0])
        if asked and int(asked[1]) <= ANSWER_MAX:
            self.transport.sendto(self.head + bytes(int(asked[1])), addr)
        else:
            self.transport.sendto(self.head + data[:ECHO_MAX], addr)


def parse_spec(text: str) -> list[Pod]:
    data = json.loads(text)
    return [Pod(name=str(p["name"]), ip=str(p["ip"]),
                listeners=[Listener(int(x["fd"]), str(x.get("proto", "tcp")))
                           for x in p["listeners"]])
            for p in data["pods"]]


class PodServer:
    """Every pod of a lab on one event loop, with a control socket."""

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}
        self.done = asyncio.Event()
        self.failed = False

    async def add(self, pods: list[Pod]) -> None:
        for pod in pods:
            if pod.name in self.pods:
                raise ValueError(f"pod {pod.name} is served already")
            self.pods[pod.name] = pod
            await pod.start()

    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return "error empty command"
        if words[0] == "ping":
            return "pong"
        if words[0] == "pods":
            return " ".join(["pods", *(p.name for p in self.pods.values() if not p.stopped)])
        if words[0] == "stop" and len(words) == 2:
            pod = self.pods.get(words[1])
            if pod is None:
                return f"error no pod {words[1]}"
            pod.stop()
            return f"stopped {pod.name}"
        return f"error unknown command {line.strip()!r}"

    async def control(self, sock: socket.socket) -> None:
        """Read the spec, then commands, until the other end closes (serving goes on)."""
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
        try:
            spec = await reader.readline()
            if not spec:
                return
            try:
                await self.add(parse_spec(spec.decode()))
            except (ValueError, KeyError, TypeError, OSError) as exc:
                writer.write(f"error spec: {exc}\n".encode())
                await writer.drain()
                self.failed = True
                self.stop_all()
                return
            writer.write(f"ready {len(self.pods)}\n".encode())
            while line := await reader.readline():
                writer.write((self.command(line.decode(errors="replace")) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def stop_all(self) -> None:
        for pod in self.pods.values():
            pod.stop()
        self.done.set()


async def _run(args: argparse.Namespace) -> int:
    server = PodServer()
    loop = asyncio.get_running_loop()
    # nothing to save on the way out: the kernel closes every socket of the process,
    # as it would for a pod's own process, without waiting on interpreter shutdown
    loop.add_signal_handler(signal.SIGTERM, os._exit, 0)
    loop.add_signal_handler(signal.SIGINT, server.stop_all)
    control: asyncio.Task[None] | None = None
    if args.control is not None:
        control = asyncio.create_task(server.control(socket.socket(fileno=args.control)))
    else:
        if args.fd is not None:
            fd = args.fd
        else:
            host, _, port = args.bind.rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, int(port)))
            sock.listen(128)
            fd = sock.detach()
        listeners = [Listener(fd, "tcp")]
        if args.udp and args.bind:  # the UDP echo on the same address and port
            host, _, port = args.bind.rpartition(":")
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((host, int(port)))
            listeners.append(Listener(udp.detach(), "udp"))
        await server.add([Pod(args.name, args.ip, listeners)])
    await server.done.wait()
    if control is not None:
        control.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await control
    return 1 if server.failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.env.podserver")
    ap.add_argument("--name", help="pod name for the answer body")
    ap.add_argument("--ip", help="pod address for the answer body")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--control", type=int,
                     help="inherited control socket: the spec of every pod, then commands")
    src.add_argument("--fd", type=int, help="one inherited listening socket (with --name, --ip)")
    src.add_argument("--bind", help="HOST:PORT to bind and listen on (with --name, --ip)")
    ap.add_argument("--udp", action="store_true",
                    help="with --bind: the UDP echo on the same address and port too")
    args = ap.parse_args(argv)
    if args.control is None and (args.name is None or args.ip is None):
        ap.error("--fd and --bind need --name and --ip")
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
