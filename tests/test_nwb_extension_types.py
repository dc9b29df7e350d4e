"""Session objects over files written with the real Allen NWB extension types.

Every data attribute of ``EcephysSession`` and ``BehaviorSession`` is
compared with the fixture's ground truth: the seeded data the files were
written from (not the files themselves). Then the AllenSDK behaviours on
those files (text ``"None"``, presentation dtypes) and the layout variants
pynwb accepts (fixed-shape waveforms, no session metadata, missing parts).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from releasecache.errors import NwbLayoutError, ReleaseCacheError
from releasecache.vbn.nwb import BehaviorSession, EcephysSession, ProbeMeta
from releasecache.vbn.nwb._performance import performance_metrics, reward_rate, rolling_performance
from tests.support.fixtures._vbn_behavior import EYE_FIELDS, rig_geometry, simulate
from tests.support.fixtures._vbn_ephys import (
    UNIT_METRICS,
    lfp_channel_mask,
    probe_lfp,
    probe_sampling_rate,
)
from tests.support.fixtures._vbn_specs import (
    BEHAVIOR_ONLY,
    ECEPHYS,
    FRAME_RATE,
    LFP_FILE_SUBSAMPLING,
    BehaviorOnlySpec,
    EcephysSpec,
)
from tests.support.fixtures._vbn_tables import (
    age_in_days,
    behavior_config,
    csv_lfp_rate,
    lfp_gain,
    session_units,
    session_uuid,
    stage_channels,
)
from tests.support.fixtures.vbn import Variant, write_session_file

PROJECT = "visual-behavior-neuropixels"
STAGE = 2  # version 0.3.0
E1, E2, E3 = (spec.ecephys_session_id for spec in ECEPHYS)
HABITUATION, GRATINGS = 1043752325, 1028043324


def spec_of(session_id: int) -> EcephysSpec | BehaviorOnlySpec:
    for spec in ECEPHYS:
        if spec.ecephys_session_id == session_id:
            return spec
    return next(b for b in BEHAVIOR_ONLY if b.behavior_session_id == session_id)


def release_path(root: Path, session_id: int) -> Path:
    if isinstance(spec_of(session_id), EcephysSpec):
        folder = root / PROJECT / "behavior_ecephys_sessions" / str(session_id)
        return folder / f"ecephys_session_{session_id}.nwb"
    return root / PROJECT / "behavior_only_sessions" / str(session_id) / f"behavior_session_{session_id}.nwb"


def lfp_meta(root: Path, spec: EcephysSpec) -> dict[str, ProbeMeta]:
    ids = {v: int(k) for k, v in json.loads((root / "file_ids.json").read_text()).items()}
    meta = {}
    for key in ids:
        for probe in spec.probes:
            if probe.has_lfp and key.startswith(f"{PROJECT}/behavior_ecephys_sessions/"
                                                f"{spec.ecephys_session_id}/probe_{probe.name}_"):
                meta[probe.name] = ProbeMeta(lfp_csd_filepath=lambda k=key: root / k,
                                             lfp_sampling_rate=csv_lfp_rate(probe))
    return meta


def open_session(root: Path, session_id: int) -> BehaviorSession:
    spec = spec_of(session_id)
    if isinstance(spec, EcephysSpec):
        return EcephysSession(release_path(root, session_id), probe_meta=lfp_meta(root, spec))
    return BehaviorSession(release_path(root, session_id))


# --- ground truth ----------------------------------------------------------------------


def expected_cre_line(genotype: str) -> str | None:
    """AllenSDK's rule: the first ';' part without '/wt'; None without a ';'."""
    return genotype.split(";")[0].replace("/wt", "") if ";" in genotype else None


