"""Readers for the behavior part of a VBN NWB file (shared by both session kinds)."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import NwbLayoutError
from . import layout
from ._file import processing_child, read_dataset, scalar_columns
from ._h5table import NotPlainTable, child, neurodata_type, table_columns

logger = logging.getLogger("releasecache")

INT_NULL = -99
"""Stands for a missing value in integer-coerced presentation and trial columns."""
PRESENTATION_INT_COLUMNS = ("flashes_since_change", "image_index", "movie_repeat",
                            "movie_frame_index", "repeat", "stimulus_index", "trials_id")
"""Int columns; ``-99`` where a presentation has no value (``trials_id`` too, unlike the reference)."""
PRESENTATION_LEADING = (
    "stimulus_block", "stimulus_block_name", "image_index", "image_name", "movie_frame_index",
    "duration", "start_time", "end_time", "start_frame", "end_frame", "is_change",
    "is_image_novel", "omitted", "movie_repeat", "flashes_since_change", "trials_id",
)
"""The reference reader's leading columns (those present, in this order); the rest follow sorted."""
PRESENTATION_SKIPPED = ("tags", "timeseries")
PRESENTATION_DROPPED = ("image_set", "index")
PROJECT_CODE_NOT_AVAILABLE = "Not Available"
"""The reference reader's project code when the file has none."""
EYE_COLUMNS = (
    "timestamps", "cr_area", "eye_area", "pupil_area", "likely_blink", "pupil_area_raw",
    "cr_area_raw", "eye_area_raw", "cr_center_x", "cr_center_y", "cr_width", "cr_height", "cr_phi",
    "eye_center_x", "eye_center_y", "eye_width", "eye_height", "eye_phi", "pupil_center_x",
    "pupil_center_y", "pupil_width", "pupil_height", "pupil_phi",
)
BLINK_Z_THRESHOLD = 3.0
BLINK_DILATION_FRAMES = 2


# --- presentations -------------------------------------------------------------------


def _none_text(value: Any) -> Any:
    """The writer's ``"None"`` for a missing text value, read back as None."""
    return None if isinstance(value, str) and value == layout.NONE_TEXT else value


def _presentation_table(table: Any) -> pd.DataFrame:
    return _presentation_frame(scalar_columns(table, skip=PRESENTATION_SKIPPED))


def _presentation_frame(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].replace("N/A", "")
    return frame


