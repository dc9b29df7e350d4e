"""vbn/tables.py on a hand-written CSV: typing, the sidecar keyed by content, errors from the hierarchy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from releasecache.errors import MetadataTableError
from releasecache.utils import hash_file
from releasecache.vbn.tables import (
    SIDECAR_FORMAT,
    copy_on_write,
    file_content_hash,
    filter_abnormal_sessions,
    independent_copy,
    load_table,
    sidecar_path,
)

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


UNITS = """unit_id,amplitude,snr,local_index,valid_data,structure_acronym,velocity_below
7,1.5,3.0,0,True,CA1,
8,2.5,4.0,1,False,VISp,0.25
9,3.5,5.0,2,True,,0.5
"""


def _mapped(values) -> bool:
    """True if a numpy array's memory is a memory map (not a copy the loader made)."""
    import mmap

    base = values
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)


@pytest.mark.skipif(not copy_on_write(), reason="zero-copy reloads need pandas' copy-on-write")
def test_a_reload_maps_the_sidecar_and_writes_never_reach_it(tmp_path):
    """Reloaded numeric columns are views of a private map: nothing copied, yet every frame writable and separate."""
    csv = tmp_path / "units.csv"
    csv.write_text(UNITS)
    sidecars = tmp_path / "sidecars"
    parsed = load_table("units", csv, sidecar_dir=sidecars)  # parses the CSV, writes the sidecar
    (sidecar,) = sidecars.iterdir()
    on_disk = sidecar.read_bytes()
    a = load_table("units", csv, sidecar_dir=sidecars)
    pd.testing.assert_frame_equal(a, parsed)
    assert _mapped(a["amplitude"].to_numpy()) and _mapped(a["local_index"].to_numpy())
    b = load_table("units", csv, sidecar_dir=sidecars)
    a.iloc[0, a.columns.get_loc("amplitude")] = -1.0  # a owns its blocks alone: written in place
    a["snr"] *= 10
    a.loc[8, "structure_acronym"] = "changed"
    shallow = independent_copy(b)
    shallow.iloc[1, shallow.columns.get_loc("local_index")] = 99
    assert a.loc[7, "amplitude"] == -1.0 and a.loc[9, "snr"] == 50.0
    pd.testing.assert_frame_equal(b, parsed)  # the other reload, and the file, are untouched
    assert shallow.loc[8, "local_index"] == 99 and b.loc[8, "local_index"] == 1
    assert sidecar.read_bytes() == on_disk
    pd.testing.assert_frame_equal(load_table("units", csv, sidecar_dir=sidecars), parsed)


def test_a_sidecar_of_an_older_format_is_replaced(tmp_path):
    csv = tmp_path / "units.csv"
    csv.write_text(UNITS)
    sidecars = tmp_path / "sidecars"
    current = sidecar_path(sidecars, "units", file_content_hash(csv))
    older = current.with_name(current.name.replace(f".v{SIDECAR_FORMAT}-", ".v1-"))
    sidecars.mkdir()
    older.write_bytes(b"an old layout")
    load_table("units", csv, sidecar_dir=sidecars)
    assert current.is_file() and not older.exists()
