"""Downloads under attack: retries, resume after a kill, integrity, bulk failure isolation.

Every test talks to the loopback S3 server through a real fault-injecting proxy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from releasecache import CloudCache, OutdatedManifestWarning, TransferConfig
from releasecache.errors import DownloadError, IntegrityError, RemoteNotFoundError
from tests.support.fixtures.toy import PROJECT
from tests.support.proxy import Fault, wait_for
from tests.support.workers import download_one_script

from .conftest import SMALL_PARTS

BIG = "sessions/100/probe_A.dat"  # 300,000 bytes = 5 parts of 64 KiB


def _cache(tmp_path, bucket, endpoint, name="cache", read_timeout=30.0, **config):
    return CloudCache.from_s3(tmp_path / name, bucket.bucket, PROJECT, endpoint_url=endpoint,
                              transfer_config=TransferConfig(**{**SMALL_PARTS, **config}), progress=False,
                              s3_options={"read_timeout": read_timeout, "connect_timeout": 2})


def _load_first(cache, bucket):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        cache.load_manifest(bucket.names[0])


def _on(path_part, range_start=None):
    def match(method, path, headers):
        if method != "GET" or path_part not in path:
            return False
        return range_start is None or headers.get("Range", "").startswith(f"bytes={range_start}-")
    return match


@pytest.mark.parametrize("kind", ["500", "503", "reset", "truncate", "extra"])
def test_transient_faults_are_retried(tmp_path, toy_bucket, proxy, toy_release, kind):
    fault = proxy.add(Fault(kind, match=_on(BIG), times=3, retry_after="0" if kind == "503" else None))
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    path = cache.download_data(1)
    assert path.read_bytes() == (toy_release["0.1.0"] / PROJECT / BIG).read_bytes()
    assert fault.applied == 3 and cache.transfer.stats["retries"] >= 3


def test_stalled_connection_is_abandoned_and_retried(tmp_path, toy_bucket, proxy):
    fault = proxy.add(Fault("stall", match=_on(BIG, 65536), times=1, stall_seconds=30))
    cache = _cache(tmp_path, toy_bucket, proxy.url, read_timeout=1.0)
    _load_first(cache, toy_bucket)
    started = time.monotonic()
    path = cache.download_data(1)
    assert len(path.read_bytes()) == 300_000 and fault.applied == 1
    assert time.monotonic() - started < 25  # it did not sit out the 30 s stall


def test_retry_after_is_honoured(tmp_path, toy_bucket, proxy):
    proxy.add(Fault("503", match=_on("session_102"), times=1, retry_after="1"))
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    started = time.monotonic()
    cache.download_data(3)
    assert time.monotonic() - started >= 0.9  # backoff_base is 0.01 s: only Retry-After explains the wait


def test_final_error_names_file_attempts_and_cause(tmp_path, toy_bucket, proxy):
    proxy.add(Fault("500", match=_on("session_102")))
    cache = _cache(tmp_path, toy_bucket, proxy.url, max_attempts=3)
    _load_first(cache, toy_bucket)
    with pytest.raises(DownloadError) as info:
        cache.download_data(3)
    message = str(info.value)
    assert "sessions/102/session_102.dat" in message and "3 attempts" in message and "InternalError" in message
    assert not cache.data_path(3)["exists"]
    assert not (cache.cache_dir / f"{PROJECT}-0.1.0" / "sessions/102/session_102.dat").exists()


def test_corrupt_bytes_are_refetched_and_never_published(tmp_path, toy_bucket, proxy):
    fault = proxy.add(Fault("corrupt", match=_on("session_101"), times=1))
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    path = cache.download_data(2)  # first copy fails its hash, the second is good
    assert fault.applied == 1 and path.resolve().name == cache.data_entry(2).file_hash


def test_always_corrupt_raises_integrity_error_and_leaves_nothing(tmp_path, toy_bucket, proxy):
    proxy.add(Fault("corrupt", match=_on("session_101")))
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    with pytest.raises(IntegrityError, match="did not match"):
        cache.download_data(2)
    assert not cache.data_path(2)["exists"]
    assert not cache.data_path(2)["local_path"].exists() and not cache.data_path(2)["local_path"].is_symlink()
    assert list((cache.cache_dir / ".partial").iterdir()) == []


def test_wrong_version_is_refused(tmp_path, toy_bucket, proxy):
    proxy.add(Fault("version", match=_on("session_101")))
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    with pytest.raises(IntegrityError, match="server sent version"):
        cache.download_data(2)
    assert not cache.data_path(2)["exists"]


def test_one_bad_file_does_not_stop_a_prefetch(tmp_path, toy_bucket, proxy):
    proxy.add(Fault("404", match=_on("session_102")))
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    report = cache.prefetch(progress=False)
    assert list(report.failed) == ["sessions/102/session_102.dat"]
    assert "NoSuchKey" in report.failed["sessions/102/session_102.dat"]
    assert len(report.fetched) == 9 and not report.ok
    assert all(cache.is_cached(e) for e in cache.manifest.entries() if e.relative_path != "sessions/102/session_102.dat")
    assert "FAILED sessions/102/session_102.dat" in report.summary()


def test_not_found_is_not_retried(tmp_path, toy_bucket, proxy):
    proxy.add(Fault("404", match=_on("session_102")))
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    with pytest.raises(RemoteNotFoundError):
        cache.download_data(3)
    assert proxy.stats.gets("session_102") == 1


KILLABLE = download_one_script(progress=False)


def test_resume_after_kill_fetches_only_missing_ranges(tmp_path, toy_bucket, proxy, toy_release):
    # Part 3 (bytes 196608-262143) hangs; parts 0, 1, 2 and 4 complete and are recorded.
    proxy.add(Fault("stall", match=_on(BIG, 196608), stall_seconds=60))
    cache_dir = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, "-c", KILLABLE, str(cache_dir), toy_bucket.bucket, PROJECT,
                              proxy.url, toy_bucket.names[0]])
    sidecars = cache_dir / ".partial"

    def recorded() -> list:
        for sidecar in sidecars.glob("*.json") if sidecars.is_dir() else []:
            try:
                return json.loads(sidecar.read_text())["done"]
            except (ValueError, OSError):
                return []
        return []

    try:
        assert wait_for(lambda: recorded() == [[0, 196608], [262144, 300000]], timeout=60), recorded()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    proxy.clear()
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    view = cache_dir / f"{PROJECT}-0.1.0" / BIG
    assert not view.exists()  # nothing visible before verification
    path = cache.download_data(1)
    assert path.read_bytes() == (toy_release["0.1.0"] / PROJECT / BIG).read_bytes()
    gets = {path for (method, path), n in proxy.stats.requests.items() if method == "GET" and "probe_A" in path}
    assert proxy.stats.gets("probe_A") == 1, gets  # only the missing part
    assert not any(sidecars.iterdir())


def test_sidecar_that_no_longer_matches_restarts_cleanly(tmp_path, toy_bucket, proxy, toy_release):
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    entry = cache.data_entry(1)
    partial = cache.store.partial_path(entry.file_hash)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 300_000)
    cache.store.sidecar_path(entry.file_hash).write_text(json.dumps({
        "format": 1, "url": entry.url, "version_id": "some-older-version", "file_hash": entry.file_hash,
        "size": 300_000, "done": [[0, 300_000]]}))
    path = cache.download_data(1)
    assert path.read_bytes() == (toy_release["0.1.0"] / PROJECT / BIG).read_bytes()
    assert proxy.stats.gets("probe_A") == 5  # all five parts fetched again


def test_lying_sidecar_is_caught_by_the_full_hash(tmp_path, toy_bucket, proxy, toy_release):
    cache = _cache(tmp_path, toy_bucket, proxy.url)
    _load_first(cache, toy_bucket)
    entry = cache.data_entry(1)
    partial = cache.store.partial_path(entry.file_hash)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 300_000)  # claims to be complete, but is zeros
    cache.store.sidecar_path(entry.file_hash).write_text(json.dumps({
        "format": 1, "url": entry.url, "version_id": entry.version_id, "file_hash": entry.file_hash,
        "size": 300_000, "done": [[0, 300_000]]}))
    path = cache.download_data(1)
    assert path.read_bytes() == (toy_release["0.1.0"] / PROJECT / BIG).read_bytes()


def test_two_processes_one_download(tmp_path, toy_bucket, proxy):
    # Slow the big file down so that the second process surely arrives while the first holds the lock.
    proxy.add(Fault("stall", match=_on(BIG, 65536), times=1, stall_seconds=2))
    cache_dir = tmp_path / "shared"
    script = KILLABLE + "\nprint(cache.transfer.stats['requests'])\n"
    args = [str(cache_dir), toy_bucket.bucket, PROJECT, proxy.url, toy_bucket.names[0]]
    env = dict(os.environ)
    first = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, env=env)
    second = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, env=env)
    assert first.wait(60) == 0 and second.wait(60) == 0
    # 5 parts + 1 retry of the stalled part (the stall ends the connection after 2 s), by one process only.
    assert proxy.stats.gets("probe_A") <= 6
    counts = sorted(int(p.stdout.read()) for p in (first, second))
    assert counts[0] == 0  # the waiting process made no data request at all


@pytest.mark.timeout(60)
@pytest.mark.parametrize("slots", [1, 2])
def test_tight_memory_budget_never_deadlocks(make_cache, toy_bucket, toy_release, slots):
    """With only one or two parts (and part buffers) for the whole cache, eight files at once still all complete."""
    cache = make_cache(max_buffered_parts=slots, max_parts=slots)
    _load_first(cache, toy_bucket)
    report = cache.prefetch(progress=False, max_files=8)
    assert report.ok and len(report.fetched) == 10
    assert cache.cache_dir.joinpath(f"{PROJECT}-0.1.0", BIG).read_bytes() == (toy_release["0.1.0"] / PROJECT / BIG).read_bytes()
    assert cache.transfer._slots._value == slots  # every slot was given back
    assert cache.transfer._part_buffers == 0  # and every part buffer
    assert cache.transfer._free == [] and cache.transfer._free_reads == []  # an idle cache holds no buffers
