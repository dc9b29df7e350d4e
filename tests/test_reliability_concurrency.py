"""Many processes, crashes and faults against one cache directory.

Everything runs against the loopback S3 server through the fault-injecting
proxy, with real processes (spawned, or killed with SIGKILL) and real locks.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import signal
import threading
import time

import pytest

from releasecache.errors import LockTimeoutError
from releasecache.store.locks import BlobLock, read_owner
from tests.support.proxy import Fault, default_match
from tests.support.workers import fetch_and_verify

from ._reliability import (  # noqa: F401  (bulk_bucket is a fixture)
    FAST_RETRY,
    Worker,
    blake,
    bulk_bucket,
    load,
    open_cache,
    settings,
    view_problems,
)

ONE_PART = {"part_size": 1024 * 1024, "max_parts_in_flight": 4, **FAST_RETRY}


def test_eight_processes_fill_one_cache_and_fetch_each_object_once(tmp_path, toy_bucket, proxy):
    """8 spawned processes fetch overlapping sets (three versions, shuffled) into one cache at once.

    Every file is verified by each process, and the proxy sees exactly the GETs one
    download of each distinct blob needs: one per file (parts are 1 MiB), two for the
    empty file (a ranged GET answered 416, then a plain GET).
    """
    proxy.add(Fault("delay", stall_seconds=0.03))  # widen the windows in which processes collide
    cache_dir = tmp_path / "shared"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(8)
    queue = ctx.Queue()
    procs = []
    manifests = {m.name: m for m in toy_bucket.manifests}
    for i in range(8):
        name = toy_bucket.names[i % 3]
        rng = random.Random(i)
        ids = list(manifests[name].data_files)
        rng.shuffle(ids)
        meta = list(manifests[name].metadata_files)
        rng.shuffle(meta)
        s = settings(cache_dir, toy_bucket, proxy.url, name, ids=ids, metadata=meta, transfer=ONE_PART,
                     prefetch=(i % 2 == 0), max_files=4)
        p = ctx.Process(target=_run_and_put, args=(s, barrier, queue))
        p.start()
        procs.append(p)
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert [r["errors"] for r in results] == [[]] * 8
    assert sum(r["files"] for r in results) > 8 * 8

    # Which objects (key, version id) hold each blob, over the three versions.
    objects: dict[str, set[tuple[str, str]]] = {}
    sizes: dict[str, int] = {}
    for m in toy_bucket.manifests:
        for e in m.entries():
            objects.setdefault(e.file_hash, set()).add((f"/{e.bucket}/{e.key}", e.version_id))
    cache = open_cache(cache_dir, toy_bucket, manifest=toy_bucket.names[0])
    for h in objects:
        sizes[h] = cache.store.blob_path(h).stat().st_size  # every blob is present
    gets = {(path, version): n for (method, path, version), n in proxy.stats.versions.items()
            if method == "GET" and default_match(method, path, {})}
    for h, objs in objects.items():
        expected = 2 if sizes[h] == 0 else math.ceil(sizes[h] / ONE_PART["part_size"])
        got = sum(gets.get(o, 0) for o in objs)
        assert got == expected, f"blob {h[:12]} ({sorted(objs)}) fetched with {got} GETs, expected {expected}"
    assert cache.verify(mode="full").ok


def _run_and_put(s, barrier, queue):  # runs in a spawned process
    queue.put(fetch_and_verify(s, barrier))


def test_sigkill_at_20_random_moments_never_leaves_a_wrong_view(tmp_path, bulk_bucket, proxy):
    """A prefetch is killed with SIGKILL at 20 random moments and restarted each time.

    After every kill, each view path of the release is either absent or has exactly
    the manifest's bytes, and every blob's content matches its name; the last run
    completes and a full verify passes. Each GET is delayed, and each kill comes a
    random 1-3 GETs (plus a random fraction of a GET) after the restart, so kills land
    in the middle of downloads, publishes and linking.
    """
    proxy.add(Fault("delay", stall_seconds=0.08))
    cache_dir = tmp_path / "killed"
    s = settings(cache_dir, bulk_bucket, proxy.url, bulk_bucket.names[0], action="prefetch_forever",
                 transfer={"part_size": 64 * 1024, "max_parts_in_flight": 2, "window": 4, **FAST_RETRY}, max_files=2)
    rng = random.Random(2024)
    checker = open_cache(cache_dir, bulk_bucket, manifest=bulk_bucket.names[0])
    total = sum(1 for _ in checker.manifest.entries())
    mid_download = 0
    for round_ in range(20):
        worker = Worker(s)
        assert worker.wait_for_line("ready"), worker.stderr()[-3000:]
        # A random moment measured in progress: after 1-3 more object GETs reach the server,
        # plus a random fraction of a GET's time (so kills land before, during and after bodies,
        # hashing, publishing and linking).
        target = proxy.stats.gets() + rng.randint(1, 3)
        deadline = time.monotonic() + 30
        while proxy.stats.gets() < target and worker.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.12))
        finished = any("done" in line for line in worker.lines)
        worker.proc.send_signal(signal.SIGKILL)
        worker.finish(30)
        assert worker.proc.returncode in (-signal.SIGKILL, 0), worker.stderr()[-3000:]
        assert view_problems(checker) == [], f"after kill {round_ + 1}"
        present = sum(1 for e in checker.manifest.entries()
                      if os.path.exists(checker.store.view_path(checker.manifest.view_dir_name, e.relative_path)))
        if not finished and present < total:
            mid_download += 1
    assert mid_download >= 15, f"only {mid_download} of 20 kills hit an unfinished download; the test lost its teeth"
    final = Worker(s)
    lines = final.finish(180)
    assert "done" in lines, (lines, final.stderr()[-3000:])
    assert view_problems(checker) == []
    report = checker.verify(checker.manifest.name, mode="full")
    assert report.ok and report.checked == total, report.summary()
    for entry in checker.manifest.entries():
        path = checker.store.view_path(checker.manifest.view_dir_name, entry.relative_path)
        assert blake(path) == entry.file_hash


class _EveryTenth:
    """Fail exactly every 10th object GET, rotating through the fault kinds."""

    def __init__(self, kinds):
        self.kinds = kinds
        self.count = 0
        self.lock = threading.Lock()
        self.current = -1

    def matcher(self, index):
        def match(method, path, headers):
            if not default_match(method, path, headers):
                return False
            if index == 0:  # the first rule counts each request once
                with self.lock:
                    self.count += 1
                    self.current = (self.count // 10) % len(self.kinds) if self.count % 10 == 0 else -1
            return self.current == index
        return match


def test_ten_percent_of_requests_failing_every_file_completes(tmp_path, bulk_bucket, toy_bucket, proxy):
    """Every 10th object GET fails: reset, 500, 503 SlowDown with Retry-After, truncated body, or a stall
    longer than the 1 s read timeout. Both releases (all versions) complete and verify."""
    kinds = ["reset", "500", "503", "truncate", "stall"]
    sched = _EveryTenth(kinds)
    for i, kind in enumerate(kinds):
        proxy.add(Fault(kind, match=sched.matcher(i), retry_after="1" if kind == "503" else None, stall_seconds=3))
    s3 = {"read_timeout": 1, "connect_timeout": 2}
    for bucket in (bulk_bucket, toy_bucket):
        cache = open_cache(tmp_path / bucket.bucket, bucket, proxy.url, s3_options=s3,
                           transfer={"max_attempts": 8})
        for name in bucket.names:
            load(cache, name)
            report = cache.prefetch(progress=False, max_files=4)
            assert report.ok, report.summary()
            assert cache.verify(name, mode="full").ok
            for entry in cache.manifest.entries():
                assert blake(cache.store.view_path(cache.manifest.view_dir_name, entry.relative_path)) == entry.file_hash
    gets = proxy.stats.gets()
    faults = sum(proxy.stats.faults.values())
    assert gets >= 100 and faults == sched.count // 10, (gets, dict(proxy.stats.faults))
    assert set(proxy.stats.faults) == set(kinds), dict(proxy.stats.faults)


def test_gc_racing_downloads_never_deletes_what_is_being_written(tmp_path, bulk_bucket, proxy):
    """A gc loop in another process keeps only 0.2.0 while this process downloads 0.1.0 slowly.

    gc finds blobs locked by the download (reported busy) and leaves them; every
    download completes and verifies; nothing 0.2.0 needs is ever deleted.
    """
    v1, v2 = bulk_bucket.names
    cache_dir = tmp_path / "race"
    cache = open_cache(cache_dir, bulk_bucket, proxy.url, manifest=v2)
    assert cache.prefetch(progress=False).ok
    load_v1 = open_cache(cache_dir, bulk_bucket, proxy.url, manifest=v1)
    proxy.add(Fault("delay", stall_seconds=0.05))
    stop = tmp_path / "stop-gc"
    gc_worker = Worker(settings(cache_dir, bulk_bucket, proxy.url, None, action="gc_loop", keep=[v2], window_days=0,
                                stop_file=str(stop), pause=0.01))
    try:
        assert gc_worker.wait_for_line("ready"), gc_worker.stderr()[-3000:]
        paths = {}
        errors = []
        for entry in load_v1.manifest.entries():  # one by one, so each ensure() is checked as it returns
            # gc may delete a finished, unlocked 0.1.0 blob (and drops 0.1.0's view) the moment
            # ensure() returns, so read under a read lease, which gc respects, and hash the blob
            try:
                with load_v1.reading(entry):
                    blob = load_v1.store.find_blob(entry.file_hash)
                    paths[entry.relative_path] = blob is not None and blake(blob) == entry.file_hash
            except Exception as exc:
                errors.append(f"{entry.relative_path}: {type(exc).__name__}: {exc}")
                continue
        assert errors == []
        assert all(paths.values()), paths
    finally:
        stop.touch()
    summary = json.loads(gc_worker.finish(60)[-1])
    assert summary["errors"] == [] and summary["rounds"] > 3
    assert summary["busy"], "gc never met a blob being written; the race did not happen"
    assert summary["deleted"] > 0  # it did delete 0.1.0's blobs once they were finished and unlocked
    report = cache.verify(v2, mode="full")
    assert report.ok, report.summary()
    # With gc stopped, 0.1.0 completes again and verifies.
    assert load_v1.prefetch(progress=False).ok
    assert load_v1.verify(v1, mode="full").ok


def test_lock_wait_names_the_holder_and_times_out_clearly(tmp_path, toy_bucket, caplog):
    """A second process waiting for a blob logs who holds it; a timeout names the holder."""
    cache = open_cache(tmp_path / "c", toy_bucket, manifest=toy_bucket.names[0], lock_timeout=1.0)
    entry = cache.data_entry(1)
    lock_path = cache.store.locks_dir / f"{entry.file_hash}.lock"
    holder = Worker({"action": "hold_lock", "lock": str(lock_path), "kind": "posix", "seconds": 30})
    try:
        assert holder.wait_for_line("held"), holder.stderr()[-2000:]
        caplog.set_level("INFO", logger="releasecache")
        with pytest.raises(LockTimeoutError) as info:
            cache.download_data(1)
        message = str(info.value)
        assert f"pid {holder.proc.pid} on host" in message and "running" in message
        assert any(f"pid {holder.proc.pid}" in r.getMessage() and "waiting for" in r.getMessage()
                   for r in caplog.records)
        assert not cache.store.has_blob(entry.file_hash)
    finally:
        holder.proc.kill()
        holder.finish(30)
    # The holder died: its POSIX lock died with it, so the download goes ahead at once.
    assert blake(cache.download_data(1)) == entry.file_hash


def test_soft_lock_of_a_killed_process_is_broken(tmp_path):
    """lock_kind='soft': the marker of a SIGKILLed holder on this host does not block anyone."""
    lock_path, owner = tmp_path / "x.lock", tmp_path / "x.owner"
    holder = Worker({"action": "hold_lock", "lock": str(lock_path), "kind": "soft", "seconds": 60})
    assert holder.wait_for_line("held"), holder.stderr()[-2000:]
    assert read_owner(owner).pid == holder.proc.pid
    holder.proc.send_signal(signal.SIGKILL)
    holder.finish(30)
    assert lock_path.with_suffix(".lease").exists()  # a soft lock outlives its process...
    lock = BlobLock(lock_path, owner, kind="soft", lease=3600)
    assert lock.acquire(timeout=30)  # ...but is broken because its pid is gone
    assert read_owner(owner).pid == os.getpid()
    lock.release()
    assert not owner.exists()


def test_soft_lock_lease_breaks_a_silent_holder_on_another_host(tmp_path, caplog):
    """A soft lock whose owner is on another host (so its pid cannot be checked) is broken once
    its owner record stays unchanged for a whole lease."""
    lock_path, owner = tmp_path / "y.lock", tmp_path / "y.owner"
    lock_path.with_suffix(".lease").write_text("4242\nsome-other-host\n")
    owner.write_text(json.dumps({"pid": 4242, "host": "some-other-host", "since": time.time() - 5, "kind": "soft"}))
    caplog.set_level("INFO", logger="releasecache")
    lock = BlobLock(lock_path, owner, kind="soft", lease=1.0)
    assert lock.acquire(timeout=30)
    lock.release()
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "pid 4242 on host some-other-host" in text and "missed its heartbeat" in text


def test_soft_lock_heartbeat_keeps_a_live_holder(tmp_path):
    """A live soft-lock holder refreshes its lease, so a waiter with a short lease does not break it:
    the waiter gets the lock only after the holder released it (the holder writes a file first)."""
    lock_path, owner = tmp_path / "z.lock", tmp_path / "z.owner"
    released = tmp_path / "released"
    holder = Worker({"action": "hold_lock", "lock": str(lock_path), "kind": "soft", "seconds": 2.5,
                     "lease": 0.4, "mark_before_release": str(released)})
    assert holder.wait_for_line("held"), holder.stderr()[-2000:]
    lock = BlobLock(lock_path, owner, kind="soft", lease=0.4)
    assert lock.acquire(timeout=60)
    try:
        assert released.exists(), "the waiter broke the lock of a live holder"
    finally:
        lock.release()
    holder.finish(30)
