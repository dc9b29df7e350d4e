"""AuditDiff: the manifest diff of the fixture release with row and NWB diffs, fetched lazily, offline when cached."""

from __future__ import annotations

import json
import logging

import pytest

from releasecache import CloudCache
from releasecache.audit import audit_manifests
from releasecache.errors import OfflineError, UnknownFileError

E1 = "behavior_ecephys_sessions/1044385384/ecephys_session_1044385384.nwb"


@pytest.fixture
def vbn_cache(vbn_bucket, tmp_path):
    return CloudCache.from_s3(tmp_path / "cache", vbn_bucket.bucket, vbn_bucket.project,
                              endpoint_url=vbn_bucket.endpoint_url, progress=False)


def test_rows_fetched_after_saying_so_then_offline(vbn_cache, vbn_bucket, tmp_path, caplog):
    v1, v2, _ = vbn_bucket.names
    diff = audit_manifests(vbn_cache, v1, v2)
    assert sorted(diff.tables) == ["behavior_sessions", "units"]
    plan = diff.fetch_plan(tables=True)
    assert len(plan.fetches) == 4 and plan.total > 0 and "units.csv (0.1.0" in plan.summary()
    with caplog.at_level(logging.WARNING, logger="releasecache"):
        units = diff.tables["units"]
    assert "fetching 2 files" in caplog.text and "project_metadata/units.csv (0.1.0" in caplog.text
    assert units.columns_added == ["quality"] and list(units.column_changes) == ["amplitude"]
    assert diff.tables["units.csv"] is units and diff.table_diff("project_metadata/units.csv") is units
    text = str(diff)
    assert "project_metadata/units.csv changed\n    rows: 50 -> 50" in text
    assert "**columns added**: quality" in diff.to_markdown()
    as_json = json.loads(diff.to_json())
    units_change = next(c for c in as_json["changes"] if c["path"] == "project_metadata/units.csv")
    assert units_change["details"]["columns_added"] == ["quality"]

    offline = CloudCache.from_local_cache(tmp_path / "cache", vbn_bucket.project)
    again = audit_manifests(offline, v1, v2)
    assert not again.fetch_plan(tables=["units"])  # both versions cached: no network needed
    assert again.tables["units"].column_changes["amplitude"].rows == units.column_changes["amplitude"].rows
    with pytest.raises(OfflineError, match="behavior_sessions.csv"):
        again.tables["behavior_sessions"]


def test_nwb_file_diff_cached_and_streamed(vbn_cache, vbn_bucket):
    v1, v2, v3 = vbn_bucket.names
    diff = audit_manifests(vbn_cache, v1, v2)
    assert list(diff.files) == [E1]
    streamed = diff.file_diff(E1, stream=True)
    assert streamed.paths == ["units/amplitude", "units/spike_amplitudes", "units/waveform_mean"]
    assert streamed.bytes_read_old is not None
    assert not vbn_cache.store.find_blob(diff.old_manifest.by_relative_path()[E1].file_hash)  # nothing written
    cached = diff.files[E1]  # downloads both versions, then reads them locally
    assert cached.paths == streamed.paths and cached.bytes_read_old is None
    assert f"{E1} changed\n    3 NWB objects differ" in str(diff)
    later = audit_manifests(vbn_cache, v2, v3)
    assert later.file_diff("ecephys_session_1044385384.nwb").paths == [
        "general/extracellular_ephys/electrodes/valid_data"]
    with pytest.raises(UnknownFileError, match="did not change"):
        diff.file_diff("behavior_only_sessions/1028043324/behavior_session_1028043324.nwb")
