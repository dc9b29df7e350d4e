"""The synthetic VBN release: layout, CSV conventions, file ids and version changes."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import h5py
import pandas as pd

from tests.support.fixtures.vbn import build_vbn_release, write_full_scale_tables

PROJECT = "visual-behavior-neuropixels"
TABLES = ("ecephys_sessions", "behavior_sessions", "probes", "channels", "units")
E1, E2, E3 = 1044385384, 1044594870, 1053941483
B_DELETED, B_CREATED = 1029221057, 1051155866
RENAMED_PROBE = 1044791094

# Column sets and orders of the real release (reference data model, section 2).
ECEPHYS_COLUMNS = [
    "ecephys_session_id", "behavior_session_id", "date_of_acquisition", "equipment_name",
    "session_type", "mouse_id", "genotype", "sex", "project_code", "age_in_days", "unit_count",
    "probe_count", "channel_count", "structure_acronyms", "image_set",
    "prior_exposures_to_image_set", "session_number", "experience_level",
    "prior_exposures_to_omissions", "file_id", "abnormal_histology", "abnormal_activity",
]
BEHAVIOR_COLUMNS = [
    "behavior_session_id", "equipment_name", "genotype", "mouse_id", "sex", "age_in_days",
    "session_number", "prior_exposures_to_session_type", "prior_exposures_to_image_set",
    "prior_exposures_to_omissions", "ecephys_session_id", "date_of_acquisition", "session_type",
    "image_set", "file_id",
]
PROBE_COLUMNS = [
    "ecephys_probe_id", "ecephys_session_id", "name", "sampling_rate", "lfp_sampling_rate", "phase",
    "has_lfp_data", "unit_count", "channel_count", "structure_acronyms", "file_id",
]
CHANNEL_COLUMNS = [
    "ecephys_channel_id", "ecephys_probe_id", "ecephys_session_id", "probe_channel_number",
    "probe_vertical_position", "probe_horizontal_position", "anterior_posterior_ccf_coordinate",
    "dorsal_ventral_ccf_coordinate", "left_right_ccf_coordinate", "structure_acronym",
    "unit_count", "valid_data",
]
UNIT_COLUMNS_V5 = [
    "unit_id", "ecephys_channel_id", "ecephys_probe_id", "ecephys_session_id", "amplitude_cutoff",
    "anterior_posterior_ccf_coordinate", "dorsal_ventral_ccf_coordinate",
    "left_right_ccf_coordinate", "cumulative_drift", "d_prime", "structure_acronym",
    "structure_id", "firing_rate", "isi_violations", "isolation_distance", "l_ratio",
    "local_index", "max_drift", "nn_hit_rate", "nn_miss_rate", "presence_ratio",
    "probe_horizontal_position", "probe_vertical_position", "silhouette_score", "snr", "quality",
    "valid_data", "amplitude", "waveform_duration", "waveform_halfwidth", "PT_ratio",
    "recovery_slope", "repolarization_slope", "spread", "velocity_above", "velocity_below",
]


def csv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / PROJECT / "project_metadata" / f"{name}.csv")


def file_ids(root: Path) -> dict[int, str]:
    return {int(k): v for k, v in json.loads((root / "file_ids.json").read_text()).items()}


def hashes(root: Path) -> dict[str, str]:
    """{path relative to the project folder: blake2b} of every file of a version."""
    out = {}
    for path in sorted((root / PROJECT).rglob("*")):
        if path.is_file():
            out[path.relative_to(root / PROJECT).as_posix()] = hashlib.blake2b(path.read_bytes()).hexdigest()
    return out


def test_versions_and_layout(vbn_release):
    assert list(vbn_release) == ["0.1.0", "0.2.0", "0.3.0"]
    for version, root in vbn_release.items():
        assert root.name == version
        for name in TABLES:
            assert (root / PROJECT / "project_metadata" / f"{name}.csv").is_file()
        ids = file_ids(root)
        assert sorted(ids) == list(range(len(ids)))
        listed = {(root / key).resolve() for key in ids.values()}
        on_disk = {p.resolve() for p in (root / PROJECT).rglob("*.nwb")}
        assert listed == on_disk, "every data file is in file_ids.json, and nothing else"
        for key in ids.values():
            assert key.startswith(f"{PROJECT}/")
            assert re.fullmatch(
                rf"{PROJECT}/(behavior_ecephys_sessions/\d+/(ecephys_session_\d+|probe_probe[A-F]_lfp"
                rf"|lfp_probe_\d+)|behavior_only_sessions/(\d+)/behavior_session_\3)\.nwb", key), key
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        assert size < 10_000_000, f"{version} is {size} bytes"


def test_csv_columns_follow_the_real_release(vbn_release):
    root = vbn_release["0.2.0"]
    assert list(csv(root, "ecephys_sessions").columns) == ECEPHYS_COLUMNS
    assert list(csv(root, "behavior_sessions").columns) == BEHAVIOR_COLUMNS
    assert list(csv(root, "probes").columns) == PROBE_COLUMNS
    assert list(csv(root, "channels").columns) == CHANNEL_COLUMNS
    assert list(csv(root, "units").columns) == UNIT_COLUMNS_V5
    # before the update the units table has no quality column (34 non-index columns)
    old_units = csv(vbn_release["0.1.0"], "units")
    assert list(old_units.columns) == [c for c in UNIT_COLUMNS_V5 if c != "quality"]
    assert len(old_units.columns) - 1 == 34


def test_csv_value_styles(vbn_release):
    root = vbn_release["0.1.0"]
    sessions = csv(root, "ecephys_sessions").set_index("ecephys_session_id")
    assert sessions.loc[E1, "date_of_acquisition"] == "2020-08-19 14:47:08.574000+00:00"
    assert sessions["structure_acronyms"].str.startswith("['").all()
    assert "'DG-mo'" in sessions.loc[E1, "structure_acronyms"]  # substructures kept here
    assert sessions.loc[E2, "abnormal_histology"] == "['Thalamus']"
    assert pd.isna(sessions.loc[E1, "abnormal_histology"]) and pd.isna(sessions.loc[E1, "abnormal_activity"])
    assert (sessions["channel_count"] == 384 * sessions["probe_count"]).all()
    assert sessions.loc[E2, "experience_level"] == "Novel" and sessions.loc[E1, "experience_level"] == "Familiar"

    probes = csv(root, "probes")
    for text in probes["structure_acronyms"]:
        names = eval(text)  # noqa: S307 - the fixture's own list repr
        assert names == sorted(set(names)) and not any("-" in n for n in names)
    assert (probes["lfp_sampling_rate"] - probes["sampling_rate"] / 12).abs().max() < 1e-5

    channels = csv(root, "channels")
    assert (channels.groupby("ecephys_probe_id").size() == 384).all()
    assert set(channels["probe_horizontal_position"]) == {43.0, 11.0, 59.0, 27.0}
    assert not channels.loc[channels["probe_channel_number"] == 191, "valid_data"].any()
    assert channels["structure_acronym"].isna().any()
    assert not channels["structure_acronym"].dropna().str.contains("-").any()

    units = csv(root, "units")
    counts = units.groupby("ecephys_channel_id").size()
    by_channel = channels.set_index("ecephys_channel_id")["unit_count"]
    assert (by_channel.loc[counts.index] == counts).all() and by_channel.sum() == len(units)
    assert probes.set_index("ecephys_probe_id")["unit_count"].sum() == len(units)


def test_shared_file_id_space_in_registration_order(vbn_release):
    for version, root in vbn_release.items():
        ids = file_ids(root)
        probes = csv(root, "probes")
        sessions = csv(root, "ecephys_sessions")
        behavior = csv(root, "behavior_sessions")
        with_lfp = probes[probes["has_lfp_data"]]
        n_lfp = len(with_lfp)
        assert list(with_lfp["file_id"]) == list(range(n_lfp))
        assert (probes.loc[~probes["has_lfp_data"], "file_id"] == -999).all()
        assert (~probes["has_lfp_data"]).sum() == 1
        assert list(sessions["file_id"]) == list(range(n_lfp, n_lfp + len(sessions)))
        only = behavior[behavior["file_id"] >= 0].sort_values("behavior_session_id")
        start = n_lfp + len(sessions)
        assert list(only["file_id"]) == list(range(start, start + len(only)))
        assert len(ids) == start + len(only)
        # the file each id names matches its row
        for row in sessions.itertuples():
            assert ids[row.file_id].endswith(f"/ecephys_session_{row.ecephys_session_id}.nwb")
        for row in only.itertuples():
            assert ids[row.file_id].endswith(f"/behavior_session_{row.behavior_session_id}.nwb")
        for row in with_lfp.itertuples():
            folder = f"behavior_ecephys_sessions/{row.ecephys_session_id}/"
            assert folder in ids[row.file_id]
            assert ids[row.file_id].endswith((f"probe_{row.name}_lfp.nwb", f"lfp_probe_{row.ecephys_probe_id}.nwb"))
        # behavior sessions of released ecephys sessions: no file of their own
        ecephys_rows = behavior[behavior["behavior_session_id"].isin(sessions["behavior_session_id"])]
        assert (ecephys_rows["file_id"] == -999).all()
        assert set(ecephys_rows["ecephys_session_id"]) == set(sessions["ecephys_session_id"])
        # a habituation session on the NP rig: ecephys id set, but a real file
        habituation = behavior[behavior["session_type"].str.startswith("HABITUATION")].iloc[0]
        assert habituation["file_id"] >= 0 and not pd.isna(habituation["ecephys_session_id"])
        assert habituation["ecephys_session_id"] not in set(sessions["ecephys_session_id"])


def _diff(old: dict[str, str], new: dict[str, str]) -> dict[str, set[str]]:
    return {
        "changed": {p for p in old.keys() & new.keys() if old[p] != new[p]},
        "unchanged": {p for p in old.keys() & new.keys() if old[p] == new[p]},
        "created": set(new) - set(old),
        "deleted": set(old) - set(new),
    }


def test_first_update_exercises_every_kind_of_change(vbn_release):
    old, new = hashes(vbn_release["0.1.0"]), hashes(vbn_release["0.2.0"])
    diff = _diff(old, new)
    assert diff["changed"] == {
        "project_metadata/units.csv",
        "project_metadata/behavior_sessions.csv",
        f"behavior_ecephys_sessions/{E1}/ecephys_session_{E1}.nwb",
    }
    renamed_from = f"behavior_ecephys_sessions/{E2}/lfp_probe_{RENAMED_PROBE}.nwb"
    renamed_to = f"behavior_ecephys_sessions/{E2}/probe_probeB_lfp.nwb"
    assert diff["deleted"] == {renamed_from,
                               f"behavior_only_sessions/{B_DELETED}/behavior_session_{B_DELETED}.nwb"}
    assert diff["created"] == {renamed_to,
                               f"behavior_only_sessions/{B_CREATED}/behavior_session_{B_CREATED}.nwb"}
    assert old[renamed_from] == new[renamed_to], "a rename keeps the bytes"
    assert new[f"behavior_only_sessions/{B_CREATED}/behavior_session_{B_CREATED}.nwb"] not in old.values()
    assert len(diff["unchanged"]) == len(old) - 5


def test_second_update_changes_metadata_and_data(vbn_release):
    diff = _diff(hashes(vbn_release["0.2.0"]), hashes(vbn_release["0.3.0"]))
    assert diff["changed"] == {
        "project_metadata/ecephys_sessions.csv",
        "project_metadata/channels.csv",
        f"behavior_ecephys_sessions/{E1}/ecephys_session_{E1}.nwb",
        f"behavior_ecephys_sessions/{E1}/probe_probeA_lfp.nwb",
    }
    assert not diff["created"] and not diff["deleted"]
    sessions = csv(vbn_release["0.3.0"], "ecephys_sessions").set_index("ecephys_session_id")
    assert sessions.loc[E3, "abnormal_activity"] == "[8899]"


def test_file_ids_can_move_between_versions(vbn_release):
    """As in the real release, ids are reassigned per version (here: behavior-only files)."""
    old, new = file_ids(vbn_release["0.1.0"]), file_ids(vbn_release["0.2.0"])
    moved = {i: (old[i], new[i]) for i in old.keys() & new.keys() if old[i] != new[i]}
    renamed = {i for i, (a, _) in moved.items() if a.endswith(f"lfp_probe_{RENAMED_PROBE}.nwb")}
    assert len(renamed) == 1
    reassigned = set(moved) - renamed
    assert reassigned and all("behavior_only_sessions" in old[i] and "behavior_only_sessions" in new[i]
                              for i in reassigned)


def test_release_is_byte_reproducible(vbn_release, tmp_path):
    again = build_vbn_release(tmp_path, versions=("0.1.0",))
    assert hashes(again["0.1.0"]) == hashes(vbn_release["0.1.0"])
    assert (again["0.1.0"] / "file_ids.json").read_bytes() == (vbn_release["0.1.0"] / "file_ids.json").read_bytes()


EXTENSION_OBJECTS = {
    "session": {
        "general/subject": ("BehaviorSubject", "ndx-aibs-behavior-ophys"),
        "general/metadata": ("BehaviorMetadata", "ndx-aibs-behavior-ophys"),
        "general/task_parameters": ("BehaviorTaskParameters", "ndx-aibs-behavior-ophys"),
        "general/devices/probeA": ("EcephysProbe", "ndx-aibs-ecephys"),
        "general/extracellular_ephys/probeA": ("EcephysElectrodeGroup", "ndx-aibs-ecephys"),
        "acquisition/EyeTracking": ("EllipseEyeTracking", "ndx-ellipse-eye-tracking"),
        "acquisition/EyeTracking/pupil_tracking": ("EllipseSeries", "ndx-ellipse-eye-tracking"),
        "processing/eye_tracking_rig_metadata/eye_tracking_rig_metadata":
            ("OphysEyeTrackingRigMetadata", "ndx-aibs-behavior-ophys"),
        "stimulus/templates/Natural_Images_Lum_Matched_set_ophys_G_2019":
            ("StimulusTemplate", "ndx-aibs-stimulus-template"),
    },
    "lfp": {
        "general/devices/probeA": ("EcephysProbe", "ndx-aibs-ecephys"),
        "processing/current_source_density/ecephys_csd": ("EcephysCSD", "ndx-aibs-ecephys"),
    },
}


def _attr(obj, name):
    value = obj.attrs.get(name)
    return value.decode() if isinstance(value, bytes) else value


def test_nwb_files_use_the_real_extension_types(vbn_release):
    """The objects sit where AllenSDK's writer puts them, with its extension types and schemas."""
    from tests.support.fixtures.allen_extensions import NAMESPACE_FILES, namespace_dir

    root = vbn_release["0.1.0"] / PROJECT / "behavior_ecephys_sessions" / str(E1)
    files = {"session": root / f"ecephys_session_{E1}.nwb", "lfp": root / "probe_probeA_lfp.nwb"}
    for kind, objects in EXTENSION_OBJECTS.items():
        with h5py.File(files[kind], "r") as handle:
            for path, (neurodata_type, namespace) in objects.items():
                assert (_attr(handle[path], "neurodata_type"), _attr(handle[path], "namespace")) \
                    == (neurodata_type, namespace), path
            cached = set(handle["specifications"])
            assert set(NAMESPACE_FILES) <= cached, "the file embeds the extension schemas"
            for namespace, (_, spec_file) in NAMESPACE_FILES.items():
                version = next(iter(handle["specifications"][namespace]))
                stored = json.loads(handle["specifications"][namespace][version][
                    Path(spec_file).name.removesuffix(".yaml")][()])
                wheel = (namespace_dir() / Path(spec_file).name).read_text()
                defined = [g["neurodata_type_def"] for g in stored["groups"]]
                assert defined and all(f"neurodata_type_def: {d}" in wheel for d in defined)
    with h5py.File(files["session"], "r") as handle:
        # the wild-type mouse: reporter line written as str(None), no driver_line attribute
        subject = handle["general/subject"]
        assert _attr(subject, "reporter_line") == "None"
        assert "driver_line" not in subject and "driver_line" not in subject.attrs


