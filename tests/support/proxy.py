"""A real HTTP reverse proxy on loopback that counts requests and injects faults.

It sits between a client and an upstream server (the S3 test server, nginx) and
can, on chosen requests: reset the connection, answer 500 or 503 SlowDown (with
``Retry-After``), truncate or corrupt the body, send extra bytes, stall, or
claim a different object version. Tests use it to attack the download path
over real sockets.
"""

from __future__ import annotations

import collections
import http.client
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("reset", "500", "503", "truncate", "corrupt", "extra", "stall", "version", "404", "delay")


@dataclass
class Fault:
    """One fault rule.

    Attributes
    ----------
    kind
        One of :data:`FAULT_KINDS`.
    match
        Predicate on ``(method, path_with_query, headers)``; default: object GETs
        (not listings or manifests).
    times
        Apply to at most this many matching requests (None: unlimited).
    probability
        Chance of applying to a matching request.
    stall_seconds
        For ``stall``: how long to hang after sending part of the body.
        For ``delay``: how long to wait before forwarding the request (the
        answer is then relayed intact; use it to widen race windows).
    retry_after
        For ``503``: the ``Retry-After`` header value, if any.
    """

    kind: str
    match: Callable[[str, str, dict], bool] | None = None
    times: int | None = None
    probability: float = 1.0
    stall_seconds: float = 60.0
    retry_after: str | None = None
    applied: int = 0

    def wants(self, method: str, path: str, headers: dict, rng: random.Random) -> bool:
        if self.times is not None and self.applied >= self.times:
            return False
        match = self.match or default_match
        if not match(method, path, headers):
            return False
        return rng.random() < self.probability


def default_match(method: str, path: str, headers: dict) -> bool:
    """Object GETs only: not bucket listings, not manifests."""
    parts = urlsplit(path)
    segments = parts.path.strip("/").split("/")
    return method == "GET" and len(segments) >= 2 and "/manifests/" not in parts.path


@dataclass
class ProxyStats:
    """What passed through the proxy."""

    requests: collections.Counter = field(default_factory=collections.Counter)
    #: ``(method, path, versionId or "")`` -> count: tells object versions of one key apart.
    versions: collections.Counter = field(default_factory=collections.Counter)
    faults: collections.Counter = field(default_factory=collections.Counter)
    bytes_sent: int = 0
    #: ``(method, path)`` -> body bytes relayed in full: what crossed the wire per object.
    bytes_by_path: collections.Counter = field(default_factory=collections.Counter)

    def gets(self, key_substring: str = "") -> int:
        """Number of object GETs whose path contains ``key_substring``."""
        return sum(n for (method, path), n in self.requests.items()
                   if method == "GET" and key_substring in path and default_match(method, path, {}))

    def object_bytes(self, key_substring: str = "") -> int:
        """Body bytes of object GETs (not listings or manifests) relayed to the client."""
        return sum(n for (method, path), n in self.bytes_by_path.items()
                   if key_substring in path and default_match(method, path, {}))


class FaultProxy:
    """Reverse proxy ``127.0.0.1:<port>`` -> ``upstream``; use as a context manager."""

    def __init__(self, upstream: str, *, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.faults: list[Fault] = []
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connections: set[socket.socket] = set()  # open client connections, cut by stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.stats = ProxyStats()

    def _pick(self, method: str, path: str, headers: dict) -> Fault | None:
        with self._lock:
            self.stats.requests[(method, path.split("?")[0])] += 1
            version = parse_qs(urlsplit(path).query).get("versionId", [""])[0]
            self.stats.versions[(method, path.split("?")[0], version)] += 1
            for fault in self.faults:
                if fault.wants(method, path, headers, self._rng):
                    fault.applied += 1
                    self.stats.faults[fault.kind] += 1
                    return fault
        return None

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:  # the connection was cut by stop()
                    pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                fault = proxy._pick(self.command, self.path, headers)
                if fault is not None and fault.kind == "delay":
                    proxy._stop.wait(fault.stall_seconds)
                    fault = None
                if fault is not None and fault.kind == "reset":
                    self._reset()
                    return
                if fault is not None and fault.kind in ("500", "503", "404"):
                    self._error(fault)
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    upstream = conn.getresponse()
                    self._relay(upstream, fault)
                finally:
                    conn.close()

            def _reset(self) -> None:
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
                self.close_connection = True
                self.connection.close()

            def _error(self, fault: Fault) -> None:
                if fault.kind == "503":
                    body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
                            b"<Message>Please reduce your request rate.</Message></Error>")
                    status = 503
                elif fault.kind == "404":
                    body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"
                    status = 404
                else:
                    body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>"
                            b"<Message>We encountered an internal error.</Message></Error>")
                    status = 500
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                if fault.retry_after is not None:
                    self.send_header("Retry-After", fault.retry_after)
                self.end_headers()
                self.wfile.write(body)

            def _relay(self, upstream: http.client.HTTPResponse, fault: Fault | None) -> None:
                data = upstream.read()
                kind = fault.kind if fault is not None else None
                if kind == "corrupt" and data:
                    mutable = bytearray(data)
                    mutable[len(mutable) // 2] ^= 0xFF
                    data = bytes(mutable)
                announced = len(data)
                if kind == "extra":
                    data = data + b"EXTRA-BYTES"
                    announced = len(data)
                self.send_response(upstream.status, upstream.reason)
                for key, value in upstream.getheaders():
                    low = key.lower()
                    if low in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        continue
                    if kind == "version" and low == "x-amz-version-id":
                        value = "not-the-version-you-asked-for"
                    self.send_header(key, value)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                if kind == "truncate" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._reset()
                    return
                if kind == "stall" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 3])
                    self.wfile.flush()
                    proxy._stop.wait(fault.stall_seconds)  # type: ignore[union-attr]
                    self._reset()
                    return
                self.wfile.write(data)
                with proxy._lock:
                    proxy.stats.bytes_sent += len(data)
                    proxy.stats.bytes_by_path[(self.command, self.path.split("?")[0])] += len(data)

            def do_GET(self) -> None:
                try:
                    self._forward()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_HEAD = do_GET
            do_PUT = do_GET
            do_POST = do_GET
            do_DELETE = do_GET

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                import sys

                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)  # a killed client is not news

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fault-proxy")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop like a dead server: refuse new connections and cut the open (keep-alive) ones."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
