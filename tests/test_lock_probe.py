"""Locks that notice when they cannot work (issue 11, item 2).

A FUSE passthrough filesystem made in the test (:mod:`tests.support.nolockfs`)
answers every ``flock``/``fcntl`` request itself: ``ignore`` grants every lock
to everybody (two processes both hold "the" exclusive lock, as NFS ``nolock``
across hosts), ``enolck`` refuses every lock with ``ENOLCK`` (NFSv3 without
``lockd``). A cache opened there with the default ``lock_kind="auto"`` probes
the filesystem, warns once naming it, and falls back to lease-based soft locks
that really exclude; a lease left by a SIGKILLed holder is taken over within the
lease time.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import signal
import time
import warnings

import pytest

from releasecache.errors import LockFallbackWarning
from releasecache.store.locks import BlobLock, choose_lock_kind, probe_locks, read_owner
from tests.support import nolockfs
from tests.support.proxy import Fault, default_match
from tests.support.workers import fetch_and_verify

from ._reliability import FAST_RETRY, Worker, open_cache, settings

ONE_PART = {"part_size": 1024 * 1024, "max_parts_in_flight": 4, **FAST_RETRY}


def _require_fuse() -> None:
    why = nolockfs.available()
    if why is not None and not os.path.exists("/dev/fuse"):
        pytest.skip(f"this machine cannot mount FUSE filesystems: {why}")
    assert why is None, why  # /dev/fuse exists: a missing library is a setup bug, not a reason to skip


@pytest.fixture(params=nolockfs.MODES)
def nolock_dir(request, tmp_path):
    """A directory on a freshly mounted nolockfs (one per lock behaviour)."""
    _require_fuse()
    with nolockfs.NoLockMount(tmp_path / "backing", tmp_path / "mnt", request.param) as mount:
        mount.mode = request.param
        yield mount


def test_local_disk_locks_are_probed_once_and_kept(tmp_path):
    """On the local disk the probe finds working locks: posix, no warning, the result recorded once."""
    locks = tmp_path / "locks"
    locks.mkdir()
    found = probe_locks(locks)
    assert found.excludes and found.reason == "", found
    with warnings.catch_warnings():
        warnings.simplefilter("error", LockFallbackWarning)
        assert choose_lock_kind(locks) == "posix"
    records = list(locks.glob("probe-*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["excludes"] is True
    assert list(locks.glob(".probe-*")) == []  # the probe's own file is gone
    assert choose_lock_kind(locks, "soft") == "soft"  # an explicit choice is never second-guessed


def test_probe_sees_that_locks_do_not_exclude(nolock_dir):
    """Both behaviours are detected by the two-process probe, with a reason naming what failed."""
    locks = nolock_dir.mountpoint / ".locks"
    locks.mkdir()
    found = probe_locks(locks)
    assert not found.excludes
    assert "fuse.nolockfs" in found.filesystem and str(nolock_dir.mountpoint) in found.filesystem
    expected = "second process got the same exclusive flock" if nolock_dir.mode == "ignore" else "No locks available"
    assert expected in found.reason
    # The plain OS lock really is useless there (so the probe is right, not just cautious):
    a = BlobLock(locks / "x.lock", locks / "x.owner", kind="posix")
    if nolock_dir.mode == "ignore":
        b = BlobLock(locks / "x.lock", locks / "x.owner", kind="posix")
        holder = Worker({"action": "hold_lock", "lock": str(locks / "x.lock"), "kind": "posix", "seconds": 30})
        try:
            assert holder.wait_for_line("held"), holder.stderr()[-2000:]
            assert b.acquire(blocking=False), "a second process got the 'exclusive' lock: nothing is excluded"
            b.release()
        finally:
            holder.proc.kill()
            holder.finish(30)
    else:
        with pytest.raises(OSError, match="lock_kind='soft'"):
            a.acquire(timeout=1)


def test_cache_on_a_lockless_filesystem_warns_once_and_fetches_each_blob_once(nolock_dir, toy_bucket, proxy):
    """Four processes fill one cache on the lockless mount at once; each blob is fetched exactly once.

    With the default ``lock_kind``, every process falls back to soft locks (their markers appear as
    ``.locks/<hash>.lease``); the test process itself gets exactly one LockFallbackWarning naming
    the filesystem for a whole prefetch.
    """
    proxy.add(Fault("delay", stall_seconds=0.03))
    cache_dir = nolock_dir.mountpoint / "cache"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = open_cache(cache_dir, toy_bucket, proxy.url, toy_bucket.names[0], transfer=ONE_PART)
        report = cache.prefetch(file_ids=list(cache.manifest.data_files)[:3], progress=False)
    assert report.ok, report.summary()
    fallbacks = [w for w in caught if issubclass(w.category, LockFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    assert "fuse.nolockfs" in str(fallbacks[0].message) and "soft locks" in str(fallbacks[0].message)

    ctx = multiprocessing.get_context("spawn")
    barrier, queue, procs = ctx.Barrier(4), ctx.Queue(), []
    manifest = {m.name: m for m in toy_bucket.manifests}[toy_bucket.names[1]]
    for i in range(4):
        ids = list(manifest.data_files)
        random.Random(i).shuffle(ids)
        s = settings(cache_dir, toy_bucket, proxy.url, toy_bucket.names[1], ids=ids,
                     metadata=list(manifest.metadata_files), transfer=ONE_PART, prefetch=(i % 2 == 0))
        p = ctx.Process(target=_run_and_put, args=(s, barrier, queue))
        p.start()
        procs.append(p)
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert [r["errors"] for r in results] == [[]] * 4
    objects: dict[str, set[tuple[str, str]]] = {}
    for m in (manifest, {m.name: m for m in toy_bucket.manifests}[toy_bucket.names[0]]):
        for e in m.entries():
            objects.setdefault(e.file_hash, set()).add((f"/{e.bucket}/{e.key}", e.version_id))
    gets = {(path, version): n for (method, path, version), n in proxy.stats.versions.items()
            if method == "GET" and default_match(method, path, {})}
    for e in manifest.entries():
        size = cache.store.blob_path(e.file_hash).stat().st_size
        expected = 2 if size == 0 else math.ceil(size / ONE_PART["part_size"])
        got = sum(gets.get(o, 0) for o in objects[e.file_hash])
        assert got == expected, f"{e.relative_path}: {got} GETs, expected {expected} (two processes downloaded it)"
    assert list((cache_dir / ".locks").glob("*.lease")) == []  # every soft lock was released
    assert cache.verify(mode="full").ok


def _run_and_put(s, barrier, queue):  # runs in a spawned process
    queue.put(fetch_and_verify(s, barrier))


@pytest.mark.parametrize("nolock_dir, where", [("ignore", "this host"), ("enolck", "this host"),
                                               ("ignore", "another host")], indirect=["nolock_dir"])
def test_lease_of_a_sigkilled_holder_is_taken_over_within_the_lease(nolock_dir, where):
    """A holder SIGKILLed (as by the OOM killer) while holding an auto-chosen soft lock never blocks
    anyone for long: on this host its dead pid is noticed at once; as seen from another host (its
    pid cannot be checked) the lease runs out after ``lease`` seconds without a heartbeat."""
    locks = nolock_dir.mountpoint / ".locks"
    locks.mkdir()
    lease = 2.0
    holder = Worker({"action": "hold_lock", "lock": str(locks / "b.lock"), "lease": lease, "seconds": 120})
    assert holder.wait_for_line("held"), holder.stderr()[-2000:]
    owner = read_owner(locks / "b.owner")
    assert owner is not None and owner.pid == holder.proc.pid and owner.kind == "soft"
    holder.proc.send_signal(signal.SIGKILL)
    holder.finish(30)
    assert (locks / "b.lease").exists()  # the marker outlives its holder
    if where == "another host":
        record = json.loads((locks / "b.owner").read_text())
        (locks / "b.owner").write_text(json.dumps({**record, "host": "node-that-died"}))
        (locks / "b.lease").write_text(f"{record['pid']}\nnode-that-died\n")  # the marker names its host too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LockFallbackWarning)
        waiter = BlobLock(locks / "b.lock", locks / "b.owner", lease=lease)
    started = time.monotonic()
    assert waiter.acquire(timeout=60)
    waited = time.monotonic() - started
    try:
        assert waiter.kind == "soft"
        if where == "this host":
            assert waited < lease, f"waited {waited:.1f} s for a lock whose holder is known dead"
        else:
            assert lease <= waited < 3 * lease, f"took over after {waited:.1f} s with a {lease} s lease"
        assert read_owner(locks / "b.owner").pid == os.getpid()
    finally:
        waiter.release()
