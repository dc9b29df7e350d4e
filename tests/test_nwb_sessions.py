"""EcephysSession and BehaviorSession over the synthetic VBN NWB files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from releasecache.errors import ReleaseCacheError, SessionClosedError, UnknownProbeError
from tests.support.fixtures._vbn_behavior import simulate
from tests.support.fixtures._vbn_specs import ECEPHYS
from tests.support.fixtures._vbn_tables import behavior_config
from releasecache.vbn.nwb import BehaviorSession, EcephysSession, ProbeMeta

pytestmark = pytest.mark.unit  # no server: part of the fast layer subset (pytest -m unit)

PROJECT = "visual-behavior-neuropixels"
E1, E2, E3 = 1044385384, 1044594870, 1053941483
E1_PROBES = {"probeA": 1044506933, "probeB": 1044506934, "probeC": 1044506935}
HABITUATION, GRATINGS = 1043752325, 1028043324
IMAGES_G = ["im012_r", "im036_r", "im044_r", "im047_r", "im078_r", "im083_r", "im104_r", "im111_r"]

ECEPHYS_ATTRIBUTES = [
    "behavior_data_class", "behavior_session_id", "eye_tracking", "eye_tracking_rig_geometry",
    "get_channels", "get_current_source_density", "get_lfp", "get_performance_metrics",
    "get_probes_obj", "get_reward_rate", "get_rolling_performance_df", "get_units", "licks",
    "mean_waveforms", "metadata", "optotagging_table", "probes", "raw_running_speed", "rewards",
    "running_speed", "spike_amplitudes", "spike_times", "stimulus_presentations",
    "stimulus_templates", "stimulus_timestamps", "task_parameters", "trials",
]
BEHAVIOR_ATTRIBUTES = [
    "behavior_session_id", "eye_tracking", "eye_tracking_rig_geometry", "get_performance_metrics",
    "get_reward_rate", "get_rolling_performance_df", "licks", "metadata", "raw_running_speed",
    "rewards", "running_speed", "stimulus_presentations", "stimulus_templates",
    "stimulus_timestamps", "task_parameters", "trials",
]
UNIT_COLUMNS = [
    "PT_ratio", "amplitude", "amplitude_cutoff", "cluster_id", "cumulative_drift", "d_prime",
    "firing_rate", "isi_violations", "isolation_distance", "l_ratio", "local_index", "max_drift",
    "nn_hit_rate", "nn_miss_rate", "peak_channel_id", "presence_ratio", "quality",
    "recovery_slope", "repolarization_slope", "silhouette_score", "snr", "spread",
    "velocity_above", "velocity_below", "waveform_duration",
]
CHANNEL_COLUMNS = [
    "anterior_posterior_ccf_coordinate", "dorsal_ventral_ccf_coordinate", "filtering",
    "left_right_ccf_coordinate", "probe_channel_number", "probe_horizontal_position", "probe_id",
    "probe_vertical_position", "structure_acronym",
]
METADATA_KEYS = [
    "equipment_name", "sex", "age_in_days", "stimulus_frame_rate", "session_type",
    "date_of_acquisition", "reporter_line", "cre_line", "behavior_session_uuid", "driver_line",
    "mouse_id", "project_code", "full_genotype", "behavior_session_id",
]
EYE_COLUMNS = [
    "timestamps", "cr_area", "eye_area", "pupil_area", "likely_blink", "pupil_area_raw",
    "cr_area_raw", "eye_area_raw", "cr_center_x", "cr_center_y", "cr_width", "cr_height", "cr_phi",
    "eye_center_x", "eye_center_y", "eye_width", "eye_height", "eye_phi", "pupil_center_x",
    "pupil_center_y", "pupil_width", "pupil_height", "pupil_phi",
]
VBN_TRIAL_COLUMNS = [
    "start_time", "stop_time", "initial_image_name", "change_image_name", "is_change",
    "change_time_no_display_delay", "go", "catch", "lick_times", "response_time", "reward_time",
    "reward_volume", "hit", "false_alarm", "miss", "correct_reject", "aborted", "auto_rewarded",
    "change_frame", "trial_length",
]


def meta_csv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / PROJECT / "project_metadata" / f"{name}.csv")


def session_path(root: Path, esid: int) -> Path:
    return root / PROJECT / "behavior_ecephys_sessions" / str(esid) / f"ecephys_session_{esid}.nwb"


def behavior_path(root: Path, bsid: int) -> Path:
    return root / PROJECT / "behavior_only_sessions" / str(bsid) / f"behavior_session_{bsid}.nwb"


class Fetcher:
    """A lazy LFP-file fetcher that counts its calls (as the cache's downloader would)."""

    def __init__(self, root: Path, file_id: int) -> None:
        import json

        self.path = root / json.loads((root / "file_ids.json").read_text())[str(file_id)]
        self.calls = 0

    def __call__(self) -> Path:
        self.calls += 1
        return self.path


def probe_meta(root: Path, esid: int) -> dict[str, ProbeMeta]:
    probes = meta_csv(root, "probes")
    rows = probes[(probes["ecephys_session_id"] == esid) & probes["has_lfp_data"]]
    return {row.name: ProbeMeta(lfp_csd_filepath=Fetcher(root, row.file_id),
                                lfp_sampling_rate=row.lfp_sampling_rate) for row in rows.itertuples()}


def open_session(root: Path, esid: int) -> EcephysSession:
    return EcephysSession(session_path(root, esid), probe_meta=probe_meta(root, esid))


@pytest.fixture(scope="module")
def e1(vbn_release) -> Iterator[EcephysSession]:
    with open_session(vbn_release["0.3.0"], E1) as session:
        yield session


@pytest.fixture(scope="module")
def e2(vbn_release) -> Iterator[EcephysSession]:
    """E2 without probe meta: its LFP files are unknown to the session."""
    with EcephysSession(session_path(vbn_release["0.3.0"], E2)) as session:
        yield session


@pytest.fixture(scope="module")
def e3(vbn_release) -> Iterator[EcephysSession]:
    with open_session(vbn_release["0.3.0"], E3) as session:
        yield session


@pytest.fixture(scope="module")
def habituation(vbn_release) -> Iterator[BehaviorSession]:
    with BehaviorSession(behavior_path(vbn_release["0.3.0"], HABITUATION)) as session:
        yield session


# --- API shape -------------------------------------------------------------------------


def test_list_data_attributes_and_methods(e1, habituation):
    assert e1.list_data_attributes_and_methods() == ECEPHYS_ATTRIBUTES
    assert habituation.list_data_attributes_and_methods() == BEHAVIOR_ATTRIBUTES
    for name in ECEPHYS_ATTRIBUTES:
        assert hasattr(e1, name), name
    assert e1.behavior_data_class() is BehaviorSession


def test_metadata_of_an_ecephys_session(e3, vbn_release):
    meta = e3.metadata
    assert list(meta) == [*METADATA_KEYS, "ecephys_session_id"]
    row = meta_csv(vbn_release["0.3.0"], "ecephys_sessions").set_index("ecephys_session_id").loc[E3]
    assert meta["ecephys_session_id"] == E3
    assert meta["behavior_session_id"] == row["behavior_session_id"] == e3.behavior_session_id
    assert meta["mouse_id"] == str(row["mouse_id"]) == "544456"
    assert meta["age_in_days"] == row["age_in_days"] == 120
    assert meta["full_genotype"] == row["genotype"]
    assert meta["cre_line"] == "Sst-IRES-Cre" and meta["driver_line"] == ["Sst-IRES-Cre"]
    assert meta["reporter_line"] == "Ai32(RCL-ChR2(H134R)_EYFP)"
    assert meta["project_code"] == "Not Available" != row["project_code"]
    assert meta["equipment_name"] == "NP.0" and meta["stimulus_frame_rate"] == 60.0
    meta["driver_line"].append("mutated")
    assert e3.metadata["driver_line"] == ["Sst-IRES-Cre"]
    assert meta["session_type"] == row["session_type"]
    assert meta["behavior_session_uuid"] is None
    assert meta["date_of_acquisition"] == pd.Timestamp(row["date_of_acquisition"]).to_pydatetime()
    assert meta["date_of_acquisition"].tzinfo is not None


def test_metadata_of_a_wild_type_and_a_behavior_only_session(e1, habituation):
    meta = e1.metadata
    # a wild-type mouse: no driver_line attribute, reporter_line stored as "None" (as AllenSDK)
    assert meta["cre_line"] is None and meta["driver_line"] is None and meta["reporter_line"] is None
    behavior = habituation.metadata
    assert list(behavior) == METADATA_KEYS
    assert behavior["behavior_session_id"] == HABITUATION == habituation.behavior_session_id
    assert behavior["behavior_session_uuid"] is not None
    assert behavior["session_type"] == "HABITUATION_5_images_G_handoff_ready_5uL_reward"


# --- units ---------------------------------------------------------------------------


def test_units_match_the_units_table(e1, vbn_release):
    units = e1.get_units()
    csv = meta_csv(vbn_release["0.3.0"], "units").set_index("unit_id")
    csv = csv[csv["ecephys_session_id"] == E1]
    assert units.index.name == "id"
    assert list(units.columns) == UNIT_COLUMNS
    assert "waveform_halfwidth" not in units.columns
    assert sorted(units.index) == sorted(csv.index)
    joined = units.merge(csv, left_index=True, right_index=True, suffixes=("", "_csv"))
    assert (joined["peak_channel_id"] == joined["ecephys_channel_id"]).all()
    for column in ("amplitude", "amplitude_cutoff", "presence_ratio", "isi_violations", "snr"):
        np.testing.assert_allclose(joined[column], joined[f"{column}_csv"])
    assert (joined["quality"] == joined["quality_csv"]).all()


def test_unit_filters(e1, vbn_release):
    root = vbn_release["0.3.0"]
    csv = meta_csv(root, "units").set_index("unit_id")
    csv = csv[csv["ecephys_session_id"] == E1]
    channels = meta_csv(root, "channels").set_index("ecephys_channel_id")
    peak = channels.loc[csv["ecephys_channel_id"]]
    valid = peak["valid_data"].to_numpy() & (csv["quality"] == "good").to_numpy()
    in_brain = peak["structure_acronym"].notna().to_numpy()

    assert len(e1.get_units()) == len(csv)  # nothing filtered by default
    by_validity = e1.get_units(filter_by_validity=True)
    assert set(by_validity.index) == set(csv.index[valid])
    assert "quality" not in by_validity.columns
    assert 0 < len(by_validity) < len(csv)
    in_brain_units = e1.get_units(filter_out_of_brain_units=True)
    assert set(in_brain_units.index) == set(csv.index[in_brain]) and len(in_brain_units) == len(csv) - 1
    limited = e1.get_units(amplitude_cutoff_maximum=0.1, presence_ratio_minimum=0.95,
                           isi_violations_maximum=0.5)
    expected = csv[(csv["amplitude_cutoff"] <= 0.1) & (csv["presence_ratio"] >= 0.95)
                   & (csv["isi_violations"] <= 0.5)]
    assert set(limited.index) == set(expected.index) and 0 < len(limited) < len(csv)


def test_spike_times_and_amplitudes(e1, vbn_release):
    times, amplitudes = e1.spike_times, e1.spike_amplitudes
    assert set(times) == set(e1.get_units().index)
    for unit_id, t in times.items():
        assert (t >= 0).all() and (np.diff(t) >= 0).all()
        assert len(amplitudes[unit_id]) == len(t)
    # each probe's first unit has one spike before time zero in the file; it is dropped
    with h5py.File(e1.nwb_path, "r") as raw:
        first_unit_spikes = raw["units/spike_times"][: raw["units/spike_times_index"][0]]
    first = int(e1.get_units().index[0])
    assert first_unit_spikes[0] < 0 and len(times[first]) == len(first_unit_spikes) - 1
    np.testing.assert_array_equal(times[first], first_unit_spikes[1:])
    # the amplitude scaling fix between the first release and the last
    with open_session(vbn_release["0.1.0"], E1) as before:
        np.testing.assert_allclose(before.spike_amplitudes[first], 1.25 * amplitudes[first])
        np.testing.assert_array_equal(before.spike_times[first], times[first])


def test_mean_waveforms_peak_on_the_peak_channel(e1):
    waveforms = e1.mean_waveforms
    units = e1.get_units()
    channels = e1.get_channels(filter_by_validity=False)
    for unit_id, waveform in waveforms.items():
        assert waveform.shape == (384, 82)
        peak = units.loc[unit_id, "peak_channel_id"]
        number = channels.loc[peak, "probe_channel_number"]
        assert np.abs(waveform).max(axis=1).argmax() in (number, number ^ 1)  # pairs share depth


# --- channels and probes ---------------------------------------------------------------


def test_channels(e1, vbn_release):
    everything = e1.get_channels(filter_by_validity=False)
    valid = e1.get_channels()
    assert everything.index.name == "id" and len(everything) == 3 * 384
    assert list(valid.columns) == CHANNEL_COLUMNS
    assert list(everything.columns) == sorted([*CHANNEL_COLUMNS, "valid_data"])
    csv = meta_csv(vbn_release["0.3.0"], "channels").set_index("ecephys_channel_id").loc[everything.index]
    assert (everything["valid_data"] == csv["valid_data"]).all()
    assert set(valid.index) == set(csv.index[csv["valid_data"]])
    np.testing.assert_allclose(everything["anterior_posterior_ccf_coordinate"],
                               csv["anterior_posterior_ccf_coordinate"])
    assert (everything["probe_id"] == csv["ecephys_probe_id"]).all()
    outside = csv["structure_acronym"].isna()
    assert everything.loc[outside.to_numpy(), "structure_acronym"].isna().all()
    assert (everything.loc[~outside.to_numpy(), "structure_acronym"]
            == csv.loc[~outside, "structure_acronym"]).all()
    # channels 370-383 of probeA were invalidated by the last update
    probe_a = everything[everything["probe_id"] == E1_PROBES["probeA"]].set_index("probe_channel_number")
    assert not probe_a.loc[370:383, "valid_data"].any() and probe_a.loc[300, "valid_data"]


def test_probes_table_and_objects(e1, e2, vbn_release):
    probes = e1.probes
    assert probes.index.name == "id" and list(probes.index) == list(E1_PROBES.values())
    assert list(probes.columns) == ["name", "location", "sampling_rate", "lfp_sampling_rate",
                                    "has_lfp_data"]
    csv = meta_csv(vbn_release["0.3.0"], "probes").set_index("ecephys_probe_id").loc[probes.index]
    assert (probes["name"] == csv["name"]).all() and probes["has_lfp_data"].all()
    assert (probes["location"] == "See electrode locations").all()
    np.testing.assert_allclose(probes["sampling_rate"], csv["sampling_rate"])
    assert [p.name for p in e1.get_probes_obj()] == list(E1_PROBES)
    # without probe meta: no LFP known
    bare = e2.probes
    assert not bare["has_lfp_data"].any() and bare["lfp_sampling_rate"].isna().all()


def test_probe_without_meta_and_unknown_probe(e2):
    assert e2.get_lfp(1044791093) is None
    assert e2.get_current_source_density(1044791093) is None
    with pytest.raises(UnknownProbeError, match="1044791093 \\(probeA\\)"):
        e2.get_lfp(42)
    with pytest.raises(ValueError):
        e2.get_current_source_density(42)
    assert issubclass(UnknownProbeError, ReleaseCacheError)


def test_lfp_is_fetched_lazily_and_read_with_real_dims(vbn_release):
    root = vbn_release["0.3.0"]
    meta = probe_meta(root, E1)
    with EcephysSession(session_path(root, E1), probe_meta=meta) as session:
        session.get_units()
        assert all(m.lfp_csd_filepath.calls == 0 for m in meta.values())
        probe_id = E1_PROBES["probeA"]
        assert session.probes.loc[probe_id, "lfp_sampling_rate"] == pytest.approx(2500.08, abs=0.01)
        lfp = session.get_lfp(probe_id)
        assert meta["probeA"].lfp_csd_filepath.calls == 1 and meta["probeB"].lfp_csd_filepath.calls == 0
        assert lfp.name == "LFP" and lfp.dims == ("time", "channel")
        assert lfp.dtype == np.float32 and lfp.coords["channel"].dtype == np.int64
        channels = session.get_channels(filter_by_validity=False)
        on_probe = channels[(channels["probe_id"] == probe_id)]
        expected = on_probe[(on_probe["probe_channel_number"] % 4 == 0)
                            & on_probe["structure_acronym"].notna()].index
        assert list(lfp.coords["channel"].values) == list(expected)
        assert lfp.shape == (400, len(expected)) and np.all(np.diff(lfp.coords["time"]) > 0)
        # after reading the file, the probe reports the file's (subsampled) rate
        assert session.probes.loc[probe_id, "lfp_sampling_rate"] == pytest.approx(1250.04, abs=0.01)
        csd = session.get_current_source_density(probe_id)
        assert csd.name == "CSD" and csd.dims == ("virtual_channel_index", "time")
        assert csd.shape == (384, 88)
        assert list(csd.coords["vertical_position"].values) == list(range(0, 3840, 10))
        assert set(csd.coords["horizontal_position"].values) == {24}
        assert csd.coords["time"].values[0] == pytest.approx(-0.1)
    with open_session(vbn_release["0.1.0"], E1) as before:
        np.testing.assert_allclose(before.get_lfp(probe_id).values, 2 * lfp.values)


# --- behavior --------------------------------------------------------------------------


def test_stimulus_presentations(e1):
    frame = e1.stimulus_presentations
    assert frame.index.name == "stimulus_presentations_id"
    assert list(frame.index) == list(range(len(frame)))
    assert frame["start_time"].is_monotonic_increasing
    assert list(frame.columns[:12]) == [
        "stimulus_block", "image_name", "duration", "start_time", "end_time", "start_frame",
        "end_frame", "is_change", "is_image_novel", "omitted", "flashes_since_change", "trials_id"]
    assert not {"stop_time", "tags", "timeseries", "image_set", "index"} & set(frame.columns)
    assert set(frame["stimulus_block"]) == {0, 1, 2, 3, 4, 5}
    # stored as float 0/1 (they have gaps across the stimulus tables) -> nullable boolean;
    # stored as bool in every table -> bool, as AllenSDK reads them
    for column in ("is_change", "omitted", "rewarded", "is_sham_change", "is_image_novel"):
        assert str(frame[column].dtype) == "boolean", column
    assert frame["active"].dtype == bool
    for column in ("flashes_since_change", "trials_id", "stimulus_index"):
        assert frame[column].dtype == np.int64
    gabor = frame[frame["stimulus_name"].str.contains("gabor")]
    flash = frame[frame["stimulus_name"].str.contains("flash")]
    assert len(gabor) == 18 and (gabor["stimulus_index"] == 0).all()
    assert len(flash) == 6 and (flash["stimulus_index"] == 1).all()
    assert (gabor["flashes_since_change"] == -99).all() and gabor["is_change"].isna().all()
    assert set(flash["color"]) <= {-1.0, 1.0}
    active = frame[frame["active"].fillna(False).astype(bool)]
    replay = frame[frame["stimulus_block"] == 5]
    assert (active["stimulus_block"] == 0).all() and len(replay) == len(active)
    assert (replay["trials_id"] == -99).all()
    assert list(replay["is_change"]) == list(active["is_change"])
    assert active["omitted"].sum() == 2
    assert set(active["image_name"]) - {"omitted"} <= set(IMAGES_G)
    # a change flash starts each go trial's change
    trials = e1.trials
    change_flashes = active[active["is_change"].astype(bool)]
    np.testing.assert_allclose(
        change_flashes["start_time"],
        trials.loc[trials["is_change"], "change_time_no_display_delay"] + 0.02115)


def test_trials_licks_rewards(e1):
    trials = e1.trials
    assert trials.index.name == "trials_id" and list(trials.columns) == VBN_TRIAL_COLUMNS
    assert "response_latency" not in trials.columns
    assert trials["change_frame"].dtype == np.int64
    assert (trials.loc[trials["aborted"], "change_frame"] == -99).all()
    assert set(trials.columns[trials.dtypes == bool]) >= {"go", "catch", "hit", "miss", "aborted"}
    kinds = trials[["hit", "miss", "false_alarm", "correct_reject", "aborted", "auto_rewarded"]]
    assert (kinds.sum(axis=1) == 1).all() and (kinds.sum() > 0).all()
    licks, rewards = e1.licks, e1.rewards
    assert list(licks.columns) == ["timestamps", "frame"] and licks["frame"].dtype == np.int64
    all_trial_licks = np.sort(np.concatenate(list(trials["lick_times"])))
    np.testing.assert_allclose(np.sort(licks["timestamps"]), all_trial_licks)
    assert list(rewards.columns) == ["volume", "timestamps", "auto_rewarded"]
    np.testing.assert_allclose(rewards["timestamps"], trials["reward_time"].dropna())
    assert rewards["auto_rewarded"].sum() == trials["auto_rewarded"].sum() == 1
    assert (rewards["volume"] == 0.005).all()
    expected = simulate(behavior_config(ECEPHYS[0]))
    np.testing.assert_allclose(licks["timestamps"], expected.lick_times)


def test_running_and_stimulus_timestamps(e1):
    frames = e1.stimulus_timestamps
    speed, raw = e1.running_speed, e1.raw_running_speed
    assert list(speed.columns) == ["timestamps", "speed"] == list(raw.columns)
    np.testing.assert_array_equal(speed["timestamps"], frames)
    assert len(frames) == e1.task_parameters["n_stimulus_frames"]
    assert np.all(np.diff(frames) > 0)
    assert (speed["speed"] != raw["speed"]).any()
    expected = simulate(behavior_config(ECEPHYS[0]))
    np.testing.assert_array_equal(speed["speed"], expected.speed)


def test_eye_tracking_recomputes_blinks(e1, e2):
    eye = e1.eye_tracking
    assert list(eye.columns) == EYE_COLUMNS and eye.index.name == "frame"
    data = simulate(behavior_config(ECEPHYS[0])).eye
    assert data is not None
    # the documented rule: missing or |z| > 3 eye/pupil area, widened by 2 frames each side
    marked = np.zeros(len(eye), dtype=bool)
    for column in ("eye_area_raw", "pupil_area_raw"):
        area = eye[column].to_numpy()
        marked |= np.isnan(area)
        with np.errstate(invalid="ignore"):
            marked |= np.abs(area - np.nanmean(area)) / np.nanstd(area) > 3.0
    expected = np.convolve(marked.astype(float), np.ones(5), mode="same") > 0
    np.testing.assert_array_equal(eye["likely_blink"].to_numpy(), expected)
    # which includes the writer's blinks and the injected outlier, each widened
    injected = data["likely_blink"] | np.isin(np.arange(len(eye)), data["outlier_frame"])
    assert expected[np.convolve(injected.astype(float), np.ones(5), mode="same") > 0].all()
    assert eye.loc[expected, "pupil_area"].isna().all()
    assert eye.loc[~expected, "pupil_area"].notna().all()
    outlier = int(data["outlier_frame"][0])
    assert not np.isnan(eye.loc[outlier, "pupil_area_raw"])
    assert eye.loc[outlier, "pupil_area_raw"] > 4 * eye["pupil_area"].median()
    empty = e2.eye_tracking
    assert list(empty.columns) == EYE_COLUMNS and len(empty) == 0


def test_rig_geometry(e1, e2):
    geometry = e1.eye_tracking_rig_geometry
    assert sorted(geometry) == ["camera_position_mm", "camera_rotation_deg", "equipment",
                                "led_position", "monitor_position_mm", "monitor_rotation_deg"]
    assert geometry["equipment"] == "NP.1"
    np.testing.assert_allclose(geometry["monitor_position_mm"], [118.6, 86.2, 31.6])
    assert e2.eye_tracking_rig_geometry == {}


def test_optotagging_table(e3):
    opto = e3.optotagging_table
    assert opto.index.name == "id"
    assert list(opto.columns) == ["start_time", "condition", "level", "stop_time", "stimulus_name",
                                  "duration"]
    assert len(opto) == 12 and set(opto["level"]) == {0.95, 0.8, 0.685}
    assert set(opto["stimulus_name"]) == {"raised_cosine", "pulse"}
    np.testing.assert_allclose(opto["stop_time"] - opto["start_time"], opto["duration"])
    pulses = opto[opto["stimulus_name"] == "pulse"]
    assert (pulses["condition"] == "a single square pulse").all() and (pulses["duration"] == 0.01).all()


def test_task_parameters_and_templates(e1):
    params = e1.task_parameters
    assert sorted(params) == ["auto_reward_volume", "blank_duration_sec", "image_set",
                              "n_stimulus_frames", "omitted_flash_fraction", "response_window_sec",
                              "reward_volume", "session_type", "stimulus", "stimulus_distribution",
                              "stimulus_duration_sec", "stimulus_name", "task"]
    assert params["blank_duration_sec"] == [0.5, 0.5] and params["response_window_sec"] == [0.15, 0.75]
    assert params["image_set"] == "images_G" and params["stimulus_name"] is None
    assert params["task"] == "change detection" and params["session_type"] == e1.metadata["session_type"]
    templates = e1.stimulus_templates
    assert templates.index.name == "image_name" and list(templates.index) == IMAGES_G
    assert list(templates.columns) == ["unwarped", "warped"]
    warped, unwarped = templates.loc["im104_r", "warped"], templates.loc["im104_r", "unwarped"]
    assert warped.dtype == np.uint8 and warped.ndim == 2
    assert np.isnan(unwarped[0, 0]) and not np.isnan(unwarped[unwarped.shape[0] // 2, unwarped.shape[1] // 2])


def test_performance_summaries(habituation):
    rate = habituation.get_reward_rate()
    trials = habituation.trials
    assert len(rate) == len(trials) and np.isnan(rate[:10]).all() and np.isfinite(rate[10:]).all()
    rolling = habituation.get_rolling_performance_df()
    assert list(rolling.columns) == ["reward_rate", "hit_rate_raw", "hit_rate",
                                     "false_alarm_rate_raw", "false_alarm_rate", "rolling_dprime"]
    skipped = trials["aborted"] | trials["auto_rewarded"]
    assert rolling.loc[skipped, "hit_rate"].isna().all()
    metrics = habituation.get_performance_metrics()
    assert metrics["trial_count"] == len(trials)
    assert metrics["hit_trial_count"] == trials["hit"].sum()
    assert metrics["total_reward_volume"] == pytest.approx(habituation.rewards["volume"].sum())


# --- behavior-only files and the behavior part of ecephys files ---------------------------


def test_behavior_only_session(habituation, vbn_release):
    presentations = habituation.stimulus_presentations
    assert set(presentations["stimulus_block"]) == {0}
    assert "image_index" in presentations.columns and presentations["image_index"].dtype == np.int64
    trials = habituation.trials
    assert len(trials.columns) == 21 and "response_latency" in trials.columns
    assert len(habituation.eye_tracking) > 0
    with BehaviorSession(behavior_path(vbn_release["0.3.0"], GRATINGS)) as gratings:
        assert list(gratings.stimulus_templates.index) == ["gratings_0.0", "gratings_90.0",
                                                           "gratings_180.0", "gratings_270.0"]
        assert gratings.eye_tracking.empty and gratings.eye_tracking_rig_geometry == {}
        assert (gratings.stimulus_presentations["stimulus_name"] == "grating").all()


def test_behavior_session_reads_the_behavior_part_of_an_ecephys_file(vbn_release, e2):
    root = vbn_release["0.3.0"]
    behavior = meta_csv(root, "behavior_sessions").set_index("behavior_session_id")
    with BehaviorSession(session_path(root, E2)) as session:
        assert session.behavior_session_id in behavior.index
        assert behavior.loc[session.behavior_session_id, "ecephys_session_id"] == E2
        assert "ecephys_session_id" not in session.metadata
        pd.testing.assert_frame_equal(session.trials.drop(columns="lick_times"),
                                      e2.trials.drop(columns="lick_times"))
        assert not hasattr(session, "get_units")


# --- laziness and closing -----------------------------------------------------------------


def test_small_questions_read_no_large_datasets(vbn_release, monkeypatch):
    """Numeric datasets are read only when asked for.

    (pynwb itself reads the text columns of every table when it opens a file.)
    """
    read: list[str] = []
    original = h5py.Dataset.__getitem__

    def recording(self, key):
        if self.dtype.kind in "fiub" and self.size > 1:
            read.append(self.name)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    session = open_session(vbn_release["0.3.0"], E1)
    assert not session._handle.is_open  # nothing is opened before it is needed
    session.metadata
    session.get_units()
    session.probes
    assert session._handle.is_open
    large = ("/units/spike_", "/units/waveform_mean", "/acquisition", "/processing/running",
             "/processing/stimulus", "/stimulus", "/intervals")
    assert not [n for n in read if n.startswith(large) and not n.endswith("/id")], read
    assert not [n for n in read if n.startswith("/general/extracellular_ephys/electrodes/")
                and not n.endswith("/id")], "get_units() without filters needs no channel data"
    session.spike_times
    assert "/units/spike_times" in read and "/units/waveform_mean" not in read
    session.close()


def test_close_releases_the_file(vbn_release, tmp_path):
    path = tmp_path / "session.nwb"
    shutil.copyfile(session_path(vbn_release["0.3.0"], E2), path)
    session = EcephysSession(path)
    session.get_units()
    with pytest.raises(OSError):
        h5py.File(path, "r+")  # still open (read-only) in this process
    session.close()
    assert session.closed
    h5py.File(path, "r+").close()
    with pytest.raises(SessionClosedError):
        session.trials
    with pytest.raises(ValueError):
        session.get_channels()
    session.close()  # idempotent
    with EcephysSession(path) as again:
        again.get_units()
    h5py.File(path, "r+").close()
    with pytest.raises(FileNotFoundError):
        BehaviorSession(tmp_path / "missing.nwb")


def test_sessions_read_from_file_objects(vbn_release):
    """A seekable binary file (e.g. a streamed remote file) works like a path."""
    root = vbn_release["0.3.0"]
    meta = probe_meta(root, E1)
    with open(session_path(root, E1), "rb") as raw, open(meta["probeB"].lfp_csd_filepath.path, "rb") as lfp_raw:
        streamed_meta = {"probeB": ProbeMeta(lfp_csd_filepath=lambda: lfp_raw, lfp_sampling_rate=2500.0)}
        with EcephysSession(raw, probe_meta=streamed_meta) as session:
            assert session.nwb_path.name == f"ecephys_session_{E1}.nwb"
            assert len(session.get_units()) == 21
            lfp = session.get_lfp(E1_PROBES["probeB"])
            assert lfp.dims == ("time", "channel") and lfp.shape[0] == 400
        assert not raw.closed and not lfp_raw.closed  # the caller's files stay open
        with BehaviorSession(raw) as behavior:
            assert behavior.behavior_session_id == 1044408432


def test_returned_objects_are_copies(e1):
    trials = e1.trials
    trials.loc[0, "start_time"] = -1.0
    trials.loc[0, "lick_times"][:] = -1.0
    assert e1.trials.loc[0, "start_time"] > 0 and (e1.trials.loc[0, "lick_times"] > 0).all()
    times = e1.spike_times
    next(iter(times.values()))[:] = -1.0
    assert (next(iter(e1.spike_times.values())) >= 0).all()
