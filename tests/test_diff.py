"""compare_manifests on the published toy release: every kind of change."""

from __future__ import annotations

import pytest

from releasecache import compare_manifests
from releasecache.manifest.diff import EQUIVALENT_TEXT


def test_every_kind_of_change(toy_bucket):
    v1, v2, v3 = toy_bucket.manifests
    diff = compare_manifests(v1, v2)
    assert [c.path for c in diff.changed] == ["project_metadata/units.csv", "sessions/102/session_102.dat"]
    assert [c.path for c in diff.created] == ["sessions/104/session_104.dat"]
    assert [c.path for c in diff.deleted] == ["sessions/103/session_103.dat"]
    assert [(c.path, c.new_path) for c in diff.renamed] == [("sessions/101/session_101.dat", "moved/101/session_101.dat")]
    text = str(diff)
    assert "project_metadata/units.csv changed" in text
    assert "sessions/101/session_101.dat renamed moved/101/session_101.dat" in text
    assert "sessions/103/session_103.dat deleted" in text
    assert text.index("units.csv") < text.index("session_102")  # metadata first
    assert text.splitlines()[:5] == ["Changes going from", v1.name, "to", v2.name, ""]  # AllenSDK's header
    frame = diff.to_frame()
    assert len(frame) == 5 and set(frame["kind"]) == {"changed", "created", "deleted", "renamed"}
    assert frame.loc[frame.kind == "changed", "section"].tolist() == ["metadata", "data"]


def test_metadata_created_and_deleted(toy_bucket):
    _, v2, v3 = toy_bucket.manifests
    diff = compare_manifests(v2, v3)
    kinds = {(c.kind, c.path) for c in diff.metadata_changes}
    assert kinds == {("changed", "project_metadata/channels.csv"), ("created", "project_metadata/extra.csv"),
                     ("deleted", "project_metadata/probes.csv")}
    assert "Changes to metadata files" in diff.to_markdown() or "Created" in diff.to_markdown()


def test_equivalent(toy_bucket, tmp_path):
    v1 = toy_bucket.manifests[0]
    path = tmp_path / v1.name
    path.write_text(v1.to_json())
    diff = compare_manifests(v1, path)
    assert diff.equivalent and diff == EQUIVALENT_TEXT and str(diff) == EQUIVALENT_TEXT
    assert diff.to_dict()["equivalent"] is True


def _committed():
    import importlib.util
    from pathlib import Path

    here = Path(__file__).resolve().parent.parent / "manifests_fixtures"
    spec = importlib.util.spec_from_file_location("regenerate", here / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, sorted((here / "vbn").glob("*.json"))


def test_committed_vbn_manifests_match_the_fixture(vbn_bucket):
    """manifests_fixtures/vbn/ describes exactly the bytes the tests publish (only version ids differ)."""
    import json

    from releasecache.manifest import Manifest
    from releasecache.vbn.project import BUCKET_NAME, PROJECT_NAME
    from releasecache.cache.publish import build_manifest

    module, paths = _committed()
    assert [p.name for p in paths] == vbn_bucket.names
    for path, published, (version, source) in zip(paths, vbn_bucket.manifests, sorted(vbn_bucket.release.items())):
        committed = json.loads(path.read_text())
        assert committed == build_manifest(PROJECT_NAME, version, source, bucket=BUCKET_NAME,
                                           version_id_for=module.fixture_version_id)
        strip = lambda m: {e.relative_path: (e.url, e.file_hash) for e in m.entries()}  # noqa: E731
        assert strip(Manifest.from_path(path)) == strip(published)


@pytest.mark.unit  # committed files only, no server
def test_offline_diff_of_committed_manifests():
    _, (v1, v2, v3) = _committed()
    diff = compare_manifests(v1, v3)
    assert {c.kind for c in diff.changes} == {"changed", "created", "deleted", "renamed"}
    assert "project_metadata/units.csv changed" in str(diff)
    assert any(c.section == "metadata" for c in diff.changed) and any(c.section == "data" for c in diff.changed)
