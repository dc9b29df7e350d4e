"""Row-level diffs of the metadata tables: the fixture release's documented changes and the full-scale units table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from releasecache.audit import diff_tables
from releasecache.errors import MetadataTableError

META = "visual-behavior-neuropixels/project_metadata"


def _csv(release, version, table):
    return release[version] / META / f"{table}.csv"


def test_units_quality_added_and_e1_amplitudes_corrected(vbn_release):
    d = diff_tables(_csv(vbn_release, "0.1.0", "units"), _csv(vbn_release, "0.2.0", "units"),
                    old_version="0.1.0", new_version="0.2.0")
    assert d.id_column == "unit_id" and d.old_rows == d.new_rows
    assert d.columns_added == ["quality"] and d.columns_removed == [] and d.dtype_changes == {}
    assert list(d.column_changes) == ["amplitude"]
    assert len(d.added) == len(d.removed) == 0
    change = d.column_changes["amplitude"]
    assert change.rows == len(d.changed) > 0
    for _, old, new in change.examples:
        assert new == pytest.approx(old / 1.25, rel=1e-6)  # E1's amplitudes were 25 % too high
    frame = d.to_frame()
    assert frame.index.name == "unit_id" and set(frame["change"]) == {"changed"}
    assert all(columns == ["amplitude"] for columns in frame["columns"])
    assert d.columns_frame().loc["amplitude", "rows"] == change.rows
    text = str(d)
    assert "columns added: quality" in text and "amplitude:" in text and "0.1.0 -> 0.2.0" in text
    assert "**columns added**: quality" in d.to_markdown()
    as_json = json.loads(json.dumps(d.to_dict()))
    assert as_json["rows_changed"] == change.rows and as_json["columns_added"] == ["quality"]


def test_behavior_sessions_one_withdrawn_one_added(vbn_release):
    d = diff_tables(_csv(vbn_release, "0.1.0", "behavior_sessions"), _csv(vbn_release, "0.2.0", "behavior_sessions"))
    assert d.added.tolist() == [1051155866] and d.removed.tolist() == [1029221057]
    # File ids are reassigned per version: the habituation session's file id moves with the withdrawal.
    assert set(d.column_changes) == {"file_id"}


def test_abnormal_activity_and_channel_validity(vbn_release):
    sessions = diff_tables(_csv(vbn_release, "0.2.0", "ecephys_sessions"),
                           _csv(vbn_release, "0.3.0", "ecephys_sessions"))
    assert sessions.changed.tolist() == [1053941483]  # E3 newly flagged; empty fields stay missing
    assert sessions.column_changes["abnormal_activity"].examples == [(1053941483, None, "[8899]")]
    assert sessions.dtype_changes == {"abnormal_activity": ("float64", "object")}  # as pandas.read_csv types it
    channels = diff_tables(_csv(vbn_release, "0.2.0", "channels"), _csv(vbn_release, "0.3.0", "channels"))
    assert list(channels.column_changes) == ["valid_data"] and len(channels.changed) == 14
    assert all(old is True and new is False for _, old, new in channels.column_changes["valid_data"].examples)


def test_unchanged_table_is_equivalent(vbn_release):
    d = diff_tables(_csv(vbn_release, "0.1.0", "probes"), _csv(vbn_release, "0.3.0", "probes"))
    assert not d and d.equivalent and "same rows and values" in str(d)


def test_id_column_rules_and_errors(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("id,file_id,value\n1,0,10\n2,1,20\n3,2,30\n")
    b.write_text("id,file_id,value\n3,2,30\n2,1,21\n4,3,40\n")  # reordered rows match by id
    d = diff_tables(a, b, name="extra")
    assert d.id_column == "id" and d.added.tolist() == [4] and d.removed.tolist() == [1]
    assert d.changed.tolist() == [2] and d.column_changes["value"].examples == [(2, 20, 21)]
    d = diff_tables(a, b, id_column="file_id")
    assert d.id_column == "file_id" and d.added.tolist() == [3] and d.removed.tolist() == [0]
    (tmp_path / "c.csv").write_text("value,other\n1,2\n")
    with pytest.raises(MetadataTableError, match="no id column"):
        diff_tables(tmp_path / "c.csv", tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("file_id,value\n0,1\n")
    with pytest.raises(MetadataTableError, match="has no id column 'id'"):
        diff_tables(tmp_path / "d.csv", a, name="extra")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(MetadataTableError, match="empty"):
        diff_tables(tmp_path / "e.csv", a)


def test_late_type_change_and_duplicates(tmp_path):
    """A column whose type only shows after the first block is still typed over the whole file."""
    rows = 40_000
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    body = "".join(f"{i},,{i % 7}\n" for i in range(rows))
    a.write_text("unit_id,note,n\n" + body + "5,dup,1\n")
    b.write_text("unit_id,note,n\n" + body.replace(f"\n{rows - 1},,", f"\n{rows - 1},late,", 1)
                 .replace(f"{rows - 2},,{(rows - 2) % 7}", f"{rows - 2},,2.5") + "5,dup,1\n")
    d = diff_tables(a, b, name="units")
    assert d.changed.tolist() == [rows - 2, rows - 1]
    assert d.dtype_changes == {"n": ("int64", "float64")}  # "note" is text in both (the duplicate row)
    assert d.column_changes["note"].examples == [(rows - 1, None, "late")]
    assert d.duplicate_ids == [5]


@pytest.fixture(scope="module")
def units_update(tmp_path_factory):
    from tests.support.fixtures.fullscale_update import write_units_update

    return write_units_update(tmp_path_factory.mktemp("fullscale-units"))


def test_full_scale_units_table(units_update):
    """≈319,000 units: exactly the withdrawn, new and rescaled units, the added column and the dtype change."""
    u = units_update
    d = diff_tables(u.old, u.new, name="units", memory_budget=16 << 20)
    assert (d.old_rows, d.new_rows) == (u.rows_old, u.rows_new) and d.old_rows > 300_000
    assert np.array_equal(d.added, u.added) and np.array_equal(d.removed, u.removed)
    assert np.array_equal(d.changed, u.amplitude_changed)
    assert list(d.column_changes) == ["amplitude"] and d.column_changes["amplitude"].rows == len(u.amplitude_changed)
    assert d.columns_added == ["quality"] and d.dtype_changes == {"spread": ("int64", "float64")}
    for _, old, new in d.column_changes["amplitude"].examples:
        assert new == pytest.approx(old / 1.25, rel=1e-6)
    assert len(d.to_frame()) == len(u.added) + len(u.removed) + len(u.amplitude_changed)