def expected_metadata(spec: EcephysSpec | BehaviorOnlySpec) -> dict:
    mouse = spec.mouse
    ecephys = isinstance(spec, EcephysSpec)
    meta = {
        "equipment_name": spec.equipment_name,
        "sex": mouse.sex,
        "age_in_days": age_in_days(mouse, spec.acquired),
        "stimulus_frame_rate": FRAME_RATE,
        "session_type": spec.session_type,
        "date_of_acquisition": spec.acquired,
        "reporter_line": mouse.reporter_line,
        "cre_line": expected_cre_line(mouse.genotype),
        "behavior_session_uuid": None if ecephys else uuid.UUID(session_uuid(spec.behavior_session_id)),
        "driver_line": sorted(mouse.driver_line) if mouse.driver_line else None,
        "mouse_id": str(mouse.mouse_id),
        "project_code": "Not Available",
        "full_genotype": mouse.genotype,
        "behavior_session_id": spec.behavior_session_id,
    }
    if ecephys:
        meta["ecephys_session_id"] = spec.ecephys_session_id
    return meta


def expected_trials(data) -> pd.DataFrame:
    frame = pd.DataFrame({k: (list(v) if k == "lick_times" else v) for k, v in data.trials.items()})
    frame["change_frame"] = frame["change_frame"].fillna(-99).astype(np.int64)
    frame.index.name = "trials_id"
    return frame


def expected_presentations(data) -> pd.DataFrame:
    """All stimulus tables as simulated, one frame sorted by start time."""
    frames = []
    for columns in data.presentations.values():
        frames.append(pd.DataFrame({k: (list(v) if isinstance(v, list) else np.asarray(v))
                                    for k, v in columns.items()}))
    frame = pd.concat(frames, ignore_index=True, sort=False)
    frame = frame.sort_values("start_time", kind="stable", ignore_index=True)
    for column in ("flashes_since_change", "stimulus_index", "trials_id", "image_index"):
        if column in frame.columns:  # int columns: -99 for stimuli without a value
            frame[column] = frame[column].fillna(-99).astype(np.int64)
    return frame.rename(columns={"stop_time": "end_time"})


def assert_same_values(actual: pd.Series, expected: pd.Series, name: str) -> None:
    a = actual.reset_index(drop=True)
    e = expected.reset_index(drop=True)
    assert len(a) == len(e), name
    missing = e.isna().to_numpy()
    numeric = [pd.api.types.is_numeric_dtype(x.dtype) or pd.api.types.is_bool_dtype(x.dtype)
                for x in (a, e)]
    if any(numeric):
        assert a.isna().to_numpy()[missing].all(), name
        got = a[~missing].astype(float).to_numpy()
        np.testing.assert_allclose(got, e[~missing].astype(float).to_numpy(), err_msg=name)
    else:
        assert list(a.where(~pd.Series(missing), None)) == list(e.where(~pd.Series(missing), None)), name