def test_full_scale_tables_match_the_real_sizes(tmp_path):
    paths = write_full_scale_tables(tmp_path)
    assert set(paths) == set(TABLES)
    units = pd.read_csv(paths["units"], usecols=["unit_id", "quality"])
    channels = pd.read_csv(paths["channels"], usecols=["ecephys_channel_id", "ecephys_probe_id"])
    probes = pd.read_csv(paths["probes"])
    sessions = pd.read_csv(paths["ecephys_sessions"])
    behavior = pd.read_csv(paths["behavior_sessions"], usecols=["behavior_session_id", "file_id"])
    assert len(sessions) == 153 and len(probes) == 905
    assert len(channels) == 905 * 384 == 347_520
    assert len(units) == 319_013 and units["unit_id"].is_unique
    assert len(behavior) == 3424
    assert list(pd.read_csv(paths["units"], nrows=1).columns) == UNIT_COLUMNS_V5
    assert list(probes.columns) == PROBE_COLUMNS and list(sessions.columns) == ECEPHYS_COLUMNS
    # one file id space: LFP probes, then sessions, then behavior-only sessions
    lfp = probes.loc[probes["file_id"] >= 0, "file_id"]
    assert sorted(lfp) == list(range(len(lfp)))
    assert sessions["file_id"].min() == len(lfp)
    assert behavior.loc[behavior["file_id"] >= 0, "file_id"].min() == len(lfp) + 153


def test_fast_csv_writer_matches_to_csv(tmp_path):
    """The vectorised writer of the full-scale tables reads back exactly like ``to_csv``."""
    from tests.support.fixtures._vbn_fullscale import write_csv_fast

    frame = pd.DataFrame({
        "id": [1049365509, 2, 3, 4],
        "ratio": [0.5, 20.0, float("nan"), 1e-05],
        "big": [1.5e20, -3.0, 2.5e-7, 30000.178402],
        "ok": [True, False, True, True],
        "acronyms": ["['APN', 'CA1']", None, 'say "hi"', "root"],
        "count": pd.array([1, None, 3, 4], dtype="Int64"),
    })
    fast, slow = tmp_path / "fast.csv", tmp_path / "slow.csv"
    write_csv_fast(frame, fast)
    frame.to_csv(slow, index=False)
    pd.testing.assert_frame_equal(pd.read_csv(fast), pd.read_csv(slow), check_exact=True)
    assert fast.read_text().splitlines()[0] == slow.read_text().splitlines()[0]
