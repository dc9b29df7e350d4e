"""Servers that answer wrongly: every case of tests.support.hostile_server, through every way bytes arrive.

For each case and each path (a download through the S3 API and through plain
HTTP; a streamed read through both), the result is either exactly the right
bytes or the error this table names, from the package's hierarchy, within a
bounded time and with bounded memory; afterwards no view in the cache points at
wrong bytes and no blob's content differs from its name.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
import warnings
from pathlib import Path

import pytest

from releasecache import CloudCache, TransferConfig
from releasecache.errors import (
    DownloadError,
    IntegrityError,
    ManifestNotFoundError,
    ManifestParseError,
    ReleaseCacheError,
    RemoteAccessError,
    RemoteError,
    RemoteNotFoundError,
)
from releasecache.remote import HttpRemote, S3Remote
from releasecache.vbn.streaming import open_data
from tests._reliability import view_problems
from tests.support.hostile_server import CASES, HostileServer, serve_release

PROJECT = "hostile-release"
BIG = random.Random(11).randbytes(200_000)  # four 64 KiB parts
SMALL = random.Random(12).randbytes(3_000)
FILES = {"sessions/1/big.dat": BIG, "sessions/2/small.dat": SMALL, "empty/empty.dat": b""}
REQUEST_TIMEOUT = 1.0  # seconds a body may take: the drip and the endless bodies are cut off by it
TIME_BOUND = 12.0  # seconds any one case may take, retries included
SENT_BOUND = 24 * 1024 * 1024  # body bytes the server may send in one case: an endless body is not drunk
RSS_BOUND = 64 * 1024 * 1024
TRANSFER = dict(part_size=64 * 1024, max_parts_in_flight=2, window=4, max_attempts=2, backoff_base=0.01,
                backoff_max=0.02, integrity_attempts=1)
REMOTE_OPTIONS = {"connect_timeout": 2, "read_timeout": 2, "request_timeout": REQUEST_TIMEOUT}

OK = "right bytes"
# What each case must give, for downloads and for streamed reads, through the S3 API and plain HTTP.
# A tuple allows either outcome. Plain HTTP follows redirects (the hash then decides); boto3 does not.
EXPECT: dict[str, dict[str, object]] = {
    "ok": {"download": OK, "stream": OK},
    "range_ignored": {"download": OK, "stream": OK},
    "content_range_shifted": {"download": DownloadError, "stream": DownloadError},
    "content_range_short": {"download": DownloadError, "stream": DownloadError},
    "content_range_total": {"download": (DownloadError, IntegrityError), "stream": DownloadError},
    "length_short": {"download": DownloadError, "stream": DownloadError},
    "length_long": {"download": DownloadError, "stream": (OK, DownloadError)},
    "gzip": {"download": (OK, DownloadError), "stream": (OK, DownloadError)},
    "redirect_301_good": {"download-s3": RemoteError, "download-http": OK, "stream": RemoteError},
    "redirect_307_good": {"download-s3": RemoteError, "download-http": OK, "stream": RemoteError},
    "redirect_301_bad": {"download-s3": RemoteError, "download-http": IntegrityError, "stream": RemoteError},
    "redirect_307_bad": {"download-s3": RemoteError, "download-http": IntegrityError, "stream": RemoteError},
    "wrong_bytes": {"download": IntegrityError, "stream": IntegrityError},
    "endless": {"download": (IntegrityError, DownloadError), "stream": DownloadError},
    "endless_chunked": {"download": (IntegrityError, DownloadError), "stream": DownloadError},
    "drip": {"download": DownloadError, "stream": DownloadError},
    "wrong_version": {"download": IntegrityError, "stream": IntegrityError},
    "html_200": {"download": IntegrityError, "stream": IntegrityError},
    "huge_headers": {"download": OK, "stream": OK},
    "huge_header_line": {"download": DownloadError, "stream": DownloadError},
    "close_after_headers": {"download": DownloadError, "stream": DownloadError},
    "416": {"download": OK, "stream": DownloadError},
    "403": {"download": RemoteAccessError, "stream": RemoteAccessError},
    "404_version": {"download": RemoteNotFoundError, "stream": RemoteNotFoundError},
}
PATHS = ("download-s3", "download-http", "stream-s3", "stream-http")


def test_every_case_has_an_expectation():
    assert set(EXPECT) == set(CASES) and len(CASES) >= 20


def _other_host(n: int) -> str:
    """127.0.0.n if it can be bound (every 127/8 address is loopback on Linux), else 127.0.0.1."""
    try:
        with socket.socket() as sock:
            sock.bind((f"127.0.0.{n}", 0))
        return f"127.0.0.{n}"
    except OSError:
        return "127.0.0.1"


@pytest.fixture(scope="module")
def servers():
    """The hostile server, and two other hosts it redirects to: one with the right bytes, one with wrong ones."""
    main = HostileServer(endless_limit=256 * 1024 * 1024)
    good = HostileServer(host=_other_host(2))
    bad = HostileServer(host=_other_host(3))
    with main, good, bad:
        name, doc = serve_release(main, PROJECT, FILES)
        for key, versions in main._objects.items():  # the same objects and version ids on the other hosts
            for vid, data in versions:
                good.put(key, data, vid)
                bad.put(key, data, vid)
        bad.case = "wrong_bytes"
        main.redirect_good, main.redirect_bad = good.url, bad.url
        yield main, name


_REMOTES: dict[tuple[str, str], object] = {}


def _remote(server: HostileServer, via: str) -> object:
    """One remote per server and kind for the module (a boto3 client takes a while to build)."""
    key = (server.url, via)
    if key not in _REMOTES:
        if via == "s3":
            _REMOTES[key] = S3Remote(server.bucket, endpoint_url=server.url, max_pool_connections=8, **REMOTE_OPTIONS)
        else:
            _REMOTES[key] = HttpRemote(server.bucket_url, **REMOTE_OPTIONS)
    return _REMOTES[key]


def _cache(tmp_path: Path, server: HostileServer, name: str, via: str) -> CloudCache:
    cache = CloudCache(tmp_path / "cache", _remote(server, via), PROJECT, transfer_config=TransferConfig(**TRANSFER),
                       progress=False)
    server.case = "ok"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache.load_manifest(name)
    return cache


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _allowed(case: str, path: str) -> tuple:
    table = EXPECT[case]
    want = table[path] if path in table else table[path.split("-")[0]]
    return want if isinstance(want, tuple) else (want,)


def _outcome(fn) -> object:
    try:
        fn()
    except ReleaseCacheError as exc:
        return exc
    return OK


def _check(outcome: object, allowed: tuple, case: str, path: str) -> None:
    if outcome == OK:
        assert OK in allowed, f"{case} via {path}: right bytes, but expected {allowed}"
        return
    assert isinstance(outcome, ReleaseCacheError)
    kinds = tuple(a for a in allowed if isinstance(a, type))
    assert kinds and isinstance(outcome, kinds), f"{case} via {path}: {type(outcome).__name__}: {outcome}"
    assert len(str(outcome)) < 2000
    # The error says which object it is about: as attributes, not only in the message.
    context = outcome.context
    assert context.get("path") or context.get("key") or context.get("url"), (case, path, repr(outcome), context)
    if isinstance(outcome, IntegrityError):  # what the manifest or the request said, and (mostly) what came
        assert outcome.expected is not None, (case, path, repr(outcome), context)
    if isinstance(outcome, (RemoteAccessError, RemoteNotFoundError)):  # the server's own words
        assert outcome.status in (403, 404) and outcome.code in ("AccessDenied", "NoSuchVersion"), context


def _cache_is_clean(cache: CloudCache) -> None:
    assert view_problems(cache) == []
    root = cache.store.root
    for dirpath, _dirs, files in os.walk(root):  # nothing but the cache's own tree
        for f in files:
            assert Path(dirpath, f).resolve().is_relative_to(root.resolve())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_answer_gives_right_bytes_or_a_clear_error(case, path, servers, tmp_path):
    server, name = servers
    kind, via = path.split("-")
    cache = _cache(tmp_path, server, name, via)
    entries = [cache.data_entry(i) for i in ("0", "1", "2")]
    server.case = case
    server.reset_stats()
    rss_before = _rss()
    started = time.monotonic()

    def download() -> None:
        for entry in entries:
            got = cache.ensure(entry)
            assert hashlib.blake2b(got.read_bytes()).hexdigest() == entry.file_hash  # a view holds right bytes

    def stream() -> None:
        for i, entry in enumerate(entries):
            with open_data(cache, str(i), max_attempts=2) as fobj:
                data = fobj.read()
                assert fobj.verified  # fetched in order to its end: checked against the manifest's hash
            assert hashlib.blake2b(data).hexdigest() == entry.file_hash

    try:
        outcome = _outcome(download if kind == "download" else stream)
    finally:
        server.case = "ok"
    elapsed = time.monotonic() - started
    _check(outcome, _allowed(case, path), case, path)
    assert elapsed < TIME_BOUND, f"{case} via {path} took {elapsed:.1f} s"
    assert server.stats.body_bytes_sent < SENT_BOUND, f"{case} via {path}: read {server.stats.body_bytes_sent} bytes"
    assert _rss() - rss_before < RSS_BOUND
    _cache_is_clean(cache)
    if kind == "download":  # the same cache completes once the server behaves
        for entry in entries:
            assert hashlib.blake2b(cache.ensure(entry).read_bytes()).hexdigest() == entry.file_hash
        _cache_is_clean(cache)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("via", ["s3", "http"])
@pytest.mark.parametrize("case", [c for c in CASES if c not in ("ok", "wrong_bytes")])
def test_partial_streamed_read_is_right_or_refused(case, via, servers, tmp_path):
    """A read from the middle of a file cannot be hash-checked; it must still be the bytes asked for,
    or an error. (``wrong_bytes`` with right headers cannot be told from the truth by a partial read:
    see docs/reliability.md.)"""
    server, name = servers
    cache = _cache(tmp_path, server, name, via)
    server.case = case
    started = time.monotonic()
    got: list[bytes] = []

    def read() -> None:
        with open_data(cache, "0", max_attempts=2, block_size=16 * 1024, max_readahead=32 * 1024) as fobj:
            fobj.seek(100_000)
            got.append(fobj.read(5_000))

    try:
        outcome = _outcome(read)
    finally:
        server.case = "ok"
    assert time.monotonic() - started < TIME_BOUND
    if outcome == OK:
        assert got == [BIG[100_000:105_000]], case
    else:
        assert isinstance(outcome, (DownloadError, IntegrityError, RemoteError)), repr(outcome)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("via", ["s3", "http"])
@pytest.mark.parametrize("case", ["endless", "endless_chunked", "drip", "html_200", "length_short", "gzip",
                                  "close_after_headers", "403", "404_version", "redirect_307_bad"])
def test_hostile_manifest_answer_is_refused_or_right(case, via, servers, tmp_path):
    """The manifest document itself answered wrongly: loaded intact, or refused with nothing saved."""
    server, name = servers
    cache_dir = tmp_path / "cache"
    options = dict(transfer_config=TransferConfig(**TRANSFER), progress=False)
    if via == "s3":
        cache = CloudCache.from_s3(cache_dir, server.bucket, PROJECT, endpoint_url=server.url,
                                   s3_options=REMOTE_OPTIONS, **options)
    else:
        cache = CloudCache.from_http(cache_dir, server.bucket_url, PROJECT, http_options=REMOTE_OPTIONS, **options)
    server.case, server.hit_manifests = case, True
    started = time.monotonic()
    try:
        outcome = _outcome(lambda: cache.load_manifest(name))
    finally:
        server.case, server.hit_manifests = "ok", False
    assert time.monotonic() - started < TIME_BOUND
    if outcome == OK:
        assert cache.manifest.data_files["0"].file_hash == hashlib.blake2b(BIG).hexdigest()
    else:
        assert isinstance(outcome, (ManifestParseError, ManifestNotFoundError, RemoteError, DownloadError)), repr(outcome)
        assert not (cache_dir / "manifests").exists() or not any((cache_dir / "manifests").iterdir())


def _small_nwb() -> bytes:
    import datetime
    import io

    import h5py
    import numpy as np
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    nwb = NWBFile(session_description="hostile", identifier="1", session_start_time=datetime.datetime(
        2020, 1, 1, tzinfo=datetime.timezone.utc))
    nwb.add_acquisition(TimeSeries(name="signal", data=np.arange(60_000, dtype="float32"), unit="V", rate=10.0))
    buf = io.BytesIO()
    with NWBHDF5IO(file=h5py.File(buf, "w"), mode="w") as out:
        out.write(nwb)
    return buf.getvalue()


@pytest.fixture(scope="module")
def nwb_server():
    with HostileServer(bucket="hostile-nwb") as server:
        name, _doc = serve_release(server, PROJECT, {"sessions/1/session.nwb": _small_nwb()})
        yield server, name


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["ok", "403", "404_version", "drip", "wrong_version", "html_200", "endless",
                                  "close_after_headers", "redirect_307_bad"])
def test_streamed_session_reports_the_server_not_a_broken_file(case, nwb_server, tmp_path):
    """A session read over a stream whose server turns hostile after the first block: the error says
    what the server did (the hierarchy's remote, download or integrity error), not "not an NWB file"."""
    from releasecache.errors import NwbLayoutError
    from releasecache.vbn.nwb import BehaviorSession

    server, name = nwb_server
    cache = _cache(tmp_path, server, name, "http")
    fobj = open_data(cache, "0", max_attempts=2, block_size=4096, max_readahead=8192)
    server.case = case
    started = time.monotonic()
    try:
        session = BehaviorSession(fobj)
        outcome = _outcome(lambda: session._handle.nwbfile.acquisition["signal"].data[:])
    finally:
        server.case = "ok"
        fobj.close()
    assert time.monotonic() - started < TIME_BOUND
    if case == "ok":
        assert outcome == OK
    else:
        assert isinstance(outcome, (DownloadError, IntegrityError, RemoteError)), repr(outcome)
        assert not isinstance(outcome, NwbLayoutError), repr(outcome)