def check_frame(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert set(expected.columns) <= set(actual.columns), set(expected.columns) - set(actual.columns)
    for column in expected.columns:
        if column == "lick_times":
            for got, want in zip(actual[column], expected[column]):
                np.testing.assert_array_equal(got, want)
        else:
            assert_same_values(actual[column], expected[column], column)


# --- one checker per data attribute ----------------------------------------------------------

Checker = Callable[[BehaviorSession, "Truth"], None]


class Truth:
    """What a session's files were written from."""

    def __init__(self, session_id: int) -> None:
        self.spec = spec_of(session_id)
        self.data = simulate(behavior_config(self.spec))
        self.ecephys = isinstance(self.spec, EcephysSpec)
        if self.ecephys:
            per_probe = session_units(self.spec, STAGE)
            self.units = pd.concat([u.metrics for _, u in per_probe], ignore_index=True)
            self.spike_times = [t for _, u in per_probe for t in u.spike_times]
            self.spike_amplitudes = [a for _, u in per_probe for a in u.spike_amplitudes]
            self.waveforms = np.concatenate([u.waveforms for _, u in per_probe])
            self.channels = pd.concat([stage_channels(self.spec, p, STAGE) for p in self.spec.probes],
                                      ignore_index=True).set_index("ecephys_channel_id")


def c_behavior_session_id(s, t):
    assert s.behavior_session_id == t.spec.behavior_session_id


def c_metadata(s, t):
    assert s.metadata == expected_metadata(t.spec)
    assert list(s.metadata) == list(expected_metadata(t.spec))


def c_task_parameters(s, t):
    expected = dict(t.data.task_parameters, session_type=t.spec.session_type)
    got = s.task_parameters
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(got[key]), key
        else:
            assert got[key] == value and type(got[key]) is type(value), key


def c_trials(s, t):
    trials = s.trials
    expected = expected_trials(t.data)
    assert list(trials.columns) == list(expected.columns)
    check_frame(trials, expected)
    assert trials["change_frame"].dtype == np.int64


def c_licks(s, t):
    licks = s.licks
    np.testing.assert_array_equal(licks["timestamps"], t.data.lick_times)
    np.testing.assert_array_equal(licks["frame"], t.data.lick_frames)


def c_rewards(s, t):
    rewards = s.rewards
    np.testing.assert_array_equal(rewards["volume"], t.data.reward_volumes)
    np.testing.assert_array_equal(rewards["timestamps"], t.data.reward_times)
    np.testing.assert_array_equal(rewards["auto_rewarded"], t.data.reward_auto)


def c_running_speed(s, t):
    np.testing.assert_array_equal(s.running_speed["speed"], t.data.speed)
    np.testing.assert_array_equal(s.running_speed["timestamps"], t.data.frame_times)


def c_raw_running_speed(s, t):
    np.testing.assert_array_equal(s.raw_running_speed["speed"], t.data.speed_unfiltered)
    np.testing.assert_array_equal(s.raw_running_speed["timestamps"], t.data.frame_times)


def c_stimulus_timestamps(s, t):
    np.testing.assert_array_equal(s.stimulus_timestamps, t.data.frame_times)


def c_stimulus_presentations(s, t):
    frame = s.stimulus_presentations
    expected = expected_presentations(t.data)
    check_frame(frame, expected)
    assert frame.index.name == "stimulus_presentations_id"


def c_stimulus_templates(s, t):
    templates = s.stimulus_templates
    assert list(templates.index) == list(t.data.image_names)
    for k, name in enumerate(t.data.image_names):
        np.testing.assert_array_equal(templates.loc[name, "warped"], t.data.warped[k])
        np.testing.assert_array_equal(templates.loc[name, "unwarped"], t.data.unwarped[k])


def c_eye_tracking(s, t):
    eye = s.eye_tracking
    if t.data.eye is None:
        assert eye.empty
        return
    np.testing.assert_array_equal(eye["timestamps"], t.data.eye["timestamps"])
    field = {n: k for k, n in enumerate(EYE_FIELDS)}
    blink = eye["likely_blink"].to_numpy()
    assert t.data.eye["likely_blink"][~blink].sum() == 0  # every written blink is found
    for name, prefix in (("eye_tracking", "eye"), ("pupil_tracking", "pupil"),
                         ("corneal_reflection_tracking", "cr")):
        values = t.data.eye[name]
        np.testing.assert_array_equal(eye[f"{prefix}_area_raw"], values[:, field["area_raw"]])
        for column, source in (("center_x", "center_x"), ("center_y", "center_y"), ("width", "width"),
                               ("height", "height"), ("phi", "angle"), ("area", "area_raw")):
            got = eye[f"{prefix}_{column}"].to_numpy()
            np.testing.assert_array_equal(got[~blink], values[~blink, field[source]])
            assert np.isnan(got[blink]).all()


def c_eye_tracking_rig_geometry(s, t):
    geometry = s.eye_tracking_rig_geometry
    if not t.spec.has_eye_tracking:
        assert geometry == {}
        return
    rig = rig_geometry(t.spec.equipment_name)
    assert geometry["equipment"] == rig["equipment"]
    for key, source in (("camera_position_mm", "camera_position"), ("camera_rotation_deg", "camera_rotation"),
                        ("led_position", "led_position"), ("monitor_position_mm", "monitor_position"),
                        ("monitor_rotation_deg", "monitor_rotation")):
        np.testing.assert_allclose(geometry[key], rig[source])


def c_get_reward_rate(s, t):
    np.testing.assert_array_equal(s.get_reward_rate(), reward_rate(expected_trials(t.data)))


def c_get_rolling_performance_df(s, t):
    pd.testing.assert_frame_equal(s.get_rolling_performance_df(),
                                  rolling_performance(expected_trials(t.data)))


def c_get_performance_metrics(s, t):
    rewards = pd.DataFrame({"volume": t.data.reward_volumes, "timestamps": t.data.reward_times,
                            "auto_rewarded": t.data.reward_auto})
    expected = performance_metrics(expected_trials(t.data), rewards, 2.0)
    got = s.get_performance_metrics()
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], err_msg=key)


