"""vbn/tables.py on a hand-written CSV: typing, the sidecar keyed by content, errors from the hierarchy."""

from __future__ import annotations

import pandas as pd
import pytest

from releasecache.errors import MetadataTableError
from releasecache.utils import hash_file
from releasecache.vbn.tables import file_content_hash, filter_abnormal_sessions, load_table, sidecar_path

CSV = """ecephys_session_id,unit_count,abnormal_histology,abnormal_activity,date_of_acquisition
11,5,,,2019-10-01
12,,['VISp'],,2019-10-02
13,7,,[1.5],2019-10-03
"""


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "ecephys_sessions.csv"
    path.write_text(CSV)
    return path


def test_typed_frame_from_csv(csv):
    frame = load_table("ecephys_sessions", csv)
    assert frame.index.name == "ecephys_session_id" and list(frame.index) == [11, 12, 13]
    assert str(frame["unit_count"].dtype) == "Int64" and frame["unit_count"].isna().tolist() == [False, True, False]
    assert list(filter_abnormal_sessions(frame).index) == [11]


def test_sidecar_is_keyed_by_content(csv, tmp_path):
    sidecars = tmp_path / "sidecars"
    digest = file_content_hash(csv)
    assert digest == hash_file(csv) and len(digest) == 128  # one blake2b helper under every name
    first = load_table("ecephys_sessions", csv, sidecar_dir=sidecars)
    assert sidecar_path(sidecars, "ecephys_sessions", digest).is_file()
    again = load_table("ecephys_sessions", csv, content_hash=digest, sidecar_dir=sidecars)
    pd.testing.assert_frame_equal(first, again)
    csv.write_text(CSV.replace("11,5", "11,6"))
    changed = load_table("ecephys_sessions", csv, sidecar_dir=sidecars)
    assert changed.loc[11, "unit_count"] == 6  # a new content hash: a new sidecar, never the stale one


def test_bad_names_and_columns_are_metadata_table_errors(csv, tmp_path):
    with pytest.raises(MetadataTableError):
        load_table("not_a_table", csv)
    bad = tmp_path / "units.csv"
    bad.write_text("something_else\n1\n")
    with pytest.raises(MetadataTableError):
        load_table("units", bad)