def _merge_end_times(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``stop_time`` becomes ``end_time``; a stored ``end_time`` only fills its gaps."""
    if "stop_time" not in df.columns:
        return df
    if "end_time" in df.columns:
        stored = df.pop("end_time")
        differ = stored.notna() & df["stop_time"].notna() & ~np.isclose(
            stored.to_numpy(float), df["stop_time"].to_numpy(float), equal_nan=True)
        if differ.any():
            logger.warning("%s: %d presentations have an end_time that differs from their "
                           "stop_time; using stop_time", path.name, int(differ.sum()))
        df["stop_time"] = df["stop_time"].fillna(stored)
    return df.rename(columns={"stop_time": "end_time"})


def presentation_frames(nwbfile: Any) -> list[pd.DataFrame]:
    """Each ``*_presentations`` interval table, read through pynwb."""
    return [_presentation_table(table) for name, table in nwbfile.intervals.items()
            if name.endswith(layout.PRESENTATIONS_SUFFIX)]


def presentation_frames_h5(h5: Any) -> list[pd.DataFrame]:
    """Each ``*_presentations`` interval table, read straight from the HDF5 groups (in pynwb's order)."""
    intervals = child(h5, layout.INTERVALS)
    if intervals is None:
        raise NotPlainTable("no intervals group")
    frames = []
    for name, group in intervals.items():
        if not name.endswith(layout.PRESENTATIONS_SUFFIX):
            continue
        if neurodata_type(group) != layout.TIME_INTERVALS:
            raise NotPlainTable(f"intervals/{name} is not a TimeIntervals table")
        frames.append(_presentation_frame(table_columns(group, skip=PRESENTATION_SKIPPED)))
    return frames


def has_trials_h5(h5: Any) -> bool:
    """Whether the file has a trials table (``intervals/trials``)."""
    intervals = child(h5, layout.INTERVALS)
    return intervals is not None and layout.TRIALS in intervals


def stimulus_presentations(frames: list[pd.DataFrame], trials: pd.DataFrame | None, path: Path, *,
                           add_is_change: bool) -> pd.DataFrame:
    """All ``*_presentations`` interval tables (``frames``, as read) as one frame sorted by start time.

    Follows the reference reader: the tables are concatenated as stored, so a
    bool column stays ``bool``; float columns holding only 0/1 (and NaN)
    become pandas ``boolean`` unless their name ends in ``_index``; ``"N/A"``
    strings read as ``""``; the int columns (``flashes_since_change``,
    ``stimulus_index``, ``trials_id``, ...) get ``-99`` for missing values;
    ``stop_time`` becomes ``end_time`` (a stored ``end_time`` column only
    fills gaps); ``tags``, ``timeseries``, ``image_set`` and ``index`` are
    dropped. With ``add_is_change`` (behavior sessions), ``is_change`` and
    ``flashes_since_change`` are recomputed from the image names, as the
    reference reader does for behavior sessions. Missing ``active``,
    ``trials_id`` and ``is_sham_change`` are derived from the trials.
    """
    if not frames:
        raise NwbLayoutError(f"{path.name} has no stimulus presentations "
                             f"(no intervals['*{layout.PRESENTATIONS_SUFFIX}'] tables)")
    df = pd.concat(frames, ignore_index=True, sort=False)
    for column in df.columns:
        series = df[column]
        if (pd.api.types.is_float_dtype(series.dtype) and not column.endswith("_index")
                and _booleanish(series)):
            df[column] = series.astype("boolean")
    df = df.sort_values("start_time", kind="stable", ignore_index=True)
    if add_is_change and {"image_name", "omitted"} <= set(df.columns):
        df["is_change"] = _is_change_event(df)
        df["flashes_since_change"] = _flashes_since_change(df)
    df = _derive_missing(df, trials)
    for column in PRESENTATION_INT_COLUMNS:
        if column in df.columns:
            df[column] = df[column].fillna(INT_NULL).astype(np.int64)
    df = df.drop(columns=[c for c in PRESENTATION_DROPPED if c in df.columns])
    df = _merge_end_times(df, path)
    leading = [c for c in PRESENTATION_LEADING if c in df.columns]
    rest = sorted(c for c in df.columns if c not in leading)
    df = df.loc[:, leading + rest]
    df.index = pd.RangeIndex(len(df), name="stimulus_presentations_id")
    return df


def _booleanish(values: pd.Series) -> bool:
    present = values.dropna()
    return bool(present.isin([0, 1]).all())


def _is_change_event(df: pd.DataFrame) -> pd.Series:
    """The first presentation of a new image (omitted flashes and the first flash excluded)."""
    omitted = df["omitted"].fillna(False).astype(bool)
    images = df.loc[~omitted, "image_name"]
    changed = (images != images.shift()).iloc[1:]
    return changed.reindex(df.index, fill_value=False).astype(bool)


def _flashes_since_change(df: pd.DataFrame) -> pd.Series:
    """Flashes of the same image since the last change (omitted flashes repeat the count)."""
    omitted = df["omitted"].fillna(False).astype(bool).to_numpy() | (df["image_name"] == "omitted").to_numpy()
    change = df["is_change"].to_numpy(bool)
    counts = np.zeros(len(df), dtype=np.int64)
    for k in range(len(df)):
        if omitted[k]:
            counts[k] = counts[k - 1] if k else 0
        elif change[k] or k == 0:
            counts[k] = 0
        else:
            counts[k] = counts[k - 1] + 1
    return pd.Series(counts, index=df.index)


def _derive_missing(df: pd.DataFrame, trials: pd.DataFrame | None) -> pd.DataFrame:
    if trials is None or not len(trials):
        return df
    starts = trials["start_time"].to_numpy(float)
    stops = trials["stop_time"].to_numpy(float)
    if "active" not in df.columns:
        df["active"] = (df["start_time"] >= starts[0]) & (df["start_time"] < stops[-1])
    if "trials_id" not in df.columns:
        position = np.searchsorted(starts, df["start_time"].to_numpy(float), side="right") - 1
        inside = (position >= 0) & (df["start_time"].to_numpy(float) < stops[np.clip(position, 0, None)])
        inside &= df["active"].fillna(False).astype(bool).to_numpy()
        df["trials_id"] = np.where(inside, trials.index.to_numpy()[np.clip(position, 0, None)], INT_NULL)
    if "is_sham_change" not in df.columns:
        df["is_sham_change"] = False
    return df


# --- trials, licks, rewards, running -------------------------------------------------------


TRIAL_SKIPPED = ("tags", "timeseries")
TRIAL_RAGGED = ("lick_times",)


def trials(nwbfile: Any, path: Path) -> pd.DataFrame:
    """The trials table, index ``trials_id`` (``lick_times`` one array per trial)."""
    table = nwbfile.trials
    if table is None:
        raise NwbLayoutError(f"{path.name} has no trials table (intervals['trials'])")
    return _trials_frame(scalar_columns(table, skip=TRIAL_SKIPPED, ragged=TRIAL_RAGGED))


def trials_h5(h5: Any) -> pd.DataFrame:
    """:func:`trials`, read straight from the HDF5 group."""
    group = child(h5, f"{layout.INTERVALS}/{layout.TRIALS}")
    if group is None or neurodata_type(group) != layout.TIME_INTERVALS:
        raise NotPlainTable("no TimeIntervals table intervals/trials")
    return _trials_frame(table_columns(group, skip=TRIAL_SKIPPED, ragged=TRIAL_RAGGED))


def _trials_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns={"stimulus_change": "is_change"})
    if "change_frame" in df.columns:
        df["change_frame"] = df["change_frame"].fillna(INT_NULL).astype(np.int64)
    df.index.name = "trials_id"
    return df


def _series(nwbfile: Any, module: str, name: str, path: Path) -> Any:
    series = processing_child(nwbfile, module, name)
    if series is None:
        raise NwbLayoutError(f"{path.name} has no processing[{module!r}][{name!r}]")
    return series


def licks(nwbfile: Any, path: Path) -> pd.DataFrame:
    """Lick times and frames (empty when the file has no ``licking`` module, as the reference)."""
    if "licking" not in nwbfile.processing:
        return pd.DataFrame({"timestamps": np.zeros(0), "frame": np.zeros(0, dtype=np.int64)})
    series = _series(nwbfile, "licking", "licks", path)
    return pd.DataFrame({"timestamps": read_dataset(series.timestamps),
                         "frame": read_dataset(series.data).astype(np.int64)})


def rewards(nwbfile: Any, path: Path) -> pd.DataFrame:
    """Reward volumes, times and whether each was automatic (empty without a ``rewards`` module)."""
    if "rewards" not in nwbfile.processing:
        return pd.DataFrame({"volume": np.zeros(0), "timestamps": np.zeros(0),
                             "auto_rewarded": np.zeros(0, dtype=bool)})
    volume = _series(nwbfile, "rewards", "volume", path)
    auto = _series(nwbfile, "rewards", "autorewarded", path)
    return pd.DataFrame({"volume": read_dataset(volume.data),
                         "timestamps": read_dataset(volume.timestamps),
                         "auto_rewarded": read_dataset(auto.data).astype(bool)})


def running(nwbfile: Any, path: Path, name: str) -> pd.DataFrame:
    """Running speed (``speed``) or unfiltered speed (``speed_unfiltered``)."""
    series = _series(nwbfile, "running", name, path)
    return pd.DataFrame({"timestamps": read_dataset(series.timestamps),
                         "speed": read_dataset(series.data)})


def stimulus_timestamps(nwbfile: Any, path: Path) -> np.ndarray:
    """Stimulus frame times."""
    series = _series(nwbfile, "stimulus", "timestamps", path)
    return read_dataset(series.timestamps)


# --- stimulus templates, task parameters, metadata ----------------------------------------


def stimulus_templates(nwbfile: Any) -> pd.DataFrame | None:
    """Images of the stimulus template: index ``image_name``, cols ``unwarped``, ``warped``.

    None when the file has no StimulusTemplate (as the reference reader).
    """
    template = next((t for t in nwbfile.stimulus_template.values()
                     if getattr(t, "unwarped", None) is not None), None)
    if template is None:
        return None
    image_names = [str(n) for n in read_dataset(template.control_description)]
    frame = pd.DataFrame({"unwarped": list(read_dataset(template.unwarped)),
                          "warped": list(read_dataset(template.data))},
                         index=pd.Index(image_names, name="image_name"))
    return frame


TASK_PARAMETER_LISTS = ("blank_duration_sec", "response_window_sec")
"""Stored as text arrays by the extension; numbers (float) in the API."""
TASK_PARAMETER_FLOATS = ("auto_reward_volume", "omitted_flash_fraction", "reward_volume",
                         "stimulus_duration_sec")
TASK_PARAMETER_INTS = ("n_stimulus_frames",)


def _task_value(key: str, value: Any) -> Any:
    if key in TASK_PARAMETER_LISTS:
        return [float(v) for v in np.atleast_1d(read_dataset(value) if hasattr(value, "shape") else value)]
    if key in TASK_PARAMETER_FLOATS:
        return float(value)
    if key in TASK_PARAMETER_INTS:
        return int(value)
    if isinstance(value, np.generic):
        value = value.item()
    return _none_text(value)


def task_parameters(nwbfile: Any, path: Path) -> dict[str, Any]:
    """Task parameters (sorted by name); text ``"None"`` reads as None."""
    real = nwbfile.lab_meta_data.get(layout.TASK_PARAMETERS)
    if real is None:
        raise NwbLayoutError(f"{path.name} has no task parameters "
                             f"(lab_meta_data[{layout.TASK_PARAMETERS!r}])")
    params = {k: v for k, v in real.fields.items() if k != "name"}
    if "task_type" in params:
        params["task"] = params.pop("task_type")
    params = {k: _task_value(k, v) for k, v in params.items()}
    params["image_set"] = image_set(params.get("session_type"))
    return dict(sorted(params.items()))


def image_set(session_type: str | None) -> str | None:
    """The stimulus set of a session type, as the reference derives it.

    ``<stage>_<n>_images_<letter>_...`` -> ``images_<letter>``,
    ``<stage>_<n>_gratings_...`` -> ``gratings``; None for anything else
    (where the reference raises).
    """
    parts = (session_type or "").split("_")
    if len(parts) > 3 and parts[2] == "images":
        return f"images_{parts[3]}"
    if len(parts) > 2 and parts[2] == "gratings":
        return "gratings"
    return None


def _rig_device_name(nwbfile: Any) -> str | None:
    """The one device that is not a probe (the writer names it after the rig)."""
    probes = {id(g.device) for g in nwbfile.electrode_groups.values() if g.device is not None}
    rigs = [name for name, device in nwbfile.devices.items()
            if id(device) not in probes and not hasattr(device, "probe_id")]
    return rigs[0] if len(rigs) == 1 else None


def _is_ecephys_file(nwbfile: Any) -> bool:
    return nwbfile.units is not None or len(nwbfile.electrode_groups) > 0


def _behavior_metadata(nwbfile: Any, path: Path) -> dict[str, Any]:
    """BehaviorMetadata fields, or what the file's general fields say when it has none."""
    real = nwbfile.lab_meta_data.get(layout.METADATA)
    if real is not None:
        fields = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in real.fields.items()}
        return {k: _none_text(v) for k, v in fields.items()}
    logger.warning("%s has no session metadata (lab_meta_data[%r]); taking what the general "
                   "fields say (equipment, session type and the subject; no frame rate or uuid)",
                   path.name, layout.METADATA)
    identifier = str(nwbfile.identifier)
    behavior_id = int(identifier) if identifier.isdigit() and not _is_ecephys_file(nwbfile) else None
    return {
        "behavior_session_id": behavior_id,
        "behavior_session_uuid": None,
        "stimulus_frame_rate": None,
        "session_type": nwbfile.session_description or None,
        "equipment_name": _rig_device_name(nwbfile),
        "project_code": PROJECT_CODE_NOT_AVAILABLE,
    }


