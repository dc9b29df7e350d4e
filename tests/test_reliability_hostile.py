"""Hostile and broken input: manifests, planted symlinks, lying servers, full disks, permissions.

Each attack must end in a clear error from :mod:`releasecache.errors` (or be
harmlessly undone), with nothing outside the cache directory touched.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from releasecache import Manifest, errors
from releasecache.errors import (
    DownloadError,
    IntegrityError,
    ReleaseCacheError,
    RemoteNotFoundError,
    StorageError,
    UnsafePathError,
)
from tests.support.fixtures.toy import PROJECT
from tests.support.proxy import Fault

from ._reliability import blake, load, make_outside, open_cache, run_worker, settings, snapshot

CORPUS = Path(__file__).resolve().parent.parent / "manifests_fixtures" / "hostile"
INDEX = json.loads((CORPUS / "index.json").read_text())


def _generated():
    spec = importlib.util.spec_from_file_location("hostile_generated", CORPUS / "generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.generated_manifests())


GENERATED = {name: (data, error, why) for name, data, error, why in _generated()}
ALL = sorted(INDEX) + sorted(GENERATED)


def _case(name: str) -> tuple[bytes, str, str]:
    if name in GENERATED:
        return GENERATED[name]
    return (CORPUS / name).read_bytes(), INDEX[name]["error"], INDEX[name]["why"]


def test_corpus_is_large_enough():
    assert len(ALL) >= 30
    assert all(hasattr(errors, meta["error"]) for meta in INDEX.values())


@pytest.mark.parametrize("name", ALL)
def test_hostile_manifest_file_is_refused(name, tmp_path):
    data, error, why = _case(name)
    sandbox = tmp_path / "sandbox"
    make_outside(sandbox)
    path = sandbox / "manifests_in" / name
    path.parent.mkdir()
    path.write_bytes(data)
    before = snapshot(sandbox)
    with pytest.raises(ReleaseCacheError) as info:
        Manifest.from_path(path)
    assert type(info.value).__name__ == error, f"{why}: {info.value!r}"
    assert name in str(info.value) and len(str(info.value)) < 2000  # names the file; readable
    assert snapshot(sandbox) == before


@pytest.fixture(scope="module")
def hostile_bucket(s3_server):
    """Every hostile manifest served by the S3 server as a manifest of the toy project."""
    bucket = "hostile-bucket"
    s3_server.create_public_bucket(bucket)
    publisher = s3_server.publisher(bucket)
    for name in ALL:
        publisher.put_object(f"{PROJECT}/manifests/{name}", _case(name)[0])
    return bucket


@pytest.mark.parametrize("name", ALL)
def test_hostile_manifest_from_server_is_refused_and_writes_nothing(name, tmp_path, s3_server, hostile_bucket):
    from releasecache import CloudCache

    data, error, why = _case(name)
    sandbox = tmp_path / "sandbox"
    make_outside(sandbox)
    cache_dir = sandbox / "cache"
    outside_before = snapshot(sandbox, exclude=cache_dir)
    cache = CloudCache.from_s3(cache_dir, hostile_bucket, PROJECT, endpoint_url=s3_server.endpoint_url,
                               progress=False)
    with pytest.raises(ReleaseCacheError) as info:
        cache.load_manifest(name)
    assert type(info.value).__name__ == error, f"{why}: {info.value!r}"
    assert snapshot(sandbox, exclude=cache_dir) == outside_before
    assert [p for p in cache_dir.rglob("*")] == []  # not even the manifest was saved
    assert cache.current_manifest() is None


# -- symlinks planted in the cache ---------------------------------------------------


def _plant_dir(cache, entry, outside, where):
    store = cache.store
    view = store.root / cache.manifest.view_dir_name
    targets = {
        "view_dir": view,
        "view_subdir": view / "sessions",
        "blobs": store.root / "blobs",
        "blobs_algo": store.blobs_dir,
        "blobs_prefix": store.blob_path(entry.file_hash).parent,
        "partial_dir": store.partial_dir,
        "locks_dir": store.locks_dir,
    }
    link = targets[where]
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, link)


@pytest.mark.parametrize("where", ["view_dir", "view_subdir", "blobs", "blobs_algo", "blobs_prefix",
                                   "partial_dir", "locks_dir"])
def test_symlinked_directory_in_the_cache_is_refused(where, tmp_path, toy_bucket):
    """A directory of the cache replaced by a link to elsewhere: the download stops with
    UnsafePathError before anything is written through the link."""
    outside = make_outside(tmp_path)
    cache = open_cache(tmp_path / "cache", toy_bucket, manifest=toy_bucket.names[0])
    entry = cache.data_entry(1)
    _plant_dir(cache, entry, outside, where)
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        cache.download_data(1)
    assert snapshot(outside) == before


def test_symlinked_manifests_dir_and_file_are_refused(tmp_path, toy_bucket):
    outside = make_outside(tmp_path)
    before = snapshot(outside)
    cache = open_cache(tmp_path / "c1", toy_bucket)
    os.symlink(outside, tmp_path / "c1" / "manifests")
    with pytest.raises(UnsafePathError):
        load(cache, toy_bucket.names[0])
    cache2 = open_cache(tmp_path / "c2", toy_bucket)
    (tmp_path / "c2" / "manifests").mkdir()
    os.symlink(outside / "passwd", tmp_path / "c2" / "manifests" / toy_bucket.names[0])
    with pytest.raises(UnsafePathError, match="symbolic link"):
        load(cache2, toy_bucket.names[0])
    assert snapshot(outside) == before


@pytest.mark.parametrize("where", ["partial_file", "lock_file", "owner_file", "blob_file", "view_file",
                                   "stamps_dir", "stamp_file"])
def test_symlinked_file_in_the_cache_is_replaced_not_followed(where, tmp_path, toy_bucket):
    """A file of the cache replaced by a link to a file elsewhere: the link is removed or replaced
    atomically, never written through; the download completes with the right bytes."""
    outside = make_outside(tmp_path)
    victim = outside / "nested" / "victim.dat"
    cache = open_cache(tmp_path / "cache", toy_bucket, manifest=toy_bucket.names[0])
    entry = cache.data_entry(1)
    store = cache.store
    h = entry.file_hash
    paths = {
        "partial_file": store.partial_path(h),
        "lock_file": store.locks_dir / f"{h}.lock",
        "owner_file": store.locks_dir / f"{h}.owner",
        "blob_file": store.blob_path(h),
        "view_file": store.view_path(cache.manifest.view_dir_name, entry.relative_path),
        "stamps_dir": store.stamps_dir,
        "stamp_file": store.stamps_dir / h[:2] / h,
    }
    link = paths[where]
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside if where == "stamps_dir" else victim, link)
    if where == "partial_file":  # with a sidecar that invites a resume into the link
        store.sidecar_path(h).write_text(json.dumps({
            "format": 1, "url": entry.url, "version_id": entry.version_id, "file_hash": h,
            "size": victim.stat().st_size, "done": [[0, 100]]}))
    before = snapshot(outside)
    path = cache.download_data(1)
    assert blake(path) == h
    assert snapshot(outside) == before
    assert not os.path.islink(store.blob_path(h))


def test_verify_refuses_a_symlinked_quarantine(tmp_path, toy_bucket):
    outside = make_outside(tmp_path)
    cache = open_cache(tmp_path / "cache", toy_bucket, manifest=toy_bucket.names[0])
    blob = cache.store.blob_path(cache.data_entry(1).file_hash)
    cache.download_data(1)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as fh:
        fh.write(b"X")
    os.symlink(outside, cache.store.quarantine_dir)
    before = snapshot(outside)
    with pytest.raises(UnsafePathError):
        cache.verify(mode="fast")
    assert snapshot(outside) == before
    assert blob.exists()  # left where it was


def test_gc_never_walks_a_symlinked_blob_prefix(tmp_path, toy_bucket):
    """gc deletes unreferenced blobs: a blobs/ sub-directory linked elsewhere must not make it
    delete files elsewhere."""
    outside = make_outside(tmp_path)
    fake = outside / "ab"
    fake.mkdir()
    (fake / ("ab" * 64)).write_bytes(b"not a blob of this cache")
    cache = open_cache(tmp_path / "cache", toy_bucket, manifest=toy_bucket.names[0])
    cache.download_data(0)
    os.symlink(fake, cache.store.blobs_dir / "ab")
    before = snapshot(outside)
    report = cache.gc(keep=[toy_bucket.names[-1]], dry_run=False, window_days=0)
    assert ("ab" * 64) not in report.deleted_blobs
    assert snapshot(outside) == before


# -- servers that lie ----------------------------------------------------------------


@pytest.mark.parametrize("kind, error", [
    ("corrupt", IntegrityError),     # wrong bytes, right length
    ("truncate", DownloadError),     # too few bytes, then the connection drops
    ("extra", DownloadError),        # more bytes than asked for
    ("version", IntegrityError),     # a different object version than the one pinned
])
def test_lying_server_never_gets_its_bytes_published(kind, error, tmp_path, toy_bucket, proxy):
    proxy.add(Fault(kind))  # every object GET
    cache = open_cache(tmp_path / "cache", toy_bucket, proxy.url, manifest=toy_bucket.names[0],
                       transfer={"max_attempts": 2, "integrity_attempts": 2})
    entry = cache.data_entry(1)
    with pytest.raises(error) as info:
        cache.download_data(1)
    assert entry.relative_path in str(info.value)
    store = cache.store
    assert not store.has_blob(entry.file_hash)
    assert not os.path.lexists(store.view_path(cache.manifest.view_dir_name, entry.relative_path))
    assert list(store.iter_blobs()) == []
    if error is IntegrityError:  # nothing worth resuming is kept
        assert not store.partial_path(entry.file_hash).exists()
    proxy.clear()  # the server behaves again: the same cache completes
    assert blake(cache.download_data(1)) == entry.file_hash


def test_version_that_was_never_published_is_refused(tmp_path, fresh_bucket, s3_server):
    doc = json.loads(json.dumps(fresh_bucket.manifests[0].raw))
    doc["manifest_version"] = "9.9.9"
    doc["data_files"]["1"]["version_id"] = "never-published-version-id"
    name = f"{PROJECT}_project_manifest_v9.9.9.json"
    s3_server.publisher(fresh_bucket.bucket).put_object(f"{PROJECT}/manifests/{name}", json.dumps(doc).encode())
    cache = open_cache(tmp_path / "cache", fresh_bucket, manifest=name)
    with pytest.raises(RemoteNotFoundError, match="never-published-version-id|NoSuchVersion|404|InvalidArgument"):
        cache.download_data(1)
    assert list(cache.store.iter_blobs()) == []


# -- full disks and permissions -----------------------------------------------------


def _small_filesystem(path: Path) -> str:
    """Mount a 200 kB tmpfs at ``path``; return 'tmpfs', or 'rlimit' if mounting is not allowed."""
    path.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=10)
        return "tmpfs"
    except (OSError, subprocess.SubprocessError):
        return "rlimit"


def _assert_clean_after_storage_error(cache, entry):
    store = cache.store
    assert not store.has_blob(entry.file_hash)
    assert not os.path.lexists(store.view_path(cache.manifest.view_dir_name, entry.relative_path))
    leftovers = [p.name for p in store.partial_dir.iterdir()] if store.partial_dir.is_dir() else []
    assert leftovers == [], leftovers


def test_full_disk_gives_storage_error_and_cleans_up(tmp_path, toy_bucket):
    """ENOSPC on a 200 kB tmpfs (or, where mounting is not permitted, the file-size limit of a
    child process, EFBIG): a clear StorageError, no partial data, the cache still consistent."""
    small = tmp_path / "small"
    how = _small_filesystem(small)
    try:
        if how == "tmpfs":
            cache = open_cache(small / "cache", toy_bucket, manifest=toy_bucket.names[0])
            with pytest.raises(StorageError) as info:
                cache.download_data(1)  # 300 kB into 200 kB
            assert info.value.errno == errno.ENOSPC and "disk is full" in str(info.value)
        else:
            out = run_worker(settings(small / "cache", toy_bucket, toy_bucket.endpoint_url, toy_bucket.names[0],
                                      action="constrained_fetch", file_id=1, fsize_limit=100_000,
                                      transfer={"part_size": 64 * 1024}))
            assert out["error"] == "StorageError" and out["errno"] == errno.EFBIG, out
            cache = open_cache(small / "cache", toy_bucket, manifest=toy_bucket.names[0])
        entry = cache.data_entry(1)
        _assert_clean_after_storage_error(cache, entry)
        for small_id in (0, 2):  # the cache keeps working for what fits
            e = cache.data_entry(small_id)
            assert blake(cache.download_data(small_id)) == e.file_hash
        report = cache.verify(mode="full")
        assert report.ok and report.checked == 2
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", "-l", str(small)], check=False, timeout=10)


def test_file_size_limit_gives_storage_error_and_cleans_up(tmp_path, toy_bucket):
    """EFBIG from RLIMIT_FSIZE in a child process: StorageError naming the limit; nothing left."""
    cache_dir = tmp_path / "cache"
    out = run_worker(settings(cache_dir, toy_bucket, toy_bucket.endpoint_url, toy_bucket.names[0],
                              action="constrained_fetch", file_id=1, fsize_limit=100_000,
                              transfer={"part_size": 64 * 1024}))
    assert out["ours"] and out["error"] == "StorageError" and out["errno"] == errno.EFBIG, out
    assert "file-size limit" in out["message"]
    cache = open_cache(cache_dir, toy_bucket, manifest=toy_bucket.names[0])
    _assert_clean_after_storage_error(cache, cache.data_entry(1))
    assert blake(cache.download_data(1)) == cache.data_entry(1).file_hash


def test_permission_denied_gives_storage_error_and_cleans_up(toy_bucket):
    """A blobs/ directory the user may not write: StorageError 'permission denied', the partial
    download removed, the cache consistent. (As root, the fetch runs as 'nobody'.)"""
    root = Path(tempfile.mkdtemp(prefix="rc-perm-"))
    os.chmod(root, 0o755)
    try:
        cache_dir = root / "cache"
        cache = open_cache(cache_dir, toy_bucket, manifest=toy_bucket.names[0])
        cache.download_data(0)
        blobs_algo = cache.store.blobs_dir
        extra: dict = {}
        if os.geteuid() == 0:
            for dirpath, dirnames, filenames in os.walk(cache_dir):
                for n in dirnames + filenames + [""]:
                    os.lchown(os.path.join(dirpath, n) if n else dirpath, 65534, 65534)
            os.chown(blobs_algo, 0, 0)  # the one directory 'nobody' cannot write
            extra = {"drop_to_uid": 65534, "drop_to_gid": 65534}
        os.chmod(blobs_algo, 0o555)
        out = run_worker(settings(cache_dir, toy_bucket, toy_bucket.endpoint_url, toy_bucket.names[0],
                                  action="constrained_fetch", file_id=1, transfer={"part_size": 64 * 1024},
                                  **extra), cwd=str(root))
        assert out.get("error") == "StorageError" and out["errno"] == errno.EACCES, out
        assert "permission denied" in out["message"]
        os.chmod(blobs_algo, 0o755)
        checker = open_cache(cache_dir, toy_bucket, manifest=toy_bucket.names[0])
        _assert_clean_after_storage_error(checker, checker.data_entry(1))
        assert checker.verify(mode="full").ok
        assert blake(checker.download_data(1)) == checker.data_entry(1).file_hash
    finally:
        shutil.rmtree(root, ignore_errors=True)
