"""Read-only layers, read-only caches, verify and repair, disk usage and gc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from releasecache import CloudCache
from releasecache.errors import NoManifestLoadedError, OfflineError, ReadOnlyCacheError, StorageError
from tests.support.fixtures.toy import PROJECT

from ._reliability import blake, load, open_cache

# -- layers ------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path, toy_bucket):
    """A site-wide cache holding all of 0.1.0, filled directly from the server."""
    site = open_cache(tmp_path / "site", toy_bucket, manifest=toy_bucket.names[0])
    assert site.prefetch(progress=False).ok
    return site


def test_layer_is_used_before_downloading_via_absolute_links(tmp_path, toy_bucket, proxy, site):
    user = open_cache(tmp_path / "user", toy_bucket, proxy.url, manifest=toy_bucket.names[0],
                      layers=[site.cache_dir])
    report = user.prefetch(progress=False)
    assert report.ok
    assert proxy.stats.gets() == 0  # nothing downloaded
    for entry in user.manifest.entries():
        view = user.store.view_path(user.manifest.view_dir_name, entry.relative_path)
        target = os.readlink(view)
        assert os.path.isabs(target) and target.startswith(str(site.cache_dir / "blobs"))
        assert blake(view) == entry.file_hash
    assert list(user.store.iter_blobs()) == []  # no bytes of its own
    # Switching to 0.3.0: only what changed is downloaded, into the user's own cache.
    load(user, toy_bucket.names[-1])
    assert user.prefetch(progress=False).ok
    assert proxy.stats.gets() == 6
    assert len(list(user.store.iter_blobs())) == 6
    assert user.verify(toy_bucket.names[-1], mode="full").ok


@pytest.mark.parametrize("how", ["copy", "hardlink"])
def test_layer_blobs_copied_or_hardlinked_into_the_user_cache(how, tmp_path, toy_bucket, proxy, site):
    user = open_cache(tmp_path / "user", toy_bucket, proxy.url, manifest=toy_bucket.names[0],
                      layers=[site.cache_dir], layer_link=how)
    assert user.prefetch(progress=False).ok
    assert proxy.stats.gets() == 0
    for entry in user.manifest.entries():
        view = user.store.view_path(user.manifest.view_dir_name, entry.relative_path)
        assert not os.path.isabs(os.readlink(view))  # a relative link into the user's own blobs/
        own, theirs = user.store.blob_path(entry.file_hash), site.store.blob_path(entry.file_hash)
        assert blake(own) == entry.file_hash
        assert (os.stat(own).st_ino == os.stat(theirs).st_ino) == (how == "hardlink")
    shutil.rmtree(site.cache_dir)  # the user's cache no longer needs the layer
    assert user.verify(toy_bucket.names[0], mode="full").ok


def test_offline_cache_served_from_a_layer_alone(tmp_path, toy_bucket, site):
    """An empty personal cache, offline, with the site copy as a layer: manifests and files come from it."""
    user = CloudCache.from_local_cache(tmp_path / "user", PROJECT, layers=[site.cache_dir], progress=False)
    assert user.list_manifest_file_names() == [toy_bucket.names[0]]
    user.load_manifest(toy_bucket.names[0])
    assert blake(user.download_data(1)) == user.data_entry(1).file_hash
    load(user, toy_bucket.names[0])
    with pytest.raises(OfflineError):
        CloudCache.from_local_cache(tmp_path / "nothing", PROJECT, progress=False)


def _read_only_mount(path: Path) -> bool:
    """Bind-mount ``path`` read-only onto itself; False if not permitted."""
    try:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        subprocess.run(["umount", str(path)], check=False, timeout=10)
        return False
    return True


def test_read_only_cache_directory_serves_everything_it_holds(tmp_path, toy_bucket, proxy, site):
    """A cache directory that cannot be written (a read-only mount, or no write permission) is
    detected as read-only and serves all it holds; what it lacks is a clear ReadOnlyCacheError."""
    ro = site.cache_dir
    load(site, toy_bucket.names[1])  # 0.2.0's manifest saved, its new files not fetched
    mounted = _read_only_mount(ro)
    if not mounted:
        for dirpath, dirnames, filenames in os.walk(ro):
            os.chmod(dirpath, 0o555)
    try:
        before = {p: os.lstat(p).st_mtime_ns for p in ro.rglob("*")}
        cache = open_cache(ro, toy_bucket, proxy.url, manifest=toy_bucket.names[0])
        assert cache.store.read_only
        for entry in cache.manifest.entries():
            assert blake(cache.ensure(entry)) == entry.file_hash
        load(cache, toy_bucket.names[1])
        assert blake(cache.download_data(1)) == cache.data_entry(1).file_hash  # unchanged: served
        with pytest.raises(ReadOnlyCacheError, match="read-only for you"):
            cache.download_data(5)  # created in 0.2.0: not there; a permission problem, not "offline"
        assert cache.verify(mode="full").ok
        with pytest.raises(StorageError, match="read-only"):
            cache.gc(keep=[toy_bucket.names[1]], dry_run=False)
        assert proxy.stats.gets() == 0
        assert {p: os.lstat(p).st_mtime_ns for p in ro.rglob("*")} == before
        explicit = open_cache(tmp_path / "explicit", toy_bucket, read_only=True)
        assert explicit.store.read_only and not (tmp_path / "explicit").exists()
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=False, timeout=10)
        else:
            for dirpath, dirnames, filenames in os.walk(ro):
                os.chmod(dirpath, 0o755)


# -- verify and repair -----------------------------------------------------------------


def _tamper(path: Path, *, keep_mtime: bool = False) -> None:
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, 0o444)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_verify_fast_uses_stamps_full_hashes_and_repair_refetches(tmp_path, toy_bucket, proxy):
    name = toy_bucket.names[0]
    cache = open_cache(tmp_path / "c", toy_bucket, proxy.url, manifest=name)
    assert cache.prefetch(progress=False).ok
    fast = cache.verify(name)
    assert fast.ok and fast.hashed == 0 and fast.checked == 10  # every blob stamped at publish
    full = cache.verify(name, mode="full")
    assert full.ok and full.hashed == full.checked == 10

    # Someone edits a blob: mtime changes, so even the fast mode re-hashes and catches it.
    entry = cache.data_entry(1)
    blob = cache.store.blob_path(entry.file_hash)
    _tamper(blob)
    report = cache.verify(name)
    assert not report.ok and report.hashed == 1
    [bad] = report.corrupt
    assert bad["file_hash"] == entry.file_hash and bad["paths"] == [entry.relative_path]
    assert Path(bad["quarantined_to"]).parent == cache.store.quarantine_dir and not blob.exists()
    view = cache.store.view_path(cache.manifest.view_dir_name, entry.relative_path)
    assert not os.path.lexists(view)  # never a view to broken content
    json.dumps(report.to_dict())
    proxy.clear()
    assert blake(cache.download_data(1)) == entry.file_hash  # the next access fetches it again
    assert proxy.stats.gets() == 5  # 300 kB in 64 KiB parts
    assert cache.verify(name).ok

    # Bit rot that keeps size, mtime and inode: invisible to the fast mode (documented), caught by full.
    blob = cache.store.blob_path(entry.file_hash)
    _tamper(blob, keep_mtime=True)
    assert cache.verify(name).ok
    report = cache.verify(name, mode="full")
    assert [c["file_hash"] for c in report.corrupt] == [entry.file_hash]

    # Missing blobs are reported (and fetched on next access); wrong view links are repaired.
    other = cache.data_entry(0)
    os.unlink(cache.store.blob_path(other.file_hash))
    wrong = cache.store.view_path(cache.manifest.view_dir_name, cache.data_entry(2).relative_path)
    os.unlink(wrong)
    os.symlink(os.path.relpath(cache.store.blob_path(cache.data_entry(3).file_hash), wrong.parent), wrong)
    report = cache.verify(name)
    assert {m["relative_path"] for m in report.missing} == {other.relative_path, entry.relative_path}
    assert str(wrong.relative_to(cache.cache_dir)) in report.views_repaired
    assert blake(wrong) == cache.data_entry(2).file_hash
    assert cache.prefetch(progress=False).ok
    assert cache.verify(name, mode="full").ok


def test_copied_cache_is_rehashed_once_by_fast_verify(tmp_path, toy_bucket):
    cache = open_cache(tmp_path / "a", toy_bucket, manifest=toy_bucket.names[0])
    assert cache.prefetch(progress=False).ok
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)  # new inodes
    copy = CloudCache.from_local_cache(tmp_path / "b", PROJECT, progress=False)
    first = copy.verify()
    assert first.ok and first.hashed == first.checked == 10
    assert copy.verify().hashed == 0  # stamped again


# -- disk usage and gc -------------------------------------------------------------------


def _sizes(cache, names):
    out = {}
    for name in names:
        m = cache.get_manifest(name)
        out[name] = {e.file_hash: cache.store.blob_path(e.file_hash).stat().st_size for e in m.entries()}
    return out


def test_disk_usage_per_manifest_shared_and_unique(tmp_path, toy_bucket):
    v1, _v2, v3 = toy_bucket.names
    cache = open_cache(tmp_path / "c", toy_bucket, manifest=v1)
    assert cache.prefetch(progress=False).ok
    load(cache, v3)
    assert cache.prefetch(progress=False).ok
    sizes = _sizes(cache, [v1, v3])
    usage = cache.disk_usage()
    assert set(usage.manifests) == {v1, v3}
    for name, other in ((v1, v3), (v3, v1)):
        mine, theirs = sizes[name], sizes[other]
        u = usage.manifests[name]
        assert u.bytes == sum(mine.values())
        assert u.shared_bytes == sum(s for h, s in mine.items() if h in theirs)
        assert u.unique_bytes == sum(s for h, s in mine.items() if h not in theirs)
        assert u.missing == 0 and u.present == u.files
    union = {**sizes[v1], **sizes[v3]}
    assert usage.blob_bytes == sum(union.values()) == usage.referenced_bytes
    assert usage.unreferenced_bytes == 0 and usage.total_bytes == usage.blob_bytes
    assert json.loads(json.dumps(usage.to_dict()))["total_bytes"] == usage.total_bytes
    assert list(usage.to_frame().index) == [v1, v3]
    assert v1 in usage.summary()


def test_gc_dry_run_then_delete_keeps_what_kept_manifests_need(tmp_path, toy_bucket):
    v1, v2, v3 = toy_bucket.names
    cache = open_cache(tmp_path / "c", toy_bucket, manifest=v1)
    assert cache.prefetch(progress=False).ok
    load(cache, v3)
    assert cache.prefetch(progress=False).ok
    sizes = _sizes(cache, [v1, v3])
    only_v1 = {h for h in sizes[v1] if h not in sizes[v3]}
    # a stale partial download (and a fresh one that must stay)
    stale = cache.store.partial_dir / ("ee" * 64)
    stale.write_bytes(b"x" * 10)
    os.utime(stale, (time.time() - 30 * 86400,) * 2)
    fresh = cache.store.partial_dir / ("ef" * 64)
    fresh.write_bytes(b"y")

    dry = cache.gc(keep=[v3], window_days=0)
    assert dry.dry_run and set(dry.deleted_blobs) == only_v1
    assert dry.bytes_freed == sum(sizes[v1][h] for h in only_v1)
    assert dry.removed_views == [f"{PROJECT}-0.1.0"] and dry.removed_partials == [stale.name]
    assert all(cache.store.has_blob(h) for h in only_v1) and stale.exists()  # nothing touched

    # A blob whose lock another process holds is never deleted.
    busy = sorted(only_v1)[0]
    holder = cache.store.blob_lock(busy)
    assert holder.acquire(timeout=5)
    try:
        report = cache.gc(keep=[v3], dry_run=False, window_days=0)
    finally:
        holder.release()
    assert busy in report.busy and cache.store.has_blob(busy)
    assert set(report.deleted_blobs) == only_v1 - {busy}
    assert not (tmp_path / "c" / f"{PROJECT}-0.1.0").exists()
    assert not stale.exists() and fresh.exists()
    assert cache.verify(v3, mode="full").ok  # everything the kept manifest needs is intact
    again = cache.gc(dry_run=False, window_days=0)  # keep defaults to the loaded manifest (0.3.0)
    assert again.deleted_blobs == [busy] and again.kept == [v3]
    usage = cache.disk_usage()
    assert usage.unreferenced_bytes == 0 and usage.manifests[v1].missing > 0
    assert cache.store.stamps_dir.is_dir() and all(
        cache.store.has_own_blob(p.name) for p in cache.store.stamps_dir.glob("*/*") if p.is_file())
    # 0.1.0 still works: what it lacks downloads again.
    load(cache, v1)
    assert cache.prefetch(progress=False).ok and cache.verify(v1, mode="full").ok


def test_gc_needs_to_know_what_to_keep(tmp_path, toy_bucket):
    cache = open_cache(tmp_path / "empty", toy_bucket)
    with pytest.raises(NoManifestLoadedError):
        cache.gc()
