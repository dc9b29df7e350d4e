"""ProjectCache on the VBN fixture release served by the loopback S3 server."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from releasecache import OutdatedManifestWarning, ProjectCache
from releasecache.errors import ManifestVersionError, UnknownSessionError
from tests.support.s3server import publish_fixture


@pytest.fixture
def project(tmp_path, vbn_bucket):
    def make(cache_dir=None, **kwargs):
        return ProjectCache.from_s3(cache_dir or tmp_path / "cache", endpoint_url=vbn_bucket.endpoint_url,
                                    progress=False, **kwargs)
    return make


def _blobs(cache) -> int:
    return sum(1 for _ in cache.cache.store.iter_blobs())


def test_creating_the_cache_downloads_nothing_big(project, vbn_bucket):
    cache = project()
    assert cache.current_manifest() == vbn_bucket.names[-1]
    assert _blobs(cache) == 0  # only the manifest; AllenSDK fetches all five CSVs here
    cache.get_ecephys_session_table()
    assert _blobs(cache) == 1 and not cache.cache.metadata_path("units")["exists"]
    cache.get_unit_table()
    assert cache.cache.metadata_path("units")["exists"]


def test_tables_have_real_indexes_and_types(project):
    cache = project()
    sessions = cache.get_ecephys_session_table(filter_abnormalities=False)
    assert sessions.index.name == "ecephys_session_id"
    for column in ("unit_count", "probe_count", "channel_count", "prior_exposures_to_image_set"):
        assert str(sessions[column].dtype) == "Int64"
    assert sessions["structure_acronyms"].iloc[0].startswith("['")  # list-valued strings stay strings
    behavior = cache.get_behavior_session_table()
    assert behavior.index.name == "behavior_session_id" and str(behavior["ecephys_session_id"].dtype) == "Int64"
    assert (behavior["file_id"] == -999).sum() == len(sessions)  # released ecephys sessions have no own file
    assert cache.get_probe_table().index.name == "ecephys_probe_id"
    assert cache.get_channel_table().index.name == "ecephys_channel_id"
    units = cache.get_unit_table()
    assert units.index.name == "unit_id" and units["ecephys_probe_id"].dtype == "int64"
    # One shared file-id space: probe LFP files, then sessions, then behavior-only sessions.
    probe_ids = cache.get_probe_table()["file_id"]
    assert probe_ids[probe_ids >= 0].max() < sessions["file_id"].min() < behavior.loc[behavior.file_id >= 0, "file_id"].min()


def test_abnormality_filter(project):
    cache = project()
    everything = cache.get_ecephys_session_table(filter_abnormalities=False)
    kept = cache.get_ecephys_session_table()
    expected = everything[everything.abnormal_histology.isna() & everything.abnormal_activity.isna()]
    assert list(kept.index) == list(expected.index) and len(kept) < len(everything)


def test_returned_frames_are_safe_to_mutate(project):
    cache = project()
    units = cache.get_unit_table()
    units["firing_rate"] = -1.0
    units.loc[units.index[0], "structure_acronym"] = "changed"
    # In-place edits of the shared blocks and of the axes (the copy is shallow under copy-on-write).
    units.iloc[0, units.columns.get_loc("snr")] = -123.0
    units["amplitude"] *= 0
    units.index.name = "renamed"
    units.columns.name = "renamed too"
    again = cache.get_unit_table()
    assert (again["firing_rate"] != -1.0).all() and "changed" not in set(again["structure_acronym"])
    assert again["snr"].iloc[0] != -123.0 and (again["amplitude"] != 0).any()
    assert again.index.name == "unit_id" and again.columns.name is None
    sessions = cache.get_ecephys_session_table(filter_abnormalities=False)
    sessions.iloc[0, 0] = None
    assert cache.get_ecephys_session_table(filter_abnormalities=False).iloc[0, 0] is not None


def test_warm_reload_uses_the_columnar_sidecar(project, tmp_path):
    cache = project()
    first = cache.get_unit_table()
    sidecars = list((cache.cache.cache_dir / ".tables").glob("*"))
    assert sidecars  # written on first load, keyed by the CSV's content hash
    entry = cache.cache.metadata_entry("units")
    assert any(entry.file_hash[:16] in p.name for p in sidecars)
    warm = project()  # a new process would do the same: nothing to parse
    pd.testing.assert_frame_equal(warm.get_unit_table(), first)


def test_version_switch_refreshes_tables_and_sessions(project, vbn_bucket):
    cache = project()
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(vbn_bucket.names[0])
    old_units = cache.get_unit_table()
    old_files = cache.list_data_files()
    cache.load_latest_manifest()
    new_units = cache.get_unit_table()
    assert "quality" not in old_units.columns and "quality" in new_units.columns  # units.csv changed
    diff = cache.compare_manifests(vbn_bucket.names[0], vbn_bucket.names[-1])
    assert "project_metadata/units.csv changed" in str(diff)
    changed_nwb = [c.path for c in diff.changed if c.path.endswith(".nwb") and "ecephys_session_" in c.path]
    assert changed_nwb
    new_files = cache.list_data_files().set_index("path")
    old_files = old_files.set_index("path")
    path = changed_nwb[0]
    assert old_files.loc[path, "file_hash"] != new_files.loc[path, "file_hash"]


def test_sessions_and_lazy_lfp(project):
    cache = project()
    session_id = cache.get_ecephys_session_table().index[0]
    files = cache.list_data_files(ecephys_session_id=session_id)
    assert list(files.columns) == ["file_id", "path", "file_hash", "version_id", "cached"]
    assert not files["cached"].any()
    with cache.get_ecephys_session(session_id) as session:
        files = cache.list_data_files(ecephys_session_id=session_id)
        nwb = files[files.path.str.endswith(f"ecephys_session_{session_id}.nwb")]
        lfp = files[files.path.str.contains("_lfp.nwb")]
        assert nwb["cached"].all() and not lfp["cached"].any()  # LFP files wait until asked for
        units = session.get_units()
        assert len(units) == len(cache.get_unit_table().query("ecephys_session_id == @session_id"))
        probe_id = session.probes.index[0]
        data = session.get_lfp(probe_id)
        assert data.dims == ("time", "channel") and data.name == "LFP"
        files = cache.list_data_files(ecephys_session_id=session_id)
        assert files["cached"].sum() == 2  # the session and exactly one probe file
        assert session.trials.index.name == "trials_id"


def test_behavior_session_of_an_ecephys_session_reads_the_ecephys_file(project):
    cache = project()
    behavior = cache.get_behavior_session_table()
    row = behavior[behavior.file_id == -999].iloc[0]
    files = cache.list_data_files(behavior_session_id=row.name)
    assert files.path.iloc[0].endswith(f"ecephys_session_{row.ecephys_session_id}.nwb")
    with cache.get_behavior_session(row.name) as session:
        assert session.behavior_session_id == row.name
        assert len(session.trials) > 0
    only = behavior[behavior.file_id >= 0].index[0]
    with cache.get_behavior_session(only) as session:
        assert session.behavior_session_id == only


def test_bad_ids_are_clear(project):
    cache = project()
    with pytest.raises(UnknownSessionError, match=r"ecephys_session_id 123 is not in ecephys_sessions.csv .* e\.g\. "):
        cache.get_ecephys_session(123)
    with pytest.raises(UnknownSessionError, match="behavior_session_id 5 is not in behavior_sessions.csv"):
        cache.get_behavior_session(5)


def test_session_without_a_file(tmp_path, s3_server, vbn_release):
    # A release whose ecephys_sessions.csv marks one session's file as missing (-999).
    source = tmp_path / "rel"
    shutil.copytree(vbn_release["0.3.0"], source)
    csv = source / "visual-behavior-neuropixels/project_metadata/ecephys_sessions.csv"
    table = pd.read_csv(csv)
    missing = int(table.ecephys_session_id.iloc[-1])
    table.loc[table.index[-1], "file_id"] = -999
    table.to_csv(csv, index=False)
    publish_fixture(s3_server, "vbn-missing-file", "visual-behavior-neuropixels", {"1.0.0": source})
    cache = ProjectCache.from_s3(tmp_path / "c", bucket="vbn-missing-file", endpoint_url=s3_server.endpoint_url,
                                 progress=False)
    with pytest.raises(UnknownSessionError, match=f"ecephys session {missing} has no NWB file .*file_id -999"):
        cache.get_ecephys_session(missing)


def test_prefetch_by_session(project):
    cache = project()
    session_id = cache.get_ecephys_session_table().index[0]
    report = cache.prefetch(ecephys_session_ids=[session_id], metadata=False, progress=False)
    assert report.ok and len(report.fetched) == len(cache.list_data_files(ecephys_session_id=session_id))
    assert cache.list_data_files(ecephys_session_id=session_id)["cached"].all()


def test_manifest_methods_and_version_gate(project, vbn_bucket, tmp_path):
    cache = project()
    assert cache.list_manifest_file_names() == vbn_bucket.names
    assert cache.latest_manifest_file() == vbn_bucket.names[-1]
    assert cache.latest_downloaded_manifest_file() == vbn_bucket.names[-1]
    assert cache.list_all_downloaded_manifests() == [vbn_bucket.names[-1]]
    offline = ProjectCache.from_local_cache(tmp_path / "cache")
    assert offline.current_manifest() == vbn_bucket.names[-1]
    import releasecache.vbn.project as module

    old = module.MANIFEST_COMPATIBILITY
    module.MANIFEST_COMPATIBILITY = ("1.0.0", "2.0.0")
    try:
        with pytest.raises(ManifestVersionError, match="skip_version_check=True"):
            project(tmp_path / "other")
        assert project(tmp_path / "other", skip_version_check=True).current_manifest()
    finally:
        module.MANIFEST_COMPATIBILITY = old


def test_switching_manifests_parses_each_once_and_a_refused_one_leaves_no_trace(project, vbn_bucket, monkeypatch):
    from releasecache.manifest import Manifest
    import releasecache.vbn.project as module

    cache = project()
    with pytest.warns(OutdatedManifestWarning):
        cache.load_manifest(vbn_bucket.names[0])  # downloaded and saved once
    cache.load_latest_manifest()
    parsed = []
    original = Manifest.from_path.__func__
    monkeypatch.setattr(Manifest, "from_path", classmethod(lambda cls, path, *a, **k: (
        parsed.append(Path(path).name), original(cls, path, *a, **k))[1]))
    cache.load_manifest(vbn_bucket.names[0])  # warned about once already
    assert parsed == [vbn_bucket.names[0]]  # the version check reads the same parsed copy
    parsed.clear()
    cache.load_latest_manifest()
    assert parsed == [vbn_bucket.names[-1]]
    monkeypatch.setattr(module, "MANIFEST_COMPATIBILITY", ("1.0.0", "2.0.0"))
    last_used = cache.cache.last_used_manifest_file()
    with pytest.raises(ManifestVersionError):
        cache.load_manifest(vbn_bucket.names[0])
    assert cache.current_manifest() == vbn_bucket.names[-1] == last_used == cache.cache.last_used_manifest_file()


def test_streamed_session_reads_a_fraction_and_is_marked_unverified(project, capsys):
    cache = project()
    session_id = cache.get_ecephys_session_table().index[0]
    file_id = cache._ecephys_file_id(session_id)
    entry = cache.manifest.data_files[str(file_id)]
    with cache.get_ecephys_session(session_id, stream=True) as session:
        units = session.get_units()
        trials = session.trials
        fetched = session.stream.bytes_read
        assert session.streamed and session.verified is False
    assert not cache.cache.is_cached(entry)  # nothing was downloaded into the cache
    assert len(units) > 0 and len(trials) > 0
    file_size = cache.cache.remote.stat(entry.location)
    assert 0 < fetched <= file_size  # the block cache never fetches a byte twice
    with capsys.disabled():
        print(f"\n[stream] get_units()+trials read {fetched} of {file_size} bytes ({fetched / file_size:.1%})")
    assert session.stream.closed
    local = cache.get_ecephys_session(session_id)
    assert local.verified is True and local.streamed is False
    pd.testing.assert_frame_equal(local.get_units(), units)
    local.close()
