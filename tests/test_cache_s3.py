"""The cache end to end against the loopback S3 server."""

from __future__ import annotations

import os
import shutil
import stat
import warnings
from pathlib import Path

import pytest

from releasecache import CloudCache, OutdatedManifestWarning
from releasecache.errors import (
    ManifestNotFoundError,
    NoManifestLoadedError,
    OfflineError,
    UnknownFileError,
)
from tests.support.fixtures.toy import PROJECT
from releasecache.utils import hash_file as file_blake2b


def _load(cache, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        return cache.load_manifest(name)


def test_lists_manifests_in_semver_order(make_cache, toy_bucket):
    cache = make_cache()
    names = cache.list_manifest_file_names()
    assert names == toy_bucket.names
    assert names[0].endswith("_v0.1.0.json") and cache.latest_manifest_file() == names[-1]
    assert cache.list_all_downloaded_manifests() == [] and cache.latest_downloaded_manifest_file() == ""
    assert cache.current_manifest() is None
    with pytest.raises(NoManifestLoadedError):
        cache.download_data(0)


def test_outdated_warning_names_the_calls(make_cache, toy_bucket):
    cache = make_cache()
    with pytest.warns(OutdatedManifestWarning) as record:
        cache.load_manifest(toy_bucket.names[0])
    message = str(record[0].message)
    assert f"CloudCache.compare_manifests('{toy_bucket.names[0]}', '{toy_bucket.names[-1]}')" in message
    assert "CloudCache.load_latest_manifest()" in message
    assert cache.current_manifest() == toy_bucket.names[0]
    with pytest.warns(OutdatedManifestWarning, match="It is possible that some data files"):
        cache.load_latest_manifest()  # moves past the newest manifest used here before (as AllenSDK warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.load_latest_manifest()  # no warning once the latest is the newest used
    assert cache.list_all_downloaded_manifests() == [toy_bucket.names[0], toy_bucket.names[-1]]


def test_download_verifies_and_links_relatively(make_cache, toy_bucket, toy_release):
    cache = make_cache()
    _load(cache, toy_bucket.names[0])
    path = cache.download_data(1)  # the 300 kB file: several ranged parts
    assert path == cache.cache_dir / f"{PROJECT}-0.1.0" / "sessions/100/probe_A.dat"
    assert path.is_symlink() and not os.path.isabs(os.readlink(path))
    source = toy_release["0.1.0"] / PROJECT / "sessions/100/probe_A.dat"
    assert path.read_bytes() == source.read_bytes()
    blob = path.resolve()
    assert blob.parent.parent.name == "blake2b" and blob.name == file_blake2b(source)
    assert not (blob.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))  # read-only
    assert not any((cache.cache_dir / ".partial").iterdir())
    csv = cache.download_metadata("units")
    assert csv.name == "units.csv" and csv.read_bytes().startswith(b"id,file_id,value")
    frame = cache.get_metadata("units.csv")
    assert list(frame.columns) == ["id", "file_id", "value"] and len(frame) == 40
    info = cache.data_path(2)
    assert info["exists"] is False and info["local_path"].name == "session_101.dat"
    assert cache.metadata_path("units")["exists"] is True
    empty = cache.download_data(6)
    assert empty.read_bytes() == b""


def test_unknown_ids_are_clear(make_cache, toy_bucket):
    cache = make_cache()
    _load(cache, toy_bucket.names[0])
    with pytest.raises(UnknownFileError, match="file id 99 is not in manifest"):
        cache.download_data(99)
    with pytest.raises(UnknownFileError, match="choose from"):
        cache.download_metadata("nope")
    with pytest.raises(ManifestNotFoundError):
        cache.load_manifest(f"{PROJECT}_project_manifest_v9.9.9.json")