def c_behavior_data_class(s, t):
    assert s.behavior_data_class() is BehaviorSession


def c_get_units(s, t):
    units = s.get_units()
    expected = t.units.set_index("unit_id")
    assert list(units.index) == list(expected.index) and list(units.columns) == list(UNIT_METRICS)
    check_frame(units, expected[list(UNIT_METRICS)])


def c_spike_times(s, t):
    for unit_id, times in zip(t.units["unit_id"], t.spike_times):
        np.testing.assert_array_equal(s.spike_times[unit_id], times[times >= 0])


def c_spike_amplitudes(s, t):
    for unit_id, times, amplitudes in zip(t.units["unit_id"], t.spike_times, t.spike_amplitudes):
        np.testing.assert_array_equal(s.spike_amplitudes[unit_id], amplitudes[times >= 0])


def c_mean_waveforms(s, t):
    waveforms = s.mean_waveforms
    assert list(waveforms) == list(t.units["unit_id"])
    for unit_id, expected in zip(t.units["unit_id"], t.waveforms):
        np.testing.assert_array_equal(waveforms[unit_id], expected)


def c_get_channels(s, t):
    channels = s.get_channels(filter_by_validity=False)
    expected = t.channels.loc[channels.index]
    assert sorted(channels.index) == sorted(t.channels.index)
    renames = {"anterior_posterior_ccf_coordinate": "anterior_posterior_ccf_coordinate",
               "dorsal_ventral_ccf_coordinate": "dorsal_ventral_ccf_coordinate",
               "left_right_ccf_coordinate": "left_right_ccf_coordinate",
               "probe_channel_number": "probe_channel_number",
               "probe_horizontal_position": "probe_horizontal_position",
               "probe_vertical_position": "probe_vertical_position", "probe_id": "ecephys_probe_id",
               "structure_acronym": "structure_acronym", "valid_data": "valid_data"}
    for column, source in renames.items():
        assert_same_values(channels[column], expected[source], column)
    valid = s.get_channels()
    assert set(valid.index) == set(t.channels.index[t.channels["valid_data"]])


def c_probes(s, t):
    probes = s.probes
    assert list(probes.index) == [p.probe_id for p in t.spec.probes]
    for probe in t.spec.probes:
        row = probes.loc[probe.probe_id]
        assert row["name"] == probe.name and row["location"] == "See electrode locations"
        assert row["sampling_rate"] == probe_sampling_rate(probe)
        assert row["has_lfp_data"] == probe.has_lfp
        if probe.has_lfp:
            assert row["lfp_sampling_rate"] == csv_lfp_rate(probe)
        else:  # as in AllenSDK's frame: NaN beside rates, None when no probe has one
            assert pd.isna(row["lfp_sampling_rate"])


def c_get_probes_obj(s, t):
    assert [(p.id, p.name) for p in s.get_probes_obj()] == [(p.probe_id, p.name) for p in t.spec.probes]


def c_optotagging_table(s, t):
    opto = s.optotagging_table
    expected = pd.DataFrame({k: (list(v) if isinstance(v, list) else v)
                             for k, v in t.data.optotagging.items()})
    assert list(opto.columns) == ["start_time", "condition", "level", "stop_time", "stimulus_name",
                                  "duration"]
    check_frame(opto, expected)


def _lfp_truth(t, probe):
    lfp = probe_lfp(t.spec, probe, csv_lfp_rate(probe) / LFP_FILE_SUBSAMPLING)
    return lfp, np.float32(lfp_gain(t.spec, probe, STAGE))


