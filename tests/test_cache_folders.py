"""The README and docs/how-it-works.md list every folder and file a cache directory gets."""

from __future__ import annotations

import re
from pathlib import Path

from releasecache import ProjectCache

ROOT = Path(__file__).resolve().parent.parent


def _listed(text: str) -> set[str]:
    """Top-level names in the ``<cache_dir>/`` block of a document."""
    block = text.split("<cache_dir>/\n", 1)[1].split("```", 1)[0]
    names = set()
    for line in block.splitlines():
        for token in line.split("  ")[:3]:
            token = token.strip()
            if token:
                names.add(re.split(r"/", token, maxsplit=1)[0])
    return names


def test_every_folder_the_cache_creates_is_documented(tmp_path, vbn_bucket):
    cache = ProjectCache.from_s3(tmp_path / "c", endpoint_url=vbn_bucket.endpoint_url, progress=False)
    cache.get_unit_table()  # .tables/
    session = int(cache.get_ecephys_session_table().index[0])
    cache.prefetch(ecephys_session_ids=[session], progress=False)  # blobs/, views, .locks/, .stamps/
    # a damaged blob is moved aside by verify: .quarantine/
    entry = cache.cache.metadata_entry("units")
    blob = cache.cache.store.blob_path(entry.file_hash)
    blob.chmod(0o644)
    blob.write_bytes(b"damaged")
    assert not cache.cache.verify(mode="full").ok
    created = {p.name for p in (tmp_path / "c").iterdir()}
    view = f"{vbn_bucket.project}-{cache.manifest.version}"
    assert view in created
    created = {"<project>-<version>" if name == view else name for name in created}
    assert {"manifests", "blobs", ".tables", ".quarantine", "state"} <= created
    for doc in ("README.md", "docs/how-it-works.md"):
        listed = _listed((ROOT / doc).read_text())
        missing = created - listed
        assert not missing, f"{doc} does not list {sorted(missing)} in its cache directory block"
        for name in (".partial", ".locks", ".stamps", ".quarantine", ".tables", "manifests", "blobs", "state"):
            assert name in listed, f"{doc} does not list {name}"


def test_every_folder_named_in_the_source_is_documented():
    """Folders the code names directly under a cache directory (some appear only with options, e.g. a budget)."""
    named = set()
    for path in (ROOT / "src" / "releasecache").rglob("*.py"):
        named |= set(re.findall(r'(?:store\.root|self\.root|cache_dir) / "([^"]+)"', path.read_text()))
    assert {"manifests", "blobs", "state", ".partial"} <= named, named
    for doc in ("README.md", "docs/how-it-works.md"):
        missing = named - _listed((ROOT / doc).read_text())
        assert not missing, f"{doc} does not list {sorted(missing)} in its cache directory block"