def _driver_line(subject: Any) -> list[str] | None:
    lines = getattr(subject, "driver_line", None)
    if lines is None:
        return None
    return sorted(str(d) for d in np.atleast_1d(lines))


def cre_line(genotype: str | None) -> str | None:
    """The Cre line of a full genotype, as the reference reader parses it.

    The first ``;``-separated part without ``/wt``
    (``Sst-IRES-Cre/wt;Ai32(...)/wt`` -> ``Sst-IRES-Cre``); None when the
    genotype has no ``;`` (``wt/wt``) or is missing.
    """
    if not genotype or ";" not in genotype:
        return None
    return genotype.split(";")[0].replace("/wt", "")


def _age_in_days(age: str | None) -> int | None:
    match = re.match(r"P\D*(\d+)", age or "")
    return int(match.group(1)) if match else None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def metadata(nwbfile: Any, path: Path) -> dict[str, Any]:
    """Session metadata with the reference reader's keys (behavior part only)."""
    meta = _behavior_metadata(nwbfile, path)
    subject = nwbfile.subject
    genotype = getattr(subject, "genotype", None)
    rate = meta.get("stimulus_frame_rate")
    behavior_id = meta.get("behavior_session_id")
    return {
        "equipment_name": meta.get("equipment_name"),
        "sex": getattr(subject, "sex", None),
        "age_in_days": _age_in_days(getattr(subject, "age", None)),
        "stimulus_frame_rate": float(rate) if rate is not None else None,
        "session_type": meta.get("session_type"),
        "date_of_acquisition": _utc(nwbfile.session_start_time),
        "reporter_line": _none_text(getattr(subject, "reporter_line", None)),
        "cre_line": cre_line(genotype),
        "behavior_session_uuid": _uuid(meta.get("behavior_session_uuid")),
        "driver_line": _driver_line(subject),
        "mouse_id": getattr(subject, "subject_id", None),
        "project_code": meta.get("project_code") or PROJECT_CODE_NOT_AVAILABLE,
        "full_genotype": genotype,
        "behavior_session_id": int(behavior_id) if behavior_id is not None else None,
    }