def c_get_lfp(s, t):
    for probe in t.spec.probes:
        lfp = s.get_lfp(probe.probe_id)
        if not probe.has_lfp:
            assert lfp is None
            continue
        truth, gain = _lfp_truth(t, probe)
        np.testing.assert_array_equal(lfp.values, (truth.data * gain).astype(np.float32))
        np.testing.assert_array_equal(lfp.coords["time"], truth.timestamps)
        channels = stage_channels(t.spec, probe, STAGE)
        np.testing.assert_array_equal(lfp.coords["channel"],
                                      channels["ecephys_channel_id"].to_numpy()[lfp_channel_mask(channels)])
        assert s.probes.loc[probe.probe_id, "lfp_sampling_rate"] == truth.rate


def c_get_current_source_density(s, t):
    for probe in t.spec.probes:
        csd = s.get_current_source_density(probe.probe_id)
        if not probe.has_lfp:
            assert csd is None
            continue
        truth, _ = _lfp_truth(t, probe)
        np.testing.assert_array_equal(csd.values, truth.csd.T)
        np.testing.assert_array_equal(csd.coords["time"], truth.csd_timestamps)
        np.testing.assert_array_equal(csd.coords["vertical_position"], truth.csd_y.astype(np.int64))
        np.testing.assert_array_equal(csd.coords["horizontal_position"], truth.csd_x.astype(np.int64))


CHECKS: dict[str, Checker] = {
    name[2:]: check for name, check in globals().items() if name.startswith("c_")
}


@pytest.mark.parametrize("session_id", [E1, E2, E3, HABITUATION, GRATINGS])
def test_every_session_attribute_matches_the_fixture_ground_truth(vbn_release, session_id):
    truth = Truth(session_id)
    with open_session(vbn_release["0.3.0"], session_id) as session:
        attributes = session.list_data_attributes_and_methods()
        assert set(attributes) <= set(CHECKS), set(attributes) - set(CHECKS)
        # probes first: reading an LFP file switches its probe to the file's sampling rate
        for name in sorted(attributes, key=lambda n: n != "probes"):
            CHECKS[name](session, truth)


# --- AllenSDK's behaviours on the real types (item 8) -----------------------------------------


def test_text_none_in_the_file_reads_as_none(vbn_release):
    path = release_path(vbn_release["0.3.0"], E1)
    with h5py.File(path, "r") as raw:
        assert raw["general/subject"].attrs["reporter_line"] == "None"
        assert raw["general/task_parameters"].attrs["stimulus_name"] == "None"
        assert raw["general/metadata"].attrs["behavior_session_uuid"] == "None"
    with EcephysSession(path) as session:
        meta = session.metadata
        assert meta["reporter_line"] is None and meta["behavior_session_uuid"] is None
        assert session.task_parameters["stimulus_name"] is None
    with EcephysSession(release_path(vbn_release["0.3.0"], E3)) as session:
        assert session.metadata["reporter_line"] == "Ai32(RCL-ChR2(H134R)_EYFP)"


def _stored_dtypes(path: Path) -> dict[str, set[str]]:
    """dtype kind of each presentation column in each stored table ('-' where absent)."""
    kinds: dict[str, set[str]] = {}
    with h5py.File(path, "r") as raw:
        tables = [raw["intervals"][n] for n in raw["intervals"] if n.endswith("_presentations")]
        names = {c for table in tables for c in table if not c.endswith("_index") and c != "id"}
        for column in names:
            kinds[column] = {table[column].dtype.kind if column in table else "-" for table in tables}
    return kinds


