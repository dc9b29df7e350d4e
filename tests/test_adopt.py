"""Adopting an AllenSDK cache directory or a bucket copy, against the loopback S3 server."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import pytest

from releasecache import CloudCache, OutdatedManifestWarning
from releasecache.cache.adopt import adopt, detect_layout
from releasecache.errors import SourceLayoutError
from tests.support.fixtures.toy import PROJECT
from releasecache.utils import hash_file as file_blake2b


def manifest_bytes(s3_server, bucket: str, name: str) -> bytes:
    body = s3_server.admin_client().get_object(Bucket=bucket, Key=f"{PROJECT}/manifests/{name}")["Body"]
    return body.read()


def make_allensdk_cache(root, toy_release, toy_bucket, s3_server):
    """An AllenSDK-style cache: two version folders, an absolute symlink between them, one damaged file."""
    v1, v2 = f"{PROJECT}-0.1.0", f"{PROJECT}-0.2.0"
    src = toy_release["0.1.0"] / PROJECT
    recorded = {}
    for rel in ("project_metadata/units.csv", "project_metadata/sessions.csv", "sessions/100/probe_A.dat",
                "sessions/100/session_100.dat"):
        dest = root / v1 / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dest)
        recorded[str(dest)] = file_blake2b(src / rel)
    damaged = root / v1 / "sessions/100/session_100.dat"
    damaged.write_bytes(b"\0" * 100 + damaged.read_bytes()[100:])  # bit rot: same size, other bytes
    link = root / v2 / "sessions/100/probe_A.dat"  # AllenSDK links unchanged files with absolute paths
    link.parent.mkdir(parents=True)
    os.symlink(root / v1 / "sessions/100/probe_A.dat", link)
    recorded[str(link)] = recorded[str(root / v1 / "sessions/100/probe_A.dat")]
    (root / "_downloaded_data.json").write_text(json.dumps(recorded))
    (root / "_manifest_last_used.txt").write_text(toy_bucket.names[1])
    for name in toy_bucket.names[:2]:
        (root / name).write_bytes(manifest_bytes(s3_server, toy_bucket.bucket, name))
    return root


def _load(cache, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutdatedManifestWarning)
        cache.load_manifest(name)


def test_adopt_allensdk_cache_downloads_nothing_already_there(tmp_path, toy_release, toy_bucket, s3_server, proxy,
                                                              make_cache):
    allen = make_allensdk_cache(tmp_path / "allen", toy_release, toy_bucket, s3_server)
    assert detect_layout(allen, PROJECT) == ("allensdk", allen)
    cache = make_cache(tmp_path / "cache", endpoint_url=proxy.url)
    report = adopt(cache, allen)
    assert report.layout == "allensdk" and report.manifests == toy_bucket.names[:2]
    assert sorted(a["path"] for a in report.adopted) == [
        "project_metadata/sessions.csv", "project_metadata/units.csv", "sessions/100/probe_A.dat"]
    assert [m["path"] for m in report.mismatched] == ["sessions/100/session_100.dat"]
    assert "sessions/101/session_101.dat" in report.missing and not report.ok
    assert proxy.stats.gets() == 0  # adopting reads manifests only, never data
    # the views of both versions now show the adopted files, as relative links into the blobs
    for version in ("0.1.0", "0.2.0"):
        view = cache.cache_dir / f"{PROJECT}-{version}" / "sessions/100/probe_A.dat"
        assert view.is_symlink() and not os.path.isabs(os.readlink(view))
        assert view.read_bytes() == (toy_release["0.1.0"] / PROJECT / "sessions/100/probe_A.dat").read_bytes()
    # a full download of 0.1.0 now fetches only what was missing or damaged
    _load(cache, toy_bucket.names[0])
    result = cache.prefetch(progress=False)
    assert result.ok, result.failed
    for adopted in report.adopted:
        assert proxy.stats.gets(adopted["path"]) == 0, adopted["path"]
    assert proxy.stats.gets("sessions/100/session_100.dat") == 1  # the damaged one was re-downloaded
    assert sorted(result.fetched) == sorted(
        set(e.relative_path for e in cache.manifest.entries()) - {a["path"] for a in report.adopted})
    # the source was only read
    assert (allen / f"{PROJECT}-0.1.0" / "project_metadata/units.csv").stat().st_mode & 0o200
    again = adopt(cache, allen)
    assert not again.adopted and "project_metadata/units.csv" in again.present and again.ok


def test_adopt_bucket_mirror_hardlink_and_offline(tmp_path, toy_release, toy_bucket, s3_server):
    mirror = tmp_path / "mirror"
    shutil.copytree(toy_release["0.3.0"] / PROJECT, mirror / PROJECT)
    (mirror / PROJECT / "manifests").mkdir()
    for name in toy_bucket.names:
        (mirror / PROJECT / "manifests" / name).write_bytes(manifest_bytes(s3_server, toy_bucket.bucket, name))
    assert detect_layout(mirror, PROJECT) == ("mirror", mirror)
    assert detect_layout(mirror / PROJECT, PROJECT) == ("mirror", mirror)
    # offline: no remote at all (a new, empty cache), the mirror's manifest copies are validated and used
    offline = CloudCache(tmp_path / "cache", None, PROJECT, progress=False)
    dry = adopt(offline, mirror, dry_run=True)
    assert dry.dry_run and len(dry.adopted) == 10 and not any((tmp_path / "cache").glob("blobs/*/*/*"))
    report = adopt(offline, mirror, mode="hardlink")
    assert report.ok and report.manifests == [toy_bucket.names[-1]] and not report.missing
    assert len(report.adopted) == 10 and {a["mode"] for a in report.adopted} == {"hardlink"}
    assert any("offline" in note for note in report.notes)
    offline.load_latest_manifest()
    path = offline.download_data(1)
    source = mirror / PROJECT / "sessions/100/probe_A.dat"
    assert os.path.samefile(path, source)  # hard-linked: no extra space
    assert offline.get_metadata("extra").shape == (3, 3)


def test_adopt_refuses_unknown_layouts(tmp_path, make_cache):
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("hello")
    with pytest.raises(SourceLayoutError, match="neither like an AllenSDK cache"):
        adopt(make_cache(tmp_path / "cache"), tmp_path / "random")
    cache = make_cache(tmp_path / "cache")
    with pytest.raises(SourceLayoutError, match="overlaps the cache directory"):
        adopt(cache, tmp_path / "cache")