# --- eye tracking ---------------------------------------------------------------------------


def _ellipse(series: Any) -> dict[str, np.ndarray]:
    """Fields of one EllipseSeries."""
    centre = read_dataset(series.data)
    return {"center_x": centre[:, 0], "center_y": centre[:, 1],
            "area_raw": read_dataset(series.area_raw), "width": read_dataset(series.width),
            "height": read_dataset(series.height), "angle": read_dataset(series.angle)}


def _member(container: Any, name: str, path: Path) -> Any:
    """A named series of the eye-tracking container (an attribute of EllipseEyeTracking)."""
    member = getattr(container, name, None)
    if member is None:
        spatial = getattr(container, "spatial_series", None) or {}
        member = spatial.get(name)
    if member is None or not hasattr(member, "area_raw"):
        raise NwbLayoutError(f"{path.name}: acquisition[{layout.EYE_TRACKING!r}] has no "
                             f"EllipseSeries {name!r}")
    return member


def likely_blinks(eye_area: np.ndarray, pupil_area: np.ndarray,
                  z_threshold: float = BLINK_Z_THRESHOLD,
                  dilation_frames: int = BLINK_DILATION_FRAMES) -> np.ndarray:
    """Frames that are probably blinks.

    A frame is a blink if its eye or pupil area is missing or lies more than
    ``z_threshold`` standard deviations from that area's mean; the flags are
    then widened by ``dilation_frames`` frames on each side.
    """
    flags = np.isnan(eye_area) | np.isnan(pupil_area)
    for area in (eye_area, pupil_area):
        mean, std = np.nanmean(area), np.nanstd(area)
        if np.isfinite(std) and std > 0:
            with np.errstate(invalid="ignore"):
                flags |= np.abs(area - mean) / std > z_threshold
    if dilation_frames > 0 and flags.any():
        kernel = np.ones(2 * dilation_frames + 1)
        flags = np.convolve(flags.astype(float), kernel, mode="same") > 0
    return flags


