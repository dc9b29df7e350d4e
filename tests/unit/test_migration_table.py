"""docs/migration.md covers AllenSDK's public names, and every name it calls "same" exists here under that name."""

from __future__ import annotations

from pathlib import Path

import pytest

from releasecache import CloudCache, ProjectCache

DOC = (Path(__file__).resolve().parents[2] / "docs" / "migration.md").read_text()

# Public names of AllenSDK's S3CloudCache / CloudCacheBase / BasicLocalCache and of
# VisualBehaviorNeuropixelsProjectCache (read from AllenSDK's source).
CLOUD_CACHE_NAMES = [
    "manifest_file_names", "latest_manifest_file", "latest_downloaded_manifest_file", "current_manifest",
    "version", "file_id_column", "metadata_file_names", "project_name", "cache_dir",
    "list_all_downloaded_manifests", "load_manifest", "load_latest_manifest", "load_last_manifest",
    "compare_manifests", "summarize_comparison", "data_path", "metadata_path", "get_file_attributes",
    "download_data", "download_metadata", "get_metadata", "construct_local_manifest",
]
PROJECT_CACHE_NAMES = [
    "from_s3_cache", "from_local_cache", "BUCKET_NAME", "PROJECT_NAME", "MANIFEST_COMPATIBILITY",
    "list_manifest_file_names", "latest_manifest_file", "current_manifest", "list_all_downloaded_manifests",
    "latest_downloaded_manifest_file", "load_manifest", "load_latest_manifest", "compare_manifests",
    "construct_local_manifest", "get_ecephys_session_table", "get_behavior_session_table", "get_probe_table",
    "get_channel_table", "get_unit_table", "get_ecephys_session", "get_behavior_session",
]


def _table(title: str) -> list[list[str]]:
    section = DOC.split(title, 1)[1].split("\n### ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| AllenSDK") and not line.startswith("|---")]


@pytest.mark.parametrize("title, cls, names", [
    ("### The cloud cache", CloudCache, CLOUD_CACHE_NAMES),
    ("### The project cache", ProjectCache, PROJECT_CACHE_NAMES),
])
def test_every_allensdk_name_has_a_row_and_same_means_present(title, cls, names):
    rows = _table(title)
    assert rows and all(len(r) == 3 for r in rows), "each row: AllenSDK | releasecache | same or why"
    for name in names:
        matching = [r for r in rows if f"`{name}`" in r[0] or f"`{name}(" in r[0] or f" {name}," in r[0]
                    or f" {name}`" in r[0] or f"`{name}," in r[0]]
        assert matching, f"docs/migration.md has no row for AllenSDK's {name}"
        if any(r[2].startswith("same") for r in matching):
            assert hasattr(cls, name), f"{name} is documented as the same but {cls.__name__} has no {name}"
    for row in rows:
        assert row[2].startswith(("same", "differs")), row
