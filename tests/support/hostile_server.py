"""A deliberately misbehaving S3-compatible server on loopback, for the tests.

It answers enough of the S3 REST API for :class:`~releasecache.remote.s3.S3Remote`
(boto3, path-style, anonymous) and :class:`~releasecache.remote.http.HttpRemote`:
``GetObject`` with ``versionId`` and ``Range``, ``HeadObject`` and
``ListObjectsV2``. Objects live in memory, each put gets a new version id, and by
default every answer is right.

Set :attr:`HostileServer.case` to one of :data:`CASES` and every object GET (not
listings, not manifests unless :attr:`HostileServer.hit_manifests` is set) is
answered wrongly in that way. Real sockets, its own threads, bounded loops: an
endless body stops after :attr:`HostileServer.endless_limit` bytes or when the
server stops, a drip after the object's last byte or when the server stops.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import itertools
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

#: Every way this server can answer wrongly, with what it does.
CASES: dict[str, str] = {
    "ok": "answers correctly",
    "range_ignored": "200 with the whole body to a Range request",
    "content_range_shifted": "206 whose Content-Range (and bytes) start one byte after the requested start",
    "content_range_short": "206 whose Content-Range ends before the requested end (and fewer bytes)",
    "content_range_total": "206 with the right bytes but a Content-Range total that is not the object's size",
    "length_short": "Content-Length smaller than the body that follows (the rest pollutes the connection)",
    "length_long": "Content-Length larger than the body, then the connection closes",
    "gzip": "Content-Encoding: gzip (the requested bytes gzipped; Content-Length of the gzip)",
    "redirect_301_good": "301 to another host that serves the right bytes",
    "redirect_307_good": "307 to another host that serves the right bytes",
    "redirect_301_bad": "301 to another host that serves wrong bytes",
    "redirect_307_bad": "307 to another host that serves wrong bytes",
    "wrong_bytes": "right headers, every byte inverted",
    "endless": "200, no Content-Length, a body that never ends (until endless_limit)",
    "endless_chunked": "200, chunked transfer encoding, a body that never ends (until endless_limit)",
    "drip": "right headers, then the body at one byte per second",
    "wrong_version": "an x-amz-version-id other than the one asked for",
    "html_200": "an HTML error page with status 200",
    "huge_headers": "a megabyte of extra headers (16 of 64,000 bytes), then the right answer",
    "huge_header_line": "one header line of a megabyte",
    "close_after_headers": "the right headers, then the connection is closed",
    "416": "416 InvalidRange for every Range request (a valid range); a GET without Range works",
    "403": "403 AccessDenied (S3 XML error)",
    "404_version": "404 NoSuchVersion (S3 XML error)",
}

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def s3_error(code: str, message: str, **extra: str) -> bytes:
    """An S3 error document."""
    rest = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{escape(message)}'
            f"</Message>{rest}<RequestId>hostile-0</RequestId></Error>").encode()


@dataclass
class Stats:
    """What the server did."""

    requests: collections.Counter = field(default_factory=collections.Counter)
    cases_applied: collections.Counter = field(default_factory=collections.Counter)
    body_bytes_sent: int = 0
    connections: int = 0


class HostileServer:
    """An in-memory, versioned S3 bucket on ``host:<port>`` that lies when told to.

    Parameters
    ----------
    bucket
        The one bucket this server holds.
    host
        Loopback address to bind (another 127.x address makes "another host").
    endless_limit
        Bytes after which an endless body stops (a safety net, not a feature).
    drip_interval
        Seconds between the bytes of a drip.
    lifetime
        Seconds after which the server stops by itself, should a test never stop it.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, bucket: str = "hostile", *, host: str = "127.0.0.1", endless_limit: int = 1 << 30,
                 drip_interval: float = 1.0, lifetime: float = 1800.0) -> None:
        self.bucket = bucket
        self.host = host
        self.endless_limit = endless_limit
        self.drip_interval = drip_interval
        self.lifetime = lifetime
        self._timer: threading.Timer | None = None
        self.case = "ok"
        self.hit_manifests = False
        #: Where redirects point: ``http://host:port`` of another server with the same objects.
        self.redirect_good: str | None = None
        self.redirect_bad: str | None = None
        self.stats = Stats()
        self._objects: dict[str, list[tuple[str, bytes]]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content -----------------------------------------------------------------------

    def put(self, key: str, data: bytes, version_id: str | None = None) -> str:
        """Store a new version of ``key``; return its version id."""
        with self._lock:
            vid = version_id or f"v{next(self._versions):04d}-" + hashlib.sha1(key.encode() + data).hexdigest()[:20]
            self._objects.setdefault(key, []).append((vid, bytes(data)))
        return vid

    def _lookup(self, key: str, version_id: str | None) -> tuple[str, bytes] | str:
        with self._lock:
            versions = self._objects.get(key)
            if not versions:
                return "NoSuchKey"
            if not version_id:
                return versions[-1]
            for vid, data in versions:
                if vid == version_id:
                    return vid, data
            return "NoSuchVersion"

    @property
    def url(self) -> str:
        """``http://host:port``: the endpoint URL for S3 clients."""
        assert self._server is not None, "server not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def bucket_url(self) -> str:
        """``http://host:port/bucket``: the base URL for plain HTTP clients."""
        return f"{self.url}/{self.bucket}"

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = Stats()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "HostileServer":
        self._stop.clear()
        self._server = _Server((self.host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name=f"hostile-{self.host}")
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # ends every drip and endless body
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        self._timer = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "HostileServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)  # a client that hung up is not news


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``bytes=a-b`` -> (a, b) clipped to the object; None without Range; 'invalid' if unsatisfiable."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[6:].split(",")[0].strip()
    first, _, last = spec.partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if size and n else "invalid"
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return None
    if a >= size or b < a:
        return "invalid"
    return a, min(b, size - 1)


def _handler_for(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server.stats.connections += 1

        # -- plumbing --------------------------------------------------------------

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes = b"",
                  *, length: int | None = -1) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            if length is not None:
                self.send_header("Content-Length", str(len(body) if length == -1 else length))
            self.end_headers()
            if self.command != "HEAD" and body:
                self._write(body)

        def _write(self, data: bytes) -> None:
            self.wfile.write(data)
            with server._lock:
                server.stats.body_bytes_sent += len(data)

        def _error(self, status: int, code: str, message: str, **extra: str) -> None:
            body = s3_error(code, message, **extra)
            self._send(status, [("Content-Type", "application/xml")], body if self.command != "HEAD" else b"",
                       length=len(body) if self.command == "HEAD" else -1)

        def _abort(self) -> None:
            """Close the connection at once (the client sees the stream end)."""
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        # -- requests --------------------------------------------------------------

        def do_GET(self) -> None:
            try:
                self._dispatch()
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                self.close_connection = True

        do_HEAD = do_GET

        def do_PUT(self) -> None:
            self._error(405, "MethodNotAllowed", "this server is read-only")

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            segments = parts.path.lstrip("/").split("/", 1)
            bucket = unquote(segments[0])
            key = unquote(segments[1]) if len(segments) > 1 else ""
            with server._lock:
                server.stats.requests[(self.command, key or "/")] += 1
            if bucket != server.bucket:
                self._error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
                return
            if not key:
                if self.command == "GET" and query.get("list-type") == "2":
                    self._list(query)
                elif self.command == "HEAD":
                    self._send(200, [("x-amz-bucket-region", "us-west-2")])
                else:
                    self._error(400, "InvalidRequest", "only ListObjectsV2 is supported on the bucket")
                return
            self._object(key, query.get("versionId"))

        def _list(self, query: dict[str, str]) -> None:
            prefix = query.get("prefix", "")
            url_encoded = query.get("encoding-type") == "url"
            with server._lock:
                keys = sorted((k, len(v[-1][1])) for k, v in server._objects.items() if k.startswith(prefix))
            contents = "".join(
                f"<Contents><Key>{escape(quote(k) if url_encoded else k)}</Key>"
                f"<LastModified>2020-01-01T00:00:00.000Z</LastModified><ETag>&quot;0&quot;</ETag>"
                f"<Size>{n}</Size><StorageClass>STANDARD</StorageClass></Contents>" for k, n in keys)
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_NS}">'
                    f"<Name>{escape(server.bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
                    f"<KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
                    f"{'<EncodingType>url</EncodingType>' if url_encoded else ''}"
                    f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>").encode()
            self._send(200, [("Content-Type", "application/xml")], body)

        def _object(self, key: str, version_id: str | None) -> None:
            found = server._lookup(key, version_id)
            if isinstance(found, str):
                if found == "NoSuchVersion":
                    self._error(404, "NoSuchVersion", "The specified version does not exist.", Key=key,
                                VersionId=version_id or "")
                else:
                    self._error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
                return
            vid, data = found
            case = server.case
            if "/manifests/" in f"/{key}" and not server.hit_manifests:
                case = "ok"
            if self.command == "HEAD" and case not in ("403", "404_version"):
                case = "ok"
            if case != "ok":
                with server._lock:
                    server.stats.cases_applied[case] += 1
            getattr(self, "_case_" + case, self._case_ok)(key, vid, data)

        # -- the right answer, and its pieces ---------------------------------------

        def _headers(self, vid: str, *, content_type: str = "application/octet-stream") -> list[tuple[str, str]]:
            return [("Content-Type", content_type), ("ETag", '"0"'), ("Accept-Ranges", "bytes"),
                    ("Last-Modified", "Wed, 01 Jan 2020 00:00:00 GMT"), ("x-amz-version-id", vid)]

        def _span(self, data: bytes) -> tuple[int, int] | None | str:
            return _parse_range(self.headers.get("Range"), len(data))

        def _answer(self, vid: str, data: bytes, *, extra: list[tuple[str, str]] = ()) -> None:
            span = self._span(data)
            headers = self._headers(vid) + list(extra)
            if span == "invalid":
                self._error(416, "InvalidRange", "The requested range is not satisfiable",
                            RangeRequested=self.headers.get("Range", ""), ActualObjectSize=str(len(data)))
                return
            if span is None:
                self._send(200, headers, data)
                return
            a, b = span
            self._send(206, headers + [("Content-Range", f"bytes {a}-{b}/{len(data)}")], data[a:b + 1])

        def _case_ok(self, key: str, vid: str, data: bytes) -> None:
            self._answer(vid, data)

        def _case_wrong_bytes(self, key: str, vid: str, data: bytes) -> None:
            self._answer(vid, bytes(x ^ 0xFF for x in data))

        # -- wrong answers ---------------------------------------------------------

        def _case_range_ignored(self, key: str, vid: str, data: bytes) -> None:
            self._send(200, self._headers(vid), data)

        def _shifted(self, vid: str, data: bytes, a: int, b: int, total: int) -> None:
            self._send(206, self._headers(vid) + [("Content-Range", f"bytes {a}-{b}/{total}")], data[a:b + 1])

        def _case_content_range_shifted(self, key: str, vid: str, data: bytes) -> None:
            span = self._span(data)
            if not isinstance(span, tuple) or len(data) < 2:
                return self._answer(vid, data)
            a, b = span
            a = min(a + 1, len(data) - 1)
            self._shifted(vid, data, a, max(a, b), len(data))

        def _case_content_range_short(self, key: str, vid: str, data: bytes) -> None:
            span = self._span(data)
            if not isinstance(span, tuple):
                return self._answer(vid, data)
            a, b = span
            self._shifted(vid, data, a, max(a, b - max(1, (b - a) // 2)), len(data))

        def _case_content_range_total(self, key: str, vid: str, data: bytes) -> None:
            span = self._span(data)
            if not isinstance(span, tuple):
                return self._answer(vid, data)
            a, b = span
            self._shifted(vid, data, a, b, len(data) + 4096)

        def _body_for(self, data: bytes) -> bytes:
            span = self._span(data)
            return data[span[0]:span[1] + 1] if isinstance(span, tuple) else data

        def _range_headers(self, vid: str, data: bytes) -> tuple[int, list[tuple[str, str]]]:
            span = self._span(data)
            if isinstance(span, tuple):
                return 206, self._headers(vid) + [("Content-Range", f"bytes {span[0]}-{span[1]}/{len(data)}")]
            return 200, self._headers(vid)

        def _case_length_short(self, key: str, vid: str, data: bytes) -> None:
            status, headers = self._range_headers(vid, data)
            body = self._body_for(data)
            self._send(status, headers, body, length=max(0, len(body) - 7))

        def _case_length_long(self, key: str, vid: str, data: bytes) -> None:
            status, headers = self._range_headers(vid, data)
            body = self._body_for(data)
            self._send(status, headers, body, length=len(body) + 1000)
            self._abort()

        def _case_gzip(self, key: str, vid: str, data: bytes) -> None:
            status, headers = self._range_headers(vid, data)
            self._send(status, headers + [("Content-Encoding", "gzip")], gzip.compress(self._body_for(data)))

        def _redirect(self, status: int, target: str | None) -> None:
            assert target, "set redirect_good / redirect_bad first"
            self._send(status, [("Location", target + self.path), ("Content-Type", "application/xml")],
                       s3_error("PermanentRedirect" if status == 301 else "TemporaryRedirect",
                                "Please re-send this request to the specified endpoint.", Endpoint=target))

        def _case_redirect_301_good(self, key: str, vid: str, data: bytes) -> None:
            self._redirect(301, server.redirect_good)

        def _case_redirect_307_good(self, key: str, vid: str, data: bytes) -> None:
            self._redirect(307, server.redirect_good)

        def _case_redirect_301_bad(self, key: str, vid: str, data: bytes) -> None:
            self._redirect(301, server.redirect_bad)

        def _case_redirect_307_bad(self, key: str, vid: str, data: bytes) -> None:
            self._redirect(307, server.redirect_bad)

        def _endless_source(self, data: bytes) -> bytes:
            block = (data or b"x") * max(1, 65536 // max(1, len(data)))
            return block[:65536]

        def _case_endless(self, key: str, vid: str, data: bytes) -> None:
            self.send_response(200)
            for k, v in self._headers(vid):
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            block, sent = self._endless_source(data), 0
            while sent < server.endless_limit and not server._stop.is_set():  # bounded by the limit
                self._write(block)
                sent += len(block)

        def _case_endless_chunked(self, key: str, vid: str, data: bytes) -> None:
            self.send_response(200)
            for k, v in self._headers(vid):
                self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            block, sent = self._endless_source(data), 0
            chunk = b"%x\r\n" % len(block) + block + b"\r\n"
            while sent < server.endless_limit and not server._stop.is_set():
                self._write(chunk)
                sent += len(block)

        def _case_drip(self, key: str, vid: str, data: bytes) -> None:
            status, headers = self._range_headers(vid, data)
            body = self._body_for(data)
            self._send(status, headers, b"", length=len(body))
            for i in range(len(body)):  # bounded by the body's length
                self._write(body[i:i + 1])
                self.wfile.flush()
                if server._stop.wait(server.drip_interval):
                    self._abort()
                    return

        def _case_wrong_version(self, key: str, vid: str, data: bytes) -> None:
            status, headers = self._range_headers(vid, data)
            headers = [(k, "v9999-not-the-version-you-asked-for" if k == "x-amz-version-id" else v)
                       for k, v in headers]
            self._send(status, headers, self._body_for(data))

        def _case_html_200(self, key: str, vid: str, data: bytes) -> None:
            page = (b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
                    b"<h1>Error 503</h1><p>The service is temporarily unavailable. Please try later.</p>"
                    b"</body></html>\n")
            self._send(200, [("Content-Type", "text/html; charset=utf-8")], page)

        def _case_huge_headers(self, key: str, vid: str, data: bytes) -> None:
            filler = [(f"x-amz-meta-filler-{i:02d}", "f" * 64_000) for i in range(16)]
            self._answer(vid, data, extra=filler)

        def _case_huge_header_line(self, key: str, vid: str, data: bytes) -> None:
            self._answer(vid, data, extra=[("x-amz-meta-filler", "f" * (1 << 20))])

        def _case_close_after_headers(self, key: str, vid: str, data: bytes) -> None:
            status, headers = self._range_headers(vid, data)
            self._send(status, headers, b"", length=len(self._body_for(data)))
            self._abort()

        def _case_416(self, key: str, vid: str, data: bytes) -> None:
            if self.headers.get("Range"):
                self._error(416, "InvalidRange", "The requested range is not satisfiable",
                            RangeRequested=self.headers.get("Range", ""), ActualObjectSize=str(len(data)))
            else:
                self._answer(vid, data)

        def _case_403(self, key: str, vid: str, data: bytes) -> None:
            self._error(403, "AccessDenied", "Access Denied")

        def _case_404_version(self, key: str, vid: str, data: bytes) -> None:
            self._error(404, "NoSuchVersion", "The specified version does not exist.", Key=key,
                        VersionId=self.path.split("versionId=")[-1].split("&")[0])

    return Handler


def serve_release(server: HostileServer, project: str, files: dict[str, bytes], *, version: str = "1.0.0",
                  record_size: bool = False, url_base: str | None = None) -> tuple[str, dict[str, Any]]:
    """Put ``{relative path: bytes}`` under ``<project>/`` and a manifest for them; return (name, document).

    Data file ids are the positions in ``files``; URLs are path-style under
    ``url_base`` (default: this server's bucket URL).
    """
    base = url_base or server.bucket_url
    data_files: dict[str, Any] = {}
    for i, (path, data) in enumerate(files.items()):
        key = f"{project}/{path}"
        vid = server.put(key, data)
        entry = {"url": f"{base}/{quote(key)}", "version_id": vid,
                 "file_hash": hashlib.blake2b(data).hexdigest()}
        if record_size:
            entry["size"] = len(data)
        data_files[str(i)] = entry
    doc = {"project_name": project, "manifest_version": version, "metadata_file_id_column_name": "file_id",
           "data_pipeline": [{"name": "AllenSDK", "version": "2.16.2", "comment": "test"}],
           "metadata_files": {}, "data_files": data_files}
    import json

    name = f"{project}_project_manifest_v{version}.json"
    server.put(f"{project}/manifests/{name}", json.dumps(doc).encode())
    return name, doc


__all__ = ["CASES", "HostileServer", "Stats", "s3_error", "serve_release"]
