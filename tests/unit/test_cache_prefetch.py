"""Prefetch over a mirror directory: what it fetches, links and records."""

from __future__ import annotations

import pytest

from releasecache import CloudCache, OutdatedManifestWarning
from releasecache.manifest import manifest_name

from ._mirror import PROJECT, build_mirror


def test_prefetch_records_files_it_links_from_other_versions(tmp_path):
    mirror = build_mirror(tmp_path)
    cache = CloudCache.from_mirror(tmp_path / "cache", mirror, PROJECT, progress=False)
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(manifest_name(PROJECT, "0.1.0"))
    first = cache.prefetch(["0"], metadata=False)
    assert first.fetched == ["data/same.bin"] and first.ok

    cache.load_manifest(manifest_name(PROJECT, "0.2.0"))
    before = {(r["version"], r["path"]) for r in cache.used_files()}
    report = cache.prefetch(["0"], metadata=False)
    assert report.reused == ["data/same.bin"] and report.fetched == []  # linked, not downloaded
    assert (cache.cache_dir / f"{PROJECT}-0.2.0" / "data" / "same.bin").is_file()
    used = {(r["version"], r["path"]) for r in cache.used_files()}
    assert used - before == {("0.2.0", "data/same.bin")}
    (record,) = [r for r in cache.used_files() if r["version"] == "0.2.0"]
    assert record["streamed"] is False and record["file_hash"] == cache.data_entry("0").file_hash
