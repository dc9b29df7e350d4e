"""The size budget: LRU eviction that never touches pinned, locked, leased or in-use blobs."""

from __future__ import annotations

import os
import threading
import warnings

import pytest

from releasecache.cache.budget import evict, parse_size, pin, pinned, read_lease, read_usage, touch_usage, unpin
from releasecache.errors import OutdatedManifestWarning
from tests.support.fixtures.toy import PROJECT


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
    before = {h for h, _ in store.iter_blobs()}
    vain = evict(store, 0, pinned_names=[v3.name])
    assert not vain.fits and not vain.evicted and "cannot be met" in vain.summary()
    assert {h for h, _ in store.iter_blobs()} == before  # nothing evicted in vain
    kept_bytes = sum(os.lstat(store.blob_path(h)).st_size for h in before & protected)
    assert before <= protected  # every blob here is a v1 or v3 file
    report = evict(store, kept_bytes, pinned_names=[v3.name])
    assert report.fits and not report.evicted
    left = {h for h, _ in store.iter_blobs()}
    assert left == before
    assert unpin(store, v1.name) and not unpin(store, v1.name)

    # A locked blob and a blob under a read lease are skipped; released, they go.
    v1_blobs = sorted(h for h in left if h not in {e.file_hash for e in v3.entries()})
    locked, leased = v1_blobs[0], v1_blobs[1]
    v3_bytes = sum(os.lstat(store.blob_path(h)).st_size for h in left if h not in v1_blobs)
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
            busy = evict(store, v3_bytes, pinned_names=[v3.name])  # every v1 blob would have to go
        assert set(busy.busy) == {locked, leased} and not busy.fits
        assert store.has_blob(locked) and store.has_blob(leased)
    finally:
        release.set()
        worker.join()
    leased_bytes = os.lstat(store.blob_path(leased)).st_size
    final = evict(store, v3_bytes + leased_bytes, pinned_names=[v3.name], protect=[leased])
    assert final.fits and locked in {c.file_hash for c in final.evicted} and store.has_blob(leased)


def test_usage_stamps_are_written_at_most_once_per_interval(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "c")
    store = cache.store
    name = toy_bucket.names[0]
    assert touch_usage(store, name, now=5000.0)
    assert not touch_usage(store, name, now=5000.0 + 10)  # within the interval: only a stat
    assert read_usage(store)[name] == 5000.0
    assert touch_usage(store, name, now=5000.0 + 7200)
    assert read_usage(store)[name] == 12200.0


def test_downloads_stay_within_the_budget(make_cache, toy_bucket, toy_release, tmp_path):
    """A cache with max_size: switching versions evicts the old version's own files, never the current one's."""
    from releasecache.errors import StorageError

    first = make_cache(tmp_path / "c")
    v1 = _load(first, toy_bucket.names[0])
    first.prefetch(progress=False)
    store = first.store
    full = _blob_bytes(store)
    v3_bytes = sum(p.stat().st_size for p in (toy_release["0.3.0"] / PROJECT).rglob("*") if p.is_file())
    budget = v3_bytes + 1000
    assert full > budget - 5000  # v3 needs files v1 lacks: something of v1 has to go
    cache = make_cache(tmp_path / "c")
    cache.max_size = budget
    v3 = _load(cache, toy_bucket.names[2])
    cache.prefetch(progress=False)
    assert _blob_bytes(store) <= budget and v3_bytes < budget
    assert all(store.has_blob(e.file_hash) for e in v3.entries())  # the current version is complete
    gone = {e.file_hash for e in v1.entries()} - {h for h, _ in store.iter_blobs()}
    assert gone and not gone & {e.file_hash for e in v3.entries()}
    for link in (tmp_path / "c" / v1.view_dir_name).rglob("*"):
        assert link.is_dir() or link.exists()  # no view link to an evicted blob
    tiny = make_cache(tmp_path / "c")
    tiny.max_size = 10
    _load(tiny, toy_bucket.names[0])
    evicted_id = next(i for i, e in v1.data_files.items() if e.file_hash in gone)
    before = {h for h, _ in store.iter_blobs()}
    with pytest.raises(StorageError, match="does not fit in the size budget"):
        tiny.download_data(evicted_id)  # v1 (now current, pinned) alone exceeds 10 bytes
    assert {h for h, _ in store.iter_blobs()} == before  # nothing evicted in vain


def test_a_locally_opened_file_is_not_evicted_while_open(make_cache, toy_bucket, tmp_path):
    """open_entry(prefer_local=True) holds a read lease; another process's eviction skips the blob."""
    import subprocess
    import sys

    from releasecache.vbn.streaming import open_entry

    cache = make_cache(tmp_path / "c")
    v1 = _load(cache, toy_bucket.names[0])
    cache.prefetch(progress=False)
    entry = v1.data_files["0"]
    script = ("import sys; from releasecache.cache.budget import evict; from releasecache.store import Store; "
              "r = evict(Store(sys.argv[1]), 0 if len(sys.argv) < 3 else int(sys.argv[2])); "
              "print(len(r.evicted), ' '.join(r.busy))")
    with open_entry(cache, entry, prefer_local=True) as fobj:
        assert fobj.read(4)
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "c"), str(entry.size or 5000)],
                             capture_output=True, text=True, check=True).stdout.split()
    # Nothing is pinned in the other process, so everything else went; the open file stayed.
    assert out[1:] == [entry.file_hash] and cache.store.has_blob(entry.file_hash)