def eye_tracking(nwbfile: Any, path: Path) -> pd.DataFrame:
    """Eye, pupil and corneal-reflection ellipse fits per camera frame (index ``frame``).

    Areas come from the raw areas; blinks are recomputed with
    :func:`likely_blinks`, and on blink frames every area and fit is NaN
    (the ``*_raw`` columns keep their values). A file without eye tracking
    gives an empty frame with the same columns.
    """
    container = nwbfile.acquisition.get(layout.EYE_TRACKING)
    if container is None:
        logger.warning("%s has no eye tracking data; returning an empty table", path.name)
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "likely_blink" else float)
                             for c in EYE_COLUMNS}, index=pd.RangeIndex(0, name="frame"))
    series = {name: _member(container, name, path) for name in layout.EYE_SERIES}
    fits = {prefix: _ellipse(series[name]) for name, prefix in layout.EYE_SERIES.items()}
    timestamps = read_dataset(series["eye_tracking"].timestamps)
    data: dict[str, np.ndarray] = {"timestamps": timestamps}
    for prefix, fit in fits.items():
        data[f"{prefix}_area_raw"] = fit["area_raw"]
        data[f"{prefix}_area"] = fit["area_raw"].copy()
        data[f"{prefix}_center_x"] = fit["center_x"].copy()
        data[f"{prefix}_center_y"] = fit["center_y"].copy()
        data[f"{prefix}_width"] = fit["width"].copy()
        data[f"{prefix}_height"] = fit["height"].copy()
        data[f"{prefix}_phi"] = fit["angle"].copy()
    blinks = likely_blinks(data["eye_area"], data["pupil_area"])
    data["likely_blink"] = blinks
    for column in EYE_COLUMNS:
        if column not in ("timestamps", "likely_blink") and not column.endswith("_raw"):
            data[column][blinks] = np.nan
    frame = pd.DataFrame({c: data[c] for c in EYE_COLUMNS})
    frame.index.name = "frame"
    return frame


def rig_geometry(nwbfile: Any) -> dict[str, Any]:
    """Eye-tracking rig geometry, or ``{}`` when the file has none."""
    item = processing_child(nwbfile, layout.RIG_MODULE, layout.RIG_MODULE)
    if item is None:
        return {}
    values = {k: np.asarray(read_dataset(getattr(item, k)), dtype=float)
              for k in layout.RIG_GEOMETRY_FIELDS}
    return {
        "camera_position_mm": values["camera_position"],
        "camera_rotation_deg": values["camera_rotation"],
        "equipment": getattr(item, "equipment", None),
        "led_position": values["led_position"],
        "monitor_position_mm": values["monitor_position"],
        "monitor_rotation_deg": values["monitor_rotation"],
    }
