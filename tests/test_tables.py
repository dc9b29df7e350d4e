"""Metadata CSVs as typed tables, and the content-hash-keyed Arrow sidecar."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from releasecache.errors import MetadataTableError, ReleaseCacheError
from tests.support.fixtures.vbn import write_full_scale_tables
from releasecache.vbn.tables import (
    INDEX_COLUMNS,
    filter_abnormal_sessions,
    file_content_hash,
    load_table,
    read_table_csv,
    sidecar_path,
)

pytestmark = pytest.mark.unit  # no server: part of the fast layer subset (pytest -m unit)

PROJECT = "visual-behavior-neuropixels"
TABLES = ("ecephys_sessions", "behavior_sessions", "probes", "channels", "units")
E1, E2, E3 = 1044385384, 1044594870, 1053941483


def _is_str_dtype(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


@pytest.fixture
def csv_dir(vbn_release, tmp_path) -> Path:
    """A private copy of the 0.1.0 CSVs (tests may change them)."""
    source = vbn_release["0.1.0"] / PROJECT / "project_metadata"
    target = tmp_path / "csv"
    shutil.copytree(source, target)
    return target


def test_index_columns_and_nullable_integers(csv_dir):
    frames = {name: load_table(name, csv_dir / f"{name}.csv") for name in TABLES}
    for name, frame in frames.items():
        assert frame.index.name == INDEX_COLUMNS[name]
        assert frame.index.is_unique
    sessions = frames["ecephys_sessions"]
    assert str(sessions.index.dtype) == "Int64"
    for column in ("unit_count", "probe_count", "channel_count", "prior_exposures_to_image_set"):
        assert str(sessions[column].dtype) == "Int64", column
    assert sessions["mouse_id"].dtype == np.int64 and sessions["file_id"].dtype == np.int64
    behavior = frames["behavior_sessions"]
    assert behavior.index.dtype == np.int64
    assert str(behavior["ecephys_session_id"].dtype) == "Int64"
    assert str(behavior["prior_exposures_to_image_set"].dtype) == "Int64"
    assert behavior["ecephys_session_id"].isna().sum() == 3  # training sessions
    assert behavior["prior_exposures_to_image_set"].isna().sum() == 1  # the gratings session
    # the other tables keep plain numpy integers, even for the same column names
    assert frames["probes"]["unit_count"].dtype == np.int64
    assert frames["channels"]["unit_count"].dtype == np.int64
    assert frames["units"]["ecephys_session_id"].dtype == np.int64
    assert frames["probes"]["has_lfp_data"].dtype == bool
    assert frames["channels"]["valid_data"].dtype == bool


def test_dates_and_list_columns_stay_strings(csv_dir):
    sessions = load_table("ecephys_sessions", csv_dir / "ecephys_sessions.csv")
    assert _is_str_dtype(sessions["date_of_acquisition"])
    assert sessions.loc[E1, "date_of_acquisition"] == "2020-08-19 14:47:08.574000+00:00"
    assert isinstance(sessions.loc[E1, "structure_acronyms"], str)
    assert sessions["structure_acronyms"].str.contains("'CA1',").all()
    probes = load_table("probes", csv_dir / "probes.csv")
    assert probes["structure_acronyms"].iloc[0].startswith("['")


def test_filter_abnormal_sessions_on_the_fixture(vbn_release):
    first = load_table("ecephys_sessions",
                       vbn_release["0.1.0"] / PROJECT / "project_metadata" / "ecephys_sessions.csv")
    assert list(filter_abnormal_sessions(first).index) == [E1, E3]
    last = load_table("ecephys_sessions",
                      vbn_release["0.3.0"] / PROJECT / "project_metadata" / "ecephys_sessions.csv")
    assert list(filter_abnormal_sessions(last).index) == [E1]
    assert len(last) == 3


def test_filter_abnormal_sessions_keeps_only_rows_without_flags():
    frame = pd.DataFrame({
        "ecephys_session_id": [222, 333, 444],
        "abnormal_histology": [np.nan, "['l', 'r']", np.nan],
        "abnormal_activity": [np.nan, np.nan, "[8, 9]"],
    }).set_index("ecephys_session_id")
    kept = filter_abnormal_sessions(frame)
    assert list(kept.index) == [222]
    kept.loc[222, "abnormal_activity"] = "changed"
    assert pd.isna(frame.loc[222, "abnormal_activity"]), "the result is a copy"
    without_columns = frame.drop(columns=["abnormal_histology", "abnormal_activity"])
    assert list(filter_abnormal_sessions(without_columns).index) == [222, 333, 444]


def test_sidecar_is_written_and_then_used(csv_dir, tmp_path):
    sidecars = tmp_path / "tables"
    csv_path = csv_dir / "units.csv"
    digest = file_content_hash(csv_path)
    first = load_table("units", csv_path, content_hash=digest, sidecar_dir=sidecars)
    expected = sidecar_path(sidecars, "units", digest)
    assert expected.is_file() and expected.name.startswith(digest)
    assert [p.name for p in sidecars.iterdir()] == [expected.name], "no temporary files left"
    # Replace the CSV's content but claim the same hash: only the sidecar can answer.
    csv_path.write_text("unit_id,nonsense\n1,2\n")
    second = load_table("units", csv_path, content_hash=digest, sidecar_dir=sidecars)
    pd.testing.assert_frame_equal(first, second)
    assert len(second) > 1


def test_changed_csv_gets_a_new_sidecar(csv_dir, tmp_path):
    sidecars = tmp_path / "tables"
    csv_path = csv_dir / "probes.csv"
    before = load_table("probes", csv_path, sidecar_dir=sidecars)  # hashes the CSV itself
    frame = pd.read_csv(csv_path)
    frame.loc[0, "phase"] = 2.0
    frame.to_csv(csv_path, index=False)
    after = load_table("probes", csv_path, sidecar_dir=sidecars)
    assert before["phase"].iloc[0] == 1.0 and after["phase"].iloc[0] == 2.0
    assert len(list(sidecars.glob("*.arrow"))) == 2
    assert sidecar_path(sidecars, "probes", file_content_hash(csv_path)).is_file()


def test_corrupt_sidecar_is_ignored_and_rebuilt(csv_dir, tmp_path, caplog):
    sidecars = tmp_path / "tables"
    csv_path = csv_dir / "channels.csv"
    digest = file_content_hash(csv_path)
    reference = read_table_csv("channels", csv_path)
    path = sidecar_path(sidecars, "channels", digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"ARROW1\x00\x00 definitely not an arrow file")
    with caplog.at_level("WARNING", logger="releasecache"):
        loaded = load_table("channels", csv_path, content_hash=digest, sidecar_dir=sidecars)
    pd.testing.assert_frame_equal(loaded, reference)
    assert "unreadable table sidecar" in caplog.text
    # rebuilt: the next load reads a valid sidecar (the CSV is gone)
    csv_path.unlink()
    pd.testing.assert_frame_equal(
        load_table("channels", csv_path, content_hash=digest, sidecar_dir=sidecars), reference)


def test_sidecar_round_trip_is_exact(vbn_release, tmp_path):
    csv_dirs = [vbn_release["0.2.0"] / PROJECT / "project_metadata"]
    full = tmp_path / "full"
    write_full_scale_tables(full, n_sessions=6)
    csv_dirs.append(full)
    for k, directory in enumerate(csv_dirs):
        for name in TABLES:
            csv_path = directory / f"{name}.csv"
            reference = read_table_csv(name, csv_path)
            sidecars = tmp_path / f"tables{k}"
            built = load_table(name, csv_path, sidecar_dir=sidecars)
            reloaded = load_table(name, csv_path, sidecar_dir=sidecars)
            pd.testing.assert_frame_equal(built, reference, check_exact=True)
            pd.testing.assert_frame_equal(reloaded, reference, check_exact=True)


def test_returned_frames_are_independent(csv_dir, tmp_path):
    sidecars = tmp_path / "tables"
    csv_path = csv_dir / "units.csv"
    load_table("units", csv_path, sidecar_dir=sidecars)
    a = load_table("units", csv_path, sidecar_dir=sidecars)
    b = load_table("units", csv_path, sidecar_dir=sidecars)
    original = b["amplitude"].iloc[0]
    a.iloc[0, a.columns.get_loc("amplitude")] = -1.0
    a["snr"] *= 2
    a.loc[a.index[0], "structure_acronym"] = "changed"
    assert b["amplitude"].iloc[0] == original
    assert b.loc[b.index[0], "structure_acronym"] != "changed"
    c = load_table("units", csv_path, sidecar_dir=sidecars)
    pd.testing.assert_frame_equal(b, c)


def test_errors_belong_to_the_hierarchy(csv_dir, tmp_path):
    with pytest.raises(MetadataTableError, match="unknown metadata table"):
        load_table("sessions", csv_dir / "units.csv")
    with pytest.raises(ValueError):
        load_table("units", csv_dir / "units.csv", content_hash="../../etc", sidecar_dir=tmp_path)
    with pytest.raises(ReleaseCacheError, match="no 'ecephys_probe_id' column"):
        read_table_csv("probes", csv_dir / "behavior_sessions.csv")


def test_unwritable_sidecar_directory_still_loads(csv_dir, tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with caplog.at_level("WARNING", logger="releasecache"):
        frame = load_table("probes", csv_dir / "probes.csv", sidecar_dir=blocker / "tables")
    assert len(frame) == 8
    assert "could not write table sidecar" in caplog.text
