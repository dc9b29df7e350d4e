"""Adaptive parts in flight, over a real capped link: the benchmark's shaping proxy in front of
a Range-capable HTTP server on loopback. Not timings: the tests assert what the engine did
(parts in flight it reached, part buffers it held), which the link's cap forces."""

from __future__ import annotations

import hashlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from releasecache.manifest import FileEntry
from releasecache.remote.http import HttpRemote
from releasecache.store import Store
from releasecache.transfer import Transfer, TransferConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from shaper import MB, Profile, Shaper  # noqa: E402

KiB = 1024
PART = 64 * KiB
DATA = hashlib.shake_256(b"adaptive").digest(6 * 1024 * KiB)  # 96 parts


class RangeServer:
    """Serves DATA at /b/big.bin with Range; ``slowdown`` answers that many GETs with 503 SlowDown."""

    def __init__(self, slowdown: int = 0) -> None:
        outer = self
        self.slowdown = slowdown
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with outer.lock:
                    refuse = outer.slowdown > 0
                    outer.slowdown -= refuse
                if refuse:
                    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(body)
                    return
                start, end = 0, len(DATA) - 1
                rng = self.headers.get("Range")
                if rng:
                    a, _, b = rng.removeprefix("bytes=").partition("-")
                    start, end = int(a), min(int(b) if b else len(DATA) - 1, len(DATA) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(DATA)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                self.wfile.write(DATA[start:end + 1])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _entry() -> FileEntry:
    return FileEntry(name="1", url="https://b.s3.amazonaws.com/big.bin", version_id="", bucket="b",
                     key="big.bin", relative_path="big.bin", file_hash=hashlib.blake2b(DATA).hexdigest(),
                     size=None)


def _fetch(tmp_path: Path, url: str, **config: object) -> Transfer:
    transfer = Transfer(Store(tmp_path / "cache"), TransferConfig(part_size=PART, backoff_base=0.01,
                                                                   backoff_max=0.02, **config))
    path = transfer.fetch(HttpRemote(url), _entry())
    assert path.read_bytes() == DATA
    transfer.close()
    return transfer


@pytest.fixture
def server():
    srv = RangeServer()
    yield srv
    srv.close()


def test_parts_in_flight_grow_on_a_capped_link(tmp_path, server):
    # Each connection is capped at 1 MB/s: more parts in flight move proportionally more bytes,
    # so the engine must go beyond the 8 it starts with.
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_buffered_parts=24)
    assert transfer.limiter.peak > 8, transfer.limiter.history
    assert transfer.limiter.limit > 8
    assert transfer.stats["peak_buffered_parts"] <= 24


def test_never_exceeds_the_memory_budget(tmp_path, server):
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_buffered_parts=6)
    assert 1 <= transfer.stats["peak_buffered_parts"] <= 6
    assert transfer.limiter.peak <= 6


def test_a_fixed_number_is_kept(tmp_path, server):
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_parts_in_flight=3)
    assert transfer.limiter.peak <= 3 and transfer.limiter.limit == 3


def test_slowdown_halves_the_parts_in_flight(tmp_path):
    srv = RangeServer(slowdown=0)
    try:
        with Shaper(("127.0.0.1", srv.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
            transfer = Transfer(Store(tmp_path / "cache"), TransferConfig(part_size=PART, backoff_base=0.01,
                                                                           backoff_max=0.02, max_buffered_parts=32))
            # Push back from the start: the first answers say SlowDown.
            srv.slowdown = 3
            path = transfer.fetch(HttpRemote(f"{sh.url}/b"), _entry())
            assert path.read_bytes() == DATA
            transfer.close()
    finally:
        srv.close()
    assert transfer.stats["retries"] >= 3
    # Three refusals halve the starting 8 to the minimum of 2 before anything is measured;
    # growth then starts again from there.
    assert transfer.limiter.history and transfer.limiter.history[0][1] == 2
