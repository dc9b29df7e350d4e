"""Publisher mistakes found by comparing manifests (the committed fixture manifests, then broken copies)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from releasecache.manifest.consistency import duplicate_versions, republished, version_id_conflicts, warn
from releasecache.errors import PublisherWarning
from releasecache.manifest import Manifest

pytestmark = pytest.mark.unit  # no server: part of the fast layer subset (pytest -m unit)

FIXTURES = Path(__file__).resolve().parent.parent / "manifests_fixtures" / "vbn"


def _raw():
    return [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]


def _manifests(raws):
    return [Manifest.from_dict(r, name=f"visual-behavior-neuropixels_project_manifest_v{r['manifest_version']}.json")
            for r in raws]


def test_the_fixture_release_is_consistent():
    raws = _raw()
    assert version_id_conflicts(_manifests(raws)) == []
    assert duplicate_versions({f"m{i}.json": json.dumps(r).encode() for i, r in enumerate(raws)}) == []


def test_one_version_id_with_two_hashes():
    raws = _raw()
    units_v1 = raws[0]["metadata_files"]["probes"]
    raws[1]["metadata_files"]["probes"]["file_hash"] = "f" * 128  # same url and version id, other content
    assert raws[1]["metadata_files"]["probes"]["version_id"] == units_v1["version_id"]
    messages = version_id_conflicts(_manifests(raws))
    assert len(messages) == 1  # reported once, not once per later version
    assert "project_metadata/probes.csv" in messages[0] and units_v1["version_id"] in messages[0]
    assert "v0.1.0" in messages[0] and "v0.2.0" in messages[0]
    with pytest.warns(PublisherWarning, match="one version id is one object"):
        warn(messages)


def test_a_version_published_twice():
    raws = _raw()
    changed = json.loads(json.dumps(raws[2]))
    changed["metadata_files"]["units"]["file_hash"] = "e" * 128
    copies = {"a_v0.3.0.json": json.dumps(raws[2]).encode(), "b_v0.3.0.json": json.dumps(changed).encode(),
              "c_v0.2.0.json": json.dumps(raws[1]).encode()}
    messages = duplicate_versions(copies)
    assert len(messages) == 1 and messages[0].startswith("version 0.3.0 was published more than once")
    assert republished("x.json", b"same", b"same") is None
    assert "published again with different content" in republished("x.json", b"old", b"new")
