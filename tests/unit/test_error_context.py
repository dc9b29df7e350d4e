"""Errors carry what they are about (path, URL, key, version id, hash, manifest) as attributes.

One representative raise site per layer, each through the real code path and no
server: the mirror remote stands in for the bucket.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from releasecache import CloudCache, errors
from releasecache.cache.publish import build_manifest
from releasecache.errors import (
    CONTEXT_FIELDS,
    DownloadError,
    IntegrityError,
    ManifestNotFoundError,
    PublisherWarning,
    ReleaseCacheError,
    RemoteNotFoundError,
    StorageError,
    TransientRemoteError,
    UnknownFileError,
    UnsafePathError,
    VersionMismatchError,
)
from releasecache.manifest import Manifest, S3Location, check_relative_path, manifest_name, resolve_manifest_spec
from releasecache.remote.factory import make_remote
from releasecache.store import Store
from releasecache.store.layers import import_blob
from releasecache.transfer import Transfer
from releasecache.transfer.retry import RetryPolicy
from releasecache.utils import hash_bytes

PROJECT = "ctxproj"
BUCKET = "ctx-bucket"

ALL_ERRORS = sorted((cls for cls in vars(errors).values()
                     if isinstance(cls, type) and issubclass(cls, ReleaseCacheError)), key=lambda c: c.__name__)


def _make(cls: type[ReleaseCacheError], **context: object) -> ReleaseCacheError:
    if issubclass(cls, StorageError):  # an OSError: (errno, message)
        return cls(errno.ENOSPC, "the disk is full", **context)
    return cls("something failed", **context)


# --- the base class ----------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_takes_context_keywords_and_keeps_its_message(cls):
    plain = _make(cls)
    assert all(getattr(plain, name) is None for name in CONTEXT_FIELDS) and plain.context == {}
    err = _make(cls, path="data/a.nwb", version_id="v1", file_hash="ab" * 64)
    assert str(err) == str(plain)  # the message is unchanged: `match=` keeps matching
    assert (err.path, err.version_id, err.file_hash) == ("data/a.nwb", "v1", "ab" * 64)
    assert err.context == {"path": "data/a.nwb", "version_id": "v1", "file_hash": "ab" * 64}


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_context(cls):
    err = _make(cls, url="s3://b/k", key="k", manifest="m_v1.0.0.json", status=404)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and str(back) == str(err) and back.args == err.args
    assert back.context == err.context == {"url": "s3://b/k", "key": "k", "manifest": "m_v1.0.0.json",
                                           "status": 404}


def test_subclass_attributes_survive_pickling_next_to_the_context():
    moved = pickle.loads(pickle.dumps(TransientRemoteError("slow down", 2.5, url="https://h/k")))
    assert moved.retry_after == 2.5 and moved.url == "https://h/k"
    mismatch = pickle.loads(pickle.dumps(VersionMismatchError("other version", path="a", expected="v1",
                                                              actual="v2")))
    assert (mismatch.path, mismatch.expected, mismatch.actual, mismatch.got) == ("a", "v1", "v2", "v2")
    assert mismatch.permanent is True
    full = pickle.loads(pickle.dumps(StorageError(errno.ENOSPC, "full", path="/cache/blobs/ab")))
    assert full.errno == errno.ENOSPC and full.path == "/cache/blobs/ab"


def _raise_in_worker(file_hash: str) -> None:
    raise IntegrityError("bytes do not match", file_hash=file_hash, version_id="v7")


def test_an_error_raised_in_a_worker_process_arrives_with_its_context():
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        future = pool.submit(_raise_in_worker, "cd" * 64)
        with pytest.raises(IntegrityError, match="do not match") as info:
            future.result()
    assert info.value.file_hash == "cd" * 64 and info.value.version_id == "v7"


def test_with_context_refuses_unknown_names_and_fill_context_keeps_what_is_set():
    err = IntegrityError("x", path="inner/path")
    with pytest.raises(TypeError, match="unknown error context"):
        err.with_context(colour="red")
    with pytest.raises(TypeError, match="unknown error context"):
        IntegrityError("x", colour="red")
    assert err.fill_context(path="outer", key="k").context == {"path": "inner/path", "key": "k"}
    assert err.with_context(path="outer").path == "outer"


def test_storage_error_from_an_os_error_names_the_file_it_failed_on(tmp_path):
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "gone"))
    err = StorageError.from_os_error(exc, "cannot publish", file_hash="ef" * 64)
    assert err.path == str(tmp_path / "gone") and err.file_hash == "ef" * 64 and err.errno == errno.ENOENT


# --- one raise site per layer --------------------------------------------------


def _release(root: Path, *, corrupt: bool = False) -> tuple[Path, dict]:
    """A one-version mirror whose manifest pins version ids; ``corrupt`` damages data/a.bin in the mirror."""
    src = root / "src"
    (src / PROJECT / "data").mkdir(parents=True)
    (src / PROJECT / "project_metadata").mkdir()
    (src / PROJECT / "project_metadata" / "units.csv").write_text("unit_id\n1\n")
    (src / PROJECT / "data" / "a.bin").write_bytes(b"the real bytes\n" * 50)
    (src / "file_ids.json").write_text(json.dumps({"0": f"{PROJECT}/data/a.bin"}))
    doc = build_manifest(PROJECT, "1.0.0", src, bucket=BUCKET,
                         version_id_for=lambda key, path, digest: f"ver-{digest[:8]}")
    mirror = root / "mirror"
    (mirror / PROJECT / "manifests").mkdir(parents=True)
    (mirror / PROJECT / "manifests" / manifest_name(PROJECT, "1.0.0")).write_text(json.dumps(doc))
    for path in (src / PROJECT).rglob("*"):
        if path.is_file():
            dest = mirror / path.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    if corrupt:  # same size, other content: only the hash can tell
        target = mirror / PROJECT / "data" / "a.bin"
        target.write_bytes(b"X" * target.stat().st_size)
    return mirror, doc


def test_cache_integrity_error_from_a_corrupt_download_names_hash_version_and_file(tmp_path):
    mirror, _ = _release(tmp_path, corrupt=True)
    cache = CloudCache.from_mirror(tmp_path / "cache", mirror, PROJECT, progress=False)
    cache.load_manifest(manifest_name(PROJECT, "1.0.0"))
    entry = cache.data_entry("0")
    with pytest.raises(IntegrityError) as info, pytest.warns(PublisherWarning, match="does not describe"):
        cache.download_data("0")
    err = info.value
    assert entry.version_id.startswith("ver-")  # the manifest pins one, though a mirror cannot honour it
    assert err.file_hash == entry.file_hash and err.version_id == entry.version_id
    assert err.path == "data/a.bin" and err.key == f"{PROJECT}/data/a.bin" and err.url == entry.url
    assert err.manifest == manifest_name(PROJECT, "1.0.0")
    assert not cache.is_cached(entry)  # nothing half-written


def test_remote_not_found_from_the_mirror_names_url_key_and_version(tmp_path):
    mirror, _ = _release(tmp_path)
    remote = make_remote(mirror=mirror)
    missing = S3Location(BUCKET, f"{PROJECT}/data/missing.bin", "ver-123")
    with pytest.raises(RemoteNotFoundError) as info:
        remote.get_range(missing)
    err = info.value
    assert err.url == (mirror / PROJECT / "data" / "missing.bin").as_uri()
    assert (err.key, err.version_id) == (f"{PROJECT}/data/missing.bin", "ver-123")
    with pytest.raises(RemoteNotFoundError) as info:
        remote.stat(missing)
    assert info.value.version_id == "ver-123" and info.value.key == missing.key


def test_manifest_unsafe_path_error_carries_the_offending_key_and_url(tmp_path):
    _, doc = _release(tmp_path)
    (name, entry), = doc["data_files"].items()
    bad_url = f"s3://{BUCKET}/{PROJECT}/../../etc/passwd"
    doc["data_files"][name] = dict(entry, url=bad_url)
    with pytest.raises(UnsafePathError, match=r"'\.\.' segment") as info:
        Manifest.from_bytes(json.dumps(doc).encode(), name=manifest_name(PROJECT, "1.0.0"))
    err = info.value
    assert err.key == f"{PROJECT}/../../etc/passwd" and err.url == bad_url
    assert err.manifest == manifest_name(PROJECT, "1.0.0")
    with pytest.raises(UnsafePathError) as info:
        check_relative_path("/etc/passwd", what="path in release")
    assert info.value.path == "/etc/passwd"


def test_manifest_not_found_names_the_manifest_asked_for():
    with pytest.raises(ManifestNotFoundError, match="9.9.9") as info:
        resolve_manifest_spec("9.9.9", names=lambda: [manifest_name(PROJECT, "1.0.0")], latest=lambda: None,
                              project=PROJECT)
    assert info.value.manifest == "9.9.9"


def test_store_layer_blob_that_does_not_match_its_name_names_blob_and_file(tmp_path):
    store = Store(tmp_path / "cache")
    claimed = hash_bytes(b"what the name promises")
    source = tmp_path / "layer" / "blob"
    source.parent.mkdir()
    source.write_bytes(b"something else")
    with pytest.raises(IntegrityError, match="does not match its name") as info:
        import_blob(store, source, claimed)
    err = info.value
    assert err.file_hash == err.expected == claimed and err.got == hash_bytes(b"something else")
    assert err.path == str(source)
    assert not store.has_blob(claimed)


def test_transfer_integrity_error_names_the_blob_its_version_and_what_arrived(tmp_path):
    mirror, _ = _release(tmp_path, corrupt=True)
    manifest = Manifest.from_path(mirror / PROJECT / "manifests" / manifest_name(PROJECT, "1.0.0"))
    entry = manifest.data_files["0"]
    store = Store(tmp_path / "cache")
    transfer = Transfer(store)
    try:
        with pytest.raises(IntegrityError) as info, pytest.warns(PublisherWarning, match="does not describe"):
            transfer.fetch(make_remote(mirror=mirror), entry)
    finally:
        transfer.close()
    err = info.value
    assert (err.file_hash, err.version_id, err.path, err.key) == (entry.file_hash, entry.version_id, "data/a.bin",
                                                                   entry.key)
    assert err.expected == entry.file_hash
    assert err.got == hash_bytes((mirror / PROJECT / "data" / "a.bin").read_bytes())
    assert not store.has_blob(entry.file_hash)


def test_transfer_download_error_after_retries_keeps_the_last_errors_context():
    def flaky() -> None:
        raise TransientRemoteError("connection reset", url="https://h/k", key="k", version_id="v3", status=503)

    with pytest.raises(DownloadError, match="gave up after 2 attempts") as info:
        RetryPolicy(max_attempts=2, backoff_base=0.0, backoff_max=0.0).call(flaky, what="GET k")
    assert info.value.context == {"url": "https://h/k", "key": "k", "version_id": "v3", "status": 503}


def test_cache_unknown_file_names_the_loaded_manifest(tmp_path):
    mirror, _ = _release(tmp_path)
    cache = CloudCache.from_mirror(tmp_path / "cache", mirror, PROJECT, progress=False)
    cache.load_manifest(manifest_name(PROJECT, "1.0.0"))
    with pytest.raises(UnknownFileError, match="is not in manifest") as info:
        cache.data_entry("99")
    assert info.value.manifest == manifest_name(PROJECT, "1.0.0")
    with pytest.raises(UnknownFileError, match="is not a metadata file") as info:
        cache.metadata_entry("no_such_table")
    assert info.value.manifest == manifest_name(PROJECT, "1.0.0")
