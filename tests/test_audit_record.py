"""Records that reproduce: check a lock against a cache and the server; fill a new cache from it."""

from __future__ import annotations

import hashlib
import os

import pytest

from releasecache.errors import IntegrityError, ManifestParseError, OutdatedManifestWarning
from releasecache.manifest import parse_s3_url
from releasecache.cache.reproduce import check_lock, fill_from_lock, read_lock


def _files(root):
    """{relative path: blake2b} of every file under a cache's version views and blobs."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel.startswith(("manifests", ".", "state")):
                continue
            with open(path, "rb") as f:
                out[rel] = hashlib.blake2b(f.read()).hexdigest()
    return out


def _analysis(cache, names):
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(names[1])
    cache.download_metadata("units")
    cache.download_data("0")
    cache.download_data("2")


def test_record_reproduces_in_a_second_cache(make_cache, toy_bucket, tmp_path):
    first = make_cache(tmp_path / "first")
    _analysis(first, toy_bucket.names)
    lock_path = tmp_path / "lock.json"
    first.write_record(lock_path)
    first.download_data("3")  # used after the record: must not reach the second cache
    lock = read_lock(lock_path)
    assert len(lock["files"]) == 3

    check = check_lock(first, lock)
    assert check.ok and all(f["server"] == "ok" for f in check.files)
    assert "record reproduces" in check.summary()

    second = make_cache(tmp_path / "second")
    empty = check_lock(second, lock, server=False)
    assert not empty.ok and len(empty.missing) == 3 and "missing" in empty.summary()
    paths = fill_from_lock(second, lock)
    assert [p.read_bytes() for p in paths] == [
        (tmp_path / "first" / p.relative_to(tmp_path / "second")).read_bytes() for p in paths]
    # Exactly the recorded files: the same views and blobs, byte for byte, and nothing else.
    recorded = {f["file_hash"] for f in lock["files"]}
    second_files = _files(tmp_path / "second")
    assert set(second_files.values()) == recorded
    first_files = _files(tmp_path / "first")
    assert {k: v for k, v in first_files.items() if v in recorded} == second_files
    assert check_lock(second, lock, full=True).ok


def test_check_reports_version_gone_from_server(make_cache, fresh_bucket, s3_server, tmp_path):
    cache = make_cache(tmp_path / "c", bucket=fresh_bucket)
    _analysis(cache, fresh_bucket.names)
    lock = cache.write_record(tmp_path / "lock.json")
    gone = next(f for f in lock["files"] if f["section"] == "data")
    _, key = parse_s3_url(gone["url"])
    s3_server.admin_client().delete_object(Bucket=fresh_bucket.bucket, Key=key, VersionId=gone["version_id"])
    check = check_lock(cache, lock)
    assert [f["path"] for f in check.gone] == [gone["path"]] and check.gone[0]["server"] == "gone"
    assert not check.ok and "gone" in check.summary() and gone["version_id"] in check.summary()
    assert check.to_dict()["gone"] == [gone["path"]]


def test_corrupt_blob_and_changed_manifest(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "c")
    _analysis(cache, toy_bucket.names)
    lock = cache.write_record()
    blob = cache.store.find_blob(lock["files"][0]["file_hash"])
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered")
    assert check_lock(cache, lock).ok  # the store's names are trusted by default ...
    full = check_lock(cache, lock, full=True)  # ... and re-hashed on request
    assert [f["cache"] for f in full.missing] == ["corrupt"]

    lock["manifests"][0]["blake2b"] = "0" * 128
    other = make_cache(tmp_path / "other")
    with pytest.raises(IntegrityError, match="release listing changed"):
        fill_from_lock(other, lock)
    assert not list((tmp_path / "other").glob("blobs/**/*.*"))  # nothing fetched


def test_record_that_contradicts_its_manifest(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "c")
    _analysis(cache, toy_bucket.names)
    lock = cache.write_record()
    lock["files"][1]["file_hash"] = "a" * 128
    with pytest.raises(IntegrityError, match="the record says hash aaaa"):
        fill_from_lock(make_cache(tmp_path / "other"), lock)


def test_read_lock_rejects_what_is_not_a_lock(tmp_path):
    bad = tmp_path / "bad.json"
    for text, message in (("{", "not JSON"), ('{"files": []}', "not a releasecache record"),
                          ('{"releasecache_lock": 1, "files": [{"path": "x"}]}', "lacks manifest")):
        bad.write_text(text)
        with pytest.raises(ManifestParseError, match=message):
            read_lock(bad)
    with pytest.raises(ManifestParseError, match="no record"):
        read_lock(tmp_path / "absent.json")