def test_version_switch_downloads_only_changes(make_cache, toy_bucket, proxy):
    cache = make_cache(endpoint_url=proxy.url)
    _load(cache, toy_bucket.names[0])
    report = cache.prefetch(progress=False)
    assert report.ok and len(report.fetched) == 10
    first_gets = proxy.stats.gets()
    proxy.clear()
    cache.load_latest_manifest()  # 0.3.0
    report = cache.prefetch(progress=False)
    assert report.ok, report.failed
    # 0.1.0 -> 0.3.0 changed units.csv, channels.csv, session_100, session_102, created extra.csv, session_104.
    assert sorted(report.fetched) == sorted([
        "project_metadata/units.csv", "project_metadata/channels.csv", "project_metadata/extra.csv",
        "sessions/100/session_100.dat", "sessions/102/session_102.dat", "sessions/104/session_104.dat"])
    assert "moved/101/session_101.dat" in report.reused  # renamed: linked, not downloaded
    assert proxy.stats.gets() == 6 < first_gets
    a = cache.cache_dir / f"{PROJECT}-0.1.0" / "sessions/100/probe_A.dat"
    b = cache.cache_dir / f"{PROJECT}-0.3.0" / "sessions/100/probe_A.dat"
    assert a.resolve() == b.resolve() and os.readlink(b) == os.readlink(a)  # one blob, relative links


def test_moved_cache_keeps_working_offline(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "a")
    _load(cache, toy_bucket.names[-1])
    cache.prefetch(progress=False)
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    offline = CloudCache.from_local_cache(tmp_path / "b", PROJECT, progress=False)
    offline.load_last_manifest()
    assert offline.current_manifest() == toy_bucket.names[-1]
    assert offline.list_manifest_file_names() == [toy_bucket.names[-1]]
    path = offline.download_data(1)
    assert path.is_relative_to(tmp_path / "b") and len(path.read_bytes()) == 300_000
    with pytest.raises(ManifestNotFoundError, match="not in the offline cache"):
        offline.load_manifest(toy_bucket.names[0])


def test_offline_says_what_is_missing(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "c")
    _load(cache, toy_bucket.names[-1])
    cache.download_metadata("units")
    offline = CloudCache.from_local_cache(tmp_path / "c", PROJECT, progress=False)
    offline.load_last_manifest()
    assert offline.download_metadata("units").exists()
    with pytest.raises(OfflineError, match="not in the cache .* offline"):
        offline.download_data(1)


def test_last_used_manifest_is_remembered(make_cache, toy_bucket, tmp_path):
    cache = make_cache(tmp_path / "d")
    _load(cache, toy_bucket.names[1])
    again = make_cache(tmp_path / "d")
    with pytest.warns(OutdatedManifestWarning):
        again.load_last_manifest()
    assert again.current_manifest() == toy_bucket.names[1]
    fresh = make_cache(tmp_path / "e")
    fresh.load_last_manifest()
    assert fresh.current_manifest() == toy_bucket.names[-1]


def test_compare_manifests_method(make_cache, toy_bucket):
    cache = make_cache()
    diff = cache.compare_manifests(toy_bucket.names[0], toy_bucket.names[1])
    assert "project_metadata/units.csv changed" in str(diff)
    assert "sessions/101/session_101.dat renamed moved/101/session_101.dat" in str(diff)
    assert len(cache.list_all_downloaded_manifests()) == 2


def test_bad_manifest_on_server_writes_nothing(tmp_path, fresh_bucket, s3_server):
    publisher = s3_server.publisher(fresh_bucket.bucket)
    bad_name = f"{PROJECT}_project_manifest_v9.0.0.json"
    good = fresh_bucket.manifests[0].raw
    hostile = dict(good, data_files={"1": dict(good["data_files"]["1"], url="https://xyz-bucket.s3.amazonaws.com/p/../../../../etc/x")})
    import json as _json

    publisher.put_object(f"{PROJECT}/manifests/{bad_name}", _json.dumps(hostile).encode())
    cache = CloudCache.from_s3(tmp_path / "c", fresh_bucket.bucket, PROJECT, endpoint_url=fresh_bucket.endpoint_url,
                               progress=False)
    from releasecache.errors import UnsafePathError

    with pytest.raises(UnsafePathError, match=r"'\.\.' segment"):
        cache.load_manifest(bad_name)
    assert not (tmp_path / "c" / "manifests" / bad_name).exists()
    assert cache.current_manifest() is None


def test_offline_on_a_missing_directory_is_clear(tmp_path):
    with pytest.raises(OfflineError, match="holds no downloaded manifests"):
        CloudCache.from_local_cache(tmp_path / "nowhere", PROJECT)
    assert not (tmp_path / "nowhere").exists()
