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
from releasecache.transfer.engine import START_PARTS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from shaper import MB, Profile, Shaper  # noqa: E402

KiB = 1024
PART = 64 * KiB
DATA = hashlib.shake_256(b"adaptive").digest(6 * 1024 * KiB)  # 96 parts


class RangeServer:
    """Serves DATA at /b/big.bin with Range; ``slowdown`` answers that many GETs with 503 SlowDown."""

    def __init__(self, slowdown: int = 0, data: bytes = DATA) -> None:
        outer = self
        self.slowdown = slowdown
        self.data = data
        self.lock = threading.Lock()
        self.late: dict[int, float] = {}  # range start -> seconds its body waits after the headers
        self.stall: int | None = None     # range start whose body stops half-way (until shutdown)
        self.ranges: list[str] = []
        self.finished: list[int] = []     # range starts, in the order their bodies were sent
        self.stop = threading.Event()

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
                data = outer.data
                start, end = 0, len(data) - 1
                rng = self.headers.get("Range")
                if rng:
                    with outer.lock:
                        outer.ranges.append(rng)
                    a, _, b = rng.removeprefix("bytes=").partition("-")
                    start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start + 1))
                self.end_headers()
                if start == outer.stall:
                    self.wfile.write(data[start:start + (end + 1 - start) // 2])
                    self.wfile.flush()
                    outer.stop.wait(60)
                    return
                if start in outer.late:
                    self.wfile.flush()
                    outer.stop.wait(outer.late[start])
                self.wfile.write(data[start:end + 1])
                with outer.lock:
                    outer.finished.append(start)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _entry() -> FileEntry:
    return FileEntry(name="1", url="https://b.s3.amazonaws.com/big.bin", version_id="", bucket="b",
                     key="big.bin", relative_path="big.bin", file_hash=hashlib.blake2b(DATA).hexdigest(),
                     size=None)


def _fetch(tmp_path: Path, url: str, **config: object) -> Transfer:
    transfer = Transfer(Store(tmp_path / "cache"), TransferConfig(part_size=PART, backoff_base=0.01,
                                                                   backoff_max=0.02, **config))
    # Other tests share the machine's cores; whether busy cores stop the growth is a unit test's
    # business (tests/unit/test_concurrency.py), here the link's cap alone decides.
    transfer.limiter.cpu_load = None
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
    # so the engine must go beyond the 16 it starts with.
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_buffered_parts=24)
    assert transfer.limiter.peak > START_PARTS, transfer.limiter.history
    assert transfer.limiter.limit > START_PARTS
    assert transfer.stats["peak_buffered_parts"] <= 24


def test_never_exceeds_the_memory_budget(tmp_path, server):
    # Six part buffers: the parts in flight beyond them stream through one read buffer each.
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_buffered_parts=6)
    assert 1 <= transfer.stats["peak_buffered_parts"] <= 6
    assert transfer.limiter.peak > 6 and transfer.stats["streamed_parts"] > 0


def test_never_exceeds_the_parts_ceiling(tmp_path, server):
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_parts=6)
    assert transfer.limiter.peak <= 6 and transfer.stats["peak_parts"] <= 6


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
            transfer.limiter.cpu_load = None
            # Push back from the start: the first answers say SlowDown.
            srv.slowdown = 3
            path = transfer.fetch(HttpRemote(f"{sh.url}/b"), _entry())
            assert path.read_bytes() == DATA
            transfer.close()
    finally:
        srv.close()
    assert transfer.stats["retries"] >= 3
    # Three refusals halve the starting 16 to 2 (the minimum) before anything is measured;
    # growth then starts again from there.
    assert transfer.limiter.history and transfer.limiter.history[0][1] == 2


def test_a_late_front_part_is_hashed_in_order(tmp_path, server):
    # The second part's body waits a second after its headers: the parts behind it arrive first,
    # most of them streamed to disk (one part buffer only), and the hash still runs in file order.
    server.late[PART] = 1.0
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=4 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_buffered_parts=1)
    assert server.finished.index(PART) > 4, server.finished[:10]  # it really came late
    assert transfer.stats["streamed_parts"] > 0


def test_sixty_four_parts_in_flight_hold_one_read_buffer_each(tmp_path, server):
    with Shaper(("127.0.0.1", server.port), Profile("capped", 0.004, conn_rate=1 * MB)) as sh:
        transfer = _fetch(tmp_path, f"{sh.url}/b", max_parts_in_flight=64, max_buffered_parts=2)
    assert transfer.limiter.peak > 32
    assert transfer.stats["peak_buffered_parts"] <= 2
    # Streamed parts reuse 512 KiB read buffers: never more than the parts at once, plus the hash's own.
    assert transfer.stats["read_buffers"] <= transfer.stats["peak_parts"] + 1


CHILD = """
import sys
from releasecache.manifest import FileEntry
from releasecache.remote.http import HttpRemote
from releasecache.store import Store
from releasecache.transfer import Transfer, TransferConfig
url, cache, digest, part = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
entry = FileEntry(name="1", url="https://b.s3.amazonaws.com/big.bin", version_id="", bucket="b", key="big.bin",
                  relative_path="big.bin", file_hash=digest, size=None)
Transfer(Store(cache), TransferConfig(part_size=part, max_buffered_parts=1)).fetch(HttpRemote(url), entry)
"""


def test_a_process_killed_mid_part_resumes_after_the_bytes_it_wrote(tmp_path):
    import json
    import signal
    import subprocess
    import time

    part = 2 * 1024 * KiB
    data = hashlib.shake_256(b"killed").digest(3 * part)
    digest = hashlib.blake2b(data).hexdigest()
    srv = RangeServer(data=data)
    srv.stall = 2 * part  # the last part sends half its bytes, then hangs
    store = Store(tmp_path / "cache")
    try:
        child = subprocess.Popen([sys.executable, "-c", CHILD, f"http://127.0.0.1:{srv.port}/b",
                                  str(tmp_path / "cache"), digest, str(part)])
        try:
            deadline = time.monotonic() + 60
            done: list = []
            while time.monotonic() < deadline:
                try:
                    done = json.loads(store.sidecar_path(digest).read_text())["done"]
                except (OSError, ValueError, KeyError):
                    done = []
                if any(a <= 2 * part < b for a, b in done):
                    break
                time.sleep(0.05)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        kept = max(b for a, b in done if a <= 2 * part < b)
        assert 2 * part < kept <= 2 * part + part // 2  # part of the hanging part is on record
        srv.stall = None
        srv.ranges.clear()
        path = Transfer(store, TransferConfig(part_size=part)).fetch(
            HttpRemote(f"http://127.0.0.1:{srv.port}/b"), _entry_for(digest))
        assert path.read_bytes() == data
        assert srv.ranges == [f"bytes={kept}-{3 * part - 1}"], srv.ranges  # only what the kill left out
    finally:
        srv.close()


def _entry_for(digest: str) -> FileEntry:
    return FileEntry(name="1", url="https://b.s3.amazonaws.com/big.bin", version_id="", bucket="b",
                     key="big.bin", relative_path="big.bin", file_hash=digest, size=None)