@pytest.mark.parametrize("session_id", [E1, HABITUATION])
def test_presentation_dtypes_follow_the_stored_types_as_allensdk_reads_them(vbn_release, session_id):
    path = release_path(vbn_release["0.3.0"], session_id)
    stored = _stored_dtypes(path)
    with open_session(vbn_release["0.3.0"], session_id) as session:
        frame = session.stimulus_presentations
    bool_everywhere = {c for c, kinds in stored.items() if kinds == {"b"}}
    assert bool_everywhere, "some columns are stored as bool in every table"
    for column in bool_everywhere - {"is_change"}:
        assert frame[column].dtype == bool, column
    for column in ("is_change", "omitted", "rewarded", "is_image_novel", "is_sham_change"):
        if stored[column] == {"b"}:  # behavior-only: one table, no gaps -> plain bool
            assert frame[column].dtype == bool, column
        else:  # written as float 0/1 because other stimuli lack it -> nullable boolean
            assert "f" in stored[column] and str(frame[column].dtype) == "boolean", column
    assert frame["stimulus_block"].dtype == np.int64 and frame["flashes_since_change"].dtype == np.int64


def test_behavior_sessions_recompute_is_change_from_the_images(vbn_release):
    """As AllenSDK's BehaviorSession does; its ecephys sessions keep the stored column."""
    with BehaviorSession(release_path(vbn_release["0.3.0"], HABITUATION)) as session:
        frame = session.stimulus_presentations
    images = frame.loc[~frame["omitted"], "image_name"]
    changes = (images != images.shift()).iloc[1:]
    assert frame["is_change"].dtype == bool
    assert list(frame.index[frame["is_change"]]) == list(changes.index[changes])
    counts = frame["flashes_since_change"].to_numpy()
    assert (counts[frame["is_change"].to_numpy()] == 0).all()
    truth = Truth(HABITUATION).data.presentations
    stored = next(iter(truth.values()))
    np.testing.assert_array_equal(frame["is_change"], stored["is_change"])


def test_a_presentations_table_with_stop_time_and_end_time(vbn_release, tmp_path, caplog):
    path = write_session_file(tmp_path / "both.nwb", E1, Variant(presentations_end_time=True))
    with h5py.File(path, "r") as raw:
        table = raw["intervals/gabor_20_deg_250ms_presentations"]
        assert "end_time" in table and "stop_time" in table
    with EcephysSession(path) as both, open_session(vbn_release["0.3.0"], E1) as plain:
        frame = both.stimulus_presentations
        assert list(frame.columns).count("end_time") == 1 and "stop_time" not in frame.columns
        pd.testing.assert_frame_equal(frame, plain.stimulus_presentations)
    assert "differs" not in caplog.text


# --- layout variants pynwb accepts (item 9) ---------------------------------------------------


def test_fixed_shape_waveform_mean_reads_like_the_ragged_one(vbn_release, tmp_path):
    path = write_session_file(tmp_path / "fixed.nwb", E3, Variant(waveform_mean="fixed"))
    with h5py.File(path, "r") as raw:
        assert "waveform_mean_index" not in raw["units"]
        assert raw["units/waveform_mean"].ndim == 3  # (units, samples, channels)
        assert raw["units/waveform_mean"].shape[1:] == (82, 384)
    with EcephysSession(path) as fixed, open_session(vbn_release["0.3.0"], E3) as ragged:
        got, want = fixed.mean_waveforms, ragged.mean_waveforms
        assert list(got) == list(want)
        for unit_id in want:
            assert got[unit_id].shape == (384, 82)
            np.testing.assert_array_equal(got[unit_id], want[unit_id])


@pytest.mark.parametrize("session_id", [E3, HABITUATION])
def test_metadata_without_the_session_metadata_container(tmp_path, session_id, caplog):
    path = write_session_file(tmp_path / "bare.nwb", session_id, Variant(omit=frozenset({"metadata"})))
    with h5py.File(path, "r") as raw:
        assert "metadata" not in raw["general"]
    spec = spec_of(session_id)
    expected = expected_metadata(spec)
    cls = EcephysSession if isinstance(spec, EcephysSpec) else BehaviorSession
    with cls(path) as session:
        meta = session.metadata
        # what only the metadata container holds is unknown ...
        unknown = {"stimulus_frame_rate": None, "behavior_session_uuid": None}
        if cls is EcephysSession:  # ... and an ecephys file's identifier is not the behavior id
            unknown["behavior_session_id"] = None
        assert meta == {**expected, **unknown}
        assert session.behavior_session_id == unknown.get("behavior_session_id", spec.behavior_session_id)
        assert len(session.trials) > 0  # the rest of the file reads as before
    assert "has no session metadata" in caplog.text and path.name in caplog.text


