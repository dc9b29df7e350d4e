"""The units, trials and presentations tables read straight from HDF5 equal what pynwb reads.

Sessions read these three tables with h5py from the table groups (no pynwb
objects built); the pynwb readers stay as the fallback. Both are run here on
every session file of the fixture release and must give identical frames:
same index, columns, order, dtypes and values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from releasecache.vbn.nwb import BehaviorSession, EcephysSession
from releasecache.vbn.nwb import _behavior_data as bd
from releasecache.vbn.nwb import _ecephys_data as ed
from releasecache.vbn.nwb._file import NwbHandle
from releasecache.vbn.nwb._h5table import NotPlainTable, table_columns

pytestmark = pytest.mark.unit  # no server: part of the fast layer subset (pytest -m unit)


def _files(root: Path, pattern: str) -> list[Path]:
    found = sorted(root.rglob(pattern))
    assert found, f"no {pattern} under {root}"
    return found


def _same(direct: pd.DataFrame, through_pynwb: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(direct, through_pynwb, check_exact=True)
    for column in direct.columns:  # arrays per row (lick_times): equal element by element
        if direct[column].dtype == object and len(direct) and isinstance(direct[column].iloc[0], np.ndarray):
            for a, b in zip(direct[column], through_pynwb[column]):
                assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("kind", ["ecephys", "behavior"])
def test_direct_tables_equal_the_pynwb_tables(vbn_release, kind):
    pattern = "ecephys_session_*.nwb" if kind == "ecephys" else "behavior_session_*.nwb"
    checked = 0
    for version in sorted(vbn_release):
        for path in _files(vbn_release[version], pattern):
            handle = NwbHandle(path)
            try:
                nwb = handle.nwbfile
                h5 = handle.h5
                if kind == "ecephys":
                    _same(ed.units_table_h5(h5), ed.units_table(nwb, path))
                _same(bd.trials_h5(h5), bd.trials(nwb, path))
                direct, through = bd.presentation_frames_h5(h5), bd.presentation_frames(nwb)
                assert len(direct) == len(through) > 0
                for a, b in zip(direct, through):
                    _same(a, b)
                assert bd.has_trials_h5(h5) is (nwb.trials is not None)
            finally:
                handle.close()
            checked += 1
    assert checked >= 3


def test_the_three_tables_build_no_pynwb_objects(vbn_release):
    """``get_units()``, ``trials`` and ``stimulus_presentations`` open the file with h5py only."""
    path = _files(vbn_release["0.3.0"], "ecephys_session_*.nwb")[0]
    with EcephysSession(path) as session:
        units, trials, presentations = session.get_units(), session.trials, session.stimulus_presentations
        assert session._handle.is_open and session._handle._nwbfile is None
        assert len(units) and len(trials) and len(presentations)
        session.metadata  # other attributes still read through pynwb, on the same open file
        assert session._handle._nwbfile is not None
    with EcephysSession(path) as through_pynwb:
        through_pynwb.metadata  # pynwb first: the direct readers then share its file
        pd.testing.assert_frame_equal(through_pynwb.get_units(), units, check_exact=True)
        pd.testing.assert_frame_equal(through_pynwb.stimulus_presentations, presentations, check_exact=True)


def test_an_unusual_table_is_refused_by_the_direct_reader(tmp_path):
    """Layouts the direct reader does not read exactly as pynwb are refused (NotPlainTable)."""
    path = tmp_path / "tables.h5"
    with h5py.File(path, "w") as raw:
        plain = raw.create_group("plain")
        with pytest.raises(NotPlainTable, match="not a DynamicTable"):
            table_columns(plain)
        table = raw.create_group("table")
        table.attrs["colnames"] = np.array(["x", "refs", "pair"], dtype=object)
        table.create_dataset("id", data=np.arange(3))
        table.create_dataset("x", data=np.arange(6.0))
        table.create_dataset("x_index", data=np.array([2, 4, 6], dtype=np.uint32))
        table["x_index"].attrs["neurodata_type"] = "VectorIndex"
        table.create_dataset("refs", data=np.array([raw.ref] * 3, dtype=h5py.ref_dtype))
        table.create_dataset("pair", data=np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]))
        with pytest.raises(NotPlainTable, match="references"):
            table_columns(table, ["refs"])
        with pytest.raises(NotPlainTable, match="compound"):
            table_columns(table, ["pair"])
        frame = table_columns(table, ["x"], ragged=("x",))
        assert [list(v) for v in frame["x"]] == [[0, 1], [2, 3], [4, 5]]
        table.create_dataset("x_index_index", data=np.array([1, 2, 3], dtype=np.uint32))
        with pytest.raises(NotPlainTable, match="ragged twice"):
            table_columns(table, ["x"], ragged=("x",))


def test_a_refused_table_is_read_through_pynwb(vbn_release):
    """When the direct reader refuses, the session reads the table through pynwb, on the same file."""
    path = _files(vbn_release["0.3.0"], "behavior_session_*.nwb")[0]
    calls = []

    def refuse(h5):
        calls.append(h5.filename)
        raise NotPlainTable("refused")

    with BehaviorSession(path) as session:
        frame = session._handle.read_direct(refuse, lambda nwb: bd.trials(nwb, path))
        assert calls and session._handle._nwbfile is not None
        pd.testing.assert_frame_equal(frame, session.trials.assign(lick_times=frame["lick_times"]))


def test_a_file_that_is_not_nwb_still_raises_the_layout_error(tmp_path):
    from releasecache.errors import NwbLayoutError

    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as raw:
        raw.create_dataset("units/id", data=np.arange(3))
    with BehaviorSession(path) as session, pytest.raises(NwbLayoutError):
        session.trials
    (tmp_path / "junk.nwb").write_bytes(b"not hdf5 at all" * 100)
    with EcephysSession(tmp_path / "junk.nwb") as session, pytest.raises(NwbLayoutError, match="not a readable"):
        session.get_units()


def test_pynwb_is_not_imported_for_the_three_tables(vbn_release):
    """In a fresh interpreter: reading the three tables never imports pynwb or hdmf (slow imports)."""
    import subprocess

    path = _files(vbn_release["0.3.0"], "ecephys_session_*.nwb")[0]
    code = ("import sys\nfrom releasecache.vbn.nwb import EcephysSession\n"
            f"s = EcephysSession({str(path)!r})\n"
            "s.get_units(); s.trials; s.stimulus_presentations\n"
            "print(sorted(m for m in ('pynwb', 'hdmf') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
