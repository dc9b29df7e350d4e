"""Loopback servers for the benchmark: nginx as a fast read-only S3 endpoint, and moto.

nginx serves ``<root>/<bucket>/<key>`` for path-style ``GET /<bucket>/<key>?versionId=..``
(the query string is ignored, ``Range`` is honoured), and answers the two listing
calls the contenders make with static XML written by the data generator:

* ``GET /<bucket>?list-type=2&prefix=<p>``  ->  ``<listings>/<bucket>/list/<p>.xml``
* ``GET /<bucket>?versions&prefix=<p>``     ->  ``<listings>/<bucket>/versions/<p>.xml``

``<p>`` is the prefix exactly as it appears (percent-encoded) in the query string;
:func:`listing_file_name` gives the matching file name. Every request is logged
with the body bytes sent, so bytes and requests can be counted at the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

LOG_FORMAT = '$msec $request_method "$request_uri" $status $body_bytes_sent "$http_range"'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listing_file_name(prefix: str) -> str:
    """The file name nginx looks up for a listing with this prefix (as clients encode it)."""
    return quote(prefix, safe="-_.~") + ".xml"


def _wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Nginx:
    """An nginx master process on 127.0.0.1 serving ``root`` (foreground, no daemon)."""

    def __init__(self, workdir: Path, root: Path, listings: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.root = Path(root)
        self.listings = Path(listings)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    def config(self) -> str:
        w = self.workdir
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(f"    {kind}_temp_path {w}/tmp/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""# written by bench/servers.py
{user}worker_processes 2;
daemon off;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '{LOG_FORMAT}';
    access_log {w}/access.log bench;
{temp}
    types {{ application/xml xml; application/json json; text/csv csv; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server_tokens off;
    map $args $listing_kind {{
        "~(^|&)versions(=|&|$)" versions;
        default list;
    }}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        # Bucket-level requests are S3 listings: answer them with static XML.
        location ~ "^/(?<bkt>[^/]+)/?$" {{
            # HeadBucket (s5cmd asks before its first copy): the bucket exists.
            if ($args = "") {{ return 200; }}
            root {self.listings};
            default_type application/xml;
            try_files /$bkt/$listing_kind/$arg_prefix.xml =404;
        }}
        location / {{
            limit_except GET HEAD {{ deny all; }}
            add_header Accept-Ranges bytes;
            # S3 names the version it sends; the benchmark's objects have one version each, the one
            # asked for (streamed reads refuse bytes that do not say which version they are).
            add_header x-amz-version-id $arg_versionId;
        }}
    }}
}}
"""

    def start(self) -> "Nginx":
        self.workdir.mkdir(parents=True, exist_ok=True)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        self.access_log.unlink(missing_ok=True)
        cmd = [self.binary, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "error.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.log", "wb"),
                                     start_new_session=True)
        try:
            _wait_port(self.port, 15, self.proc)
        except RuntimeError as exc:
            err = (self.workdir / "stderr.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"nginx did not start: {exc}\n{err}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: master stops its workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    # -- counting at the server ------------------------------------------------------

    def log_offset(self) -> int:
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0

    def count_since(self, offset: int, settle: float = 0.3) -> dict:
        """Requests and body bytes logged since ``offset`` (nginx logs when a request ends)."""
        time.sleep(settle)
        requests = 0
        body = 0
        by_kind = {"list": 0, "versions": 0, "head": 0, "get": 0, "ranged_get": 0}
        with open(self.access_log, "rb") as fh:
            fh.seek(offset)
            for line in fh:
                parts = line.decode(errors="replace").rstrip("\n").split(" ")
                if len(parts) < 6:
                    continue
                requests += 1
                method, uri = parts[1], parts[2].strip('"')
                try:
                    body += int(parts[4])
                except ValueError:
                    pass
                path = uri.split("?", 1)[0].strip("/")
                if method == "HEAD":
                    by_kind["head"] += 1
                elif "/" not in path:
                    by_kind["versions" if "versions" in uri else "list"] += 1
                elif parts[5] != '"-"':
                    by_kind["ranged_get"] += 1
                else:
                    by_kind["get"] += 1
        return {"requests": requests, "body_bytes": body, **by_kind}

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def nginx_version() -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
        return (out.stderr or out.stdout).strip().replace("nginx version: nginx/", "")
    except (OSError, subprocess.SubprocessError):
        return "not installed"