OPTIONAL_PARTS = {
    "licks": ("licks", lambda v: v.empty and list(v.columns) == ["timestamps", "frame"]),
    "rewards": ("rewards", lambda v: v.empty and list(v.columns) == ["volume", "timestamps",
                                                                     "auto_rewarded"]),
    "templates": ("stimulus_templates", lambda v: v is None),
    "eye_tracking": ("eye_tracking", lambda v: v.empty and "pupil_area" in v.columns),
    "rig": ("eye_tracking_rig_geometry", lambda v: v == {}),
    "optotagging": ("optotagging_table", lambda v: v.empty and "condition" in v.columns),
}


def test_missing_optional_parts_give_what_allensdk_gives(tmp_path):
    path = write_session_file(tmp_path / "sparse.nwb", E3, Variant(omit=frozenset(OPTIONAL_PARTS)))
    with EcephysSession(path) as session:
        for part, (attribute, expected) in OPTIONAL_PARTS.items():
            assert expected(getattr(session, attribute)), part
        assert len(session.get_units()) > 0 and len(session.trials) > 0


REQUIRED_PARTS = {
    "task_parameters": ("task_parameters", "task_parameters"),
    "stimulus_timestamps": ("stimulus_timestamps", "'stimulus'"),
    "running": ("running_speed", "'running'"),
    "trials": ("trials", "trials"),
    "presentations": ("stimulus_presentations", "presentations"),
    "units": ("get_units", "units"),
}


@pytest.mark.parametrize("part", sorted(REQUIRED_PARTS))
def test_a_missing_required_part_names_the_part_and_the_file(tmp_path, part):
    attribute, words = REQUIRED_PARTS[part]
    path = write_session_file(tmp_path / f"no_{part}.nwb", E3, Variant(omit=frozenset({part})))
    with EcephysSession(path) as session:
        with pytest.raises(NwbLayoutError) as info:
            value = getattr(session, attribute)
            if callable(value):
                value()
        assert path.name in str(info.value) and words in str(info.value)
        assert isinstance(info.value, ReleaseCacheError) and isinstance(info.value, ValueError)
        session.metadata  # other parts still read


# --- the same through the cache, from the loopback S3 server --------------------------------


@pytest.mark.parametrize("session_id", [E3, HABITUATION])
def test_sessions_from_the_loopback_server_match_the_ground_truth(vbn_bucket, tmp_path, session_id):
    """``ProjectCache`` on the published release (latest manifest: the stage checked here)."""
    from releasecache import ProjectCache

    cache = ProjectCache.from_s3(tmp_path / "cache", endpoint_url=vbn_bucket.endpoint_url,
                                 progress=False)
    truth = Truth(session_id)
    if truth.ecephys:
        session = cache.get_ecephys_session(ecephys_session_id=session_id)
    else:
        session = cache.get_behavior_session(behavior_session_id=session_id)
    with session:
        for name in sorted(session.list_data_attributes_and_methods(), key=lambda n: n != "probes"):
            CHECKS[name](session, truth)


def test_a_streamed_session_reads_the_extension_types(vbn_bucket, tmp_path):
    """Streamed from the server (a file object, not a path): the same values."""
    from releasecache import ProjectCache

    cache = ProjectCache.from_s3(tmp_path / "cache", endpoint_url=vbn_bucket.endpoint_url,
                                 progress=False)
    truth = Truth(E1)
    with cache.get_ecephys_session(E1, stream=True) as session:
        assert session.streamed
        for name in ("metadata", "task_parameters", "stimulus_presentations", "probes",
                     "get_units", "mean_waveforms", "eye_tracking", "eye_tracking_rig_geometry",
                     "stimulus_templates"):
            CHECKS[name](session, truth)
