"""The size budget: LRU eviction that never touches pinned, locked, leased or in-use blobs."""

from __future__ import annotations

import os
import threading
import warnings

import pytest

from releasecache.cache.budget import evict, parse_size, pin, pinned, read_lease, read_usage, touch_usage, unpin
from releasecache.errors import OutdatedManifestWarning


def test_parse_size():
    assert parse_size("400GB") == 400 * 10**9
    assert parse_size("1.5 TiB") == int(1.5 * 2**40)
    assert parse_size("500M") == 500 * 10**6 and parse_size(123) == 123 and parse_size("7") == 7
    for bad in ("lots", "5 parsecs", "-3GB", -1):
        with pytest.raises(ValueError):
            parse_size(bad)


def _load(cache, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        return cache.load_manifest(name)


def _fill(cache, names):
    """v1 fully downloaded, used long ago; v2's session 104 only; v3 current with its metadata."""
    v1 = _load(cache, names[0])
    cache.prefetch(progress=False)
    v2 = _load(cache, names[1])
    cache.download_data("5")
    v3 = _load(cache, names[2])
    cache.prefetch(file_ids=[], progress=False)
    store = cache.store
    touch_usage(store, names[0], now=1_000_000.0, interval=0)
    touch_usage(store, names[1], now=2_000_000.0, interval=0)
    touch_usage(store, names[2], interval=0)
    return v1, v2, v3


def _blob_bytes(store):
    return sum(os.lstat(p).st_size for _, p in store.iter_blobs())


def test_lru_order_views_and_dry_run(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "c")
    v1, v2, v3 = _fill(cache, toy_bucket.names)
    store = cache.store
    total = _blob_bytes(store)
    only_v1 = {e.file_hash for e in v1.entries()} - {e.file_hash for e in v2.entries()} - \
        {e.file_hash for e in v3.entries()}
    only_v1 &= {h for h, _ in store.iter_blobs()}
    budget = total - 1

    dry = evict(store, budget, pinned_names=[v3.name], dry_run=True)
    assert dry.evicted and dry.fits and _blob_bytes(store) == total  # nothing removed
    assert dry.evicted[0].manifests == [v1.name]  # least recently used manifest first
    assert "would evict" in dry.summary()

    report = evict(store, budget, pinned_names=[v3.name])
    assert [c.file_hash for c in report.evicted] == [c.file_hash for c in dry.evicted]
    assert report.fits and _blob_bytes(store) <= budget
    gone = {c.file_hash for c in report.evicted}
    assert gone <= only_v1
    # The view links of evicted blobs went with them; no view link dangles anywhere.
    assert report.removed_links and all(l.startswith(v1.view_dir_name) for l in report.removed_links)
    for dirpath, _, names in os.walk(tmp_path / "c" / v1.view_dir_name):
        for name in names:
            assert os.path.exists(os.path.join(dirpath, name))


def test_pins_current_manifest_locks_and_leases(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "c")
    v1, v2, v3 = _fill(cache, toy_bucket.names)
    store = cache.store
    pin(store, v1.name)
    assert pinned(store) == [v1.name]
    protected = {e.file_hash for m in (v1, v3) for e in m.entries()}
    report = evict(store, 0, pinned_names=[v3.name])
    assert not report.fits and "cannot be met" in report.summary()
    assert not {c.file_hash for c in report.evicted} & protected
    left = {h for h, _ in store.iter_blobs()}
    assert left == protected & left and left  # only v2's own blob went
    assert unpin(store, v1.name) and not unpin(store, v1.name)

    # A locked blob and a blob under a read lease are skipped; released, they go.
    v1_blobs = sorted(h for h in left if h not in {e.file_hash for e in v3.entries()})
    locked, leased = v1_blobs[0], v1_blobs[1]
    held = threading.Event()
    release = threading.Event()

    def hold_lock():
        with store.lock(locked):
            held.set()
            release.wait(10)

    worker = threading.Thread(target=hold_lock)
    worker.start()
    held.wait(10)
    try:
        with read_lease(store.blob_path(leased)):
            busy = evict(store, 0, pinned_names=[v3.name])
        assert set(busy.busy) == {locked, leased}
        assert store.has_blob(locked) and store.has_blob(leased)
    finally:
        release.set()
        worker.join()
    final = evict(store, 0, pinned_names=[v3.name], protect=[leased])
    assert locked in {c.file_hash for c in final.evicted} and store.has_blob(leased)


def test_usage_stamps_are_written_at_most_once_per_interval(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "c")
    store = cache.store
    name = toy_bucket.names[0]
    assert touch_usage(store, name, now=5000.0)
    assert not touch_usage(store, name, now=5000.0 + 10)  # within the interval: only a stat
    assert read_usage(store)[name] == 5000.0
    assert touch_usage(store, name, now=5000.0 + 7200)
    assert read_usage(store)[name] == 12200.0
