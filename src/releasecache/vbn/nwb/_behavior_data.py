"""Readers for the behavior part of a VBN NWB file (shared by both session kinds)."""

from __future__ import annotations

import json
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
from ._file import (
    get_child,
    one_row,
    processing_child,
    read_dataset,
    scalar_columns,
)

logger = logging.getLogger("releasecache")

INT_NULL = -99
"""Stands for a missing value in integer-coerced presentation and trial columns."""
PRESENTATION_INT_COLUMNS = ("flashes_since_change", "stimulus_index", "trials_id")
PRESENTATION_LEADING = (
    "stimulus_block", "image_name", "duration", "start_time", "end_time", "start_frame",
    "end_frame", "is_change", "is_image_novel", "omitted", "flashes_since_change", "trials_id",
)
PRESENTATION_DROPPED = ("tags", "timeseries", "image_set", "index")
EYE_COLUMNS = (
    "timestamps", "cr_area", "eye_area", "pupil_area", "likely_blink", "pupil_area_raw",
    "cr_area_raw", "eye_area_raw", "cr_center_x", "cr_center_y", "cr_width", "cr_height", "cr_phi",
    "eye_center_x", "eye_center_y", "eye_width", "eye_height", "eye_phi", "pupil_center_x",
    "pupil_center_y", "pupil_width", "pupil_height", "pupil_phi",
)
BLINK_Z_THRESHOLD = 3.0
BLINK_DILATION_FRAMES = 2


# --- presentations -------------------------------------------------------------------


def _booleanish(values: pd.Series) -> bool:
    present = values.dropna()
    return bool(len(present)) and bool(present.isin([0, 1]).all())


def stimulus_presentations(nwbfile: Any, trials: pd.DataFrame | None) -> pd.DataFrame:
    """All ``*_presentations`` interval tables as one frame sorted by start time.

    Follows the reference reader: ``stop_time`` becomes ``end_time``;
    ``tags``, ``timeseries``, ``image_set`` and ``index`` are dropped; integer
    columns with gaps get ``-99``; float columns holding only 0/1 (and NaN)
    become pandas ``boolean`` unless their name ends in ``_index``; ``"N/A"``
    strings read as ``""``. Missing ``active``, ``trials_id`` and
    ``is_sham_change`` are derived from the trials.
    """
    frames = []
    for name, table in nwbfile.intervals.items():
        if not name.endswith(layout.PRESENTATIONS_SUFFIX):
            continue
        frame = scalar_columns(table, skip=PRESENTATION_DROPPED).reset_index(drop=True)
        for column in frame.columns:
            if frame[column].dtype == bool:
                frame[column] = frame[column].astype(float)
        frames.append(frame)
    if not frames:
        raise NwbLayoutError("the file has no *_presentations interval tables")
    df = pd.concat(frames, ignore_index=True, sort=False)
    df = df.sort_values("start_time", kind="stable", ignore_index=True)
    df = df.rename(columns={"stop_time": "end_time"})
    df = _derive_missing(df, trials)
    for column in PRESENTATION_INT_COLUMNS:
        if column in df.columns:
            df[column] = df[column].fillna(INT_NULL).astype(np.int64)
    for column in df.columns:
        series = df[column]
        if pd.api.types.is_float_dtype(series.dtype) and not column.endswith("_index"):
            if _booleanish(series):
                df[column] = series.astype("boolean")
        elif pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
            df[column] = series.replace("N/A", "")
    leading = [c for c in PRESENTATION_LEADING if c in df.columns]
    rest = sorted(c for c in df.columns if c not in leading)
    df = df.loc[:, leading + rest]
    df.index = pd.RangeIndex(len(df), name="stimulus_presentations_id")
    return df


def _derive_missing(df: pd.DataFrame, trials: pd.DataFrame | None) -> pd.DataFrame:
    if trials is None or not len(trials):
        return df
    starts = trials["start_time"].to_numpy(float)
    stops = trials["stop_time"].to_numpy(float)
    if "active" not in df.columns:
        df["active"] = ((df["start_time"] >= starts[0]) & (df["start_time"] < stops[-1])).astype(float)
    if "trials_id" not in df.columns:
        position = np.searchsorted(starts, df["start_time"].to_numpy(float), side="right") - 1
        inside = (position >= 0) & (df["start_time"].to_numpy(float) < stops[np.clip(position, 0, None)])
        inside &= df["active"].fillna(0).astype(bool).to_numpy()
        df["trials_id"] = np.where(inside, trials.index.to_numpy()[np.clip(position, 0, None)], INT_NULL)
    if "is_sham_change" not in df.columns:
        df["is_sham_change"] = 0.0
    return df


# --- trials, licks, rewards, running -------------------------------------------------------


def trials(nwbfile: Any) -> pd.DataFrame:
    """The trials table, index ``trials_id`` (``lick_times`` one array per trial)."""
    table = nwbfile.trials
    if table is None:
        raise NwbLayoutError("the file has no trials table")
    df = scalar_columns(table, skip=("tags", "timeseries"), ragged=("lick_times",))
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
    """Lick times and frames."""
    series = _series(nwbfile, "licking", "licks", path)
    return pd.DataFrame({"timestamps": read_dataset(series.timestamps),
                         "frame": read_dataset(series.data).astype(np.int64)})


def rewards(nwbfile: Any, path: Path) -> pd.DataFrame:
    """Reward volumes, times and whether each was automatic."""
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


def stimulus_templates(nwbfile: Any, path: Path) -> pd.DataFrame:
    """Images of the stimulus template: index ``image_name``, cols ``unwarped``, ``warped``."""
    templates = nwbfile.stimulus_template
    names = [n for n in templates if not n.endswith(layout.UNWARPED_SUFFIX)]
    if not names:
        raise NwbLayoutError(f"{path.name} has no stimulus template")
    template = templates[names[0]]
    image_names = [str(n) for n in read_dataset(template.control_description)]
    warped = read_dataset(template.data)
    if getattr(template, "unwarped", None) is not None:
        unwarped = read_dataset(template.unwarped)
    else:
        unwarped = read_dataset(get_child(templates, names[0] + layout.UNWARPED_SUFFIX,
                                          "unwarped stimulus template", path).data)
    frame = pd.DataFrame({"unwarped": list(unwarped), "warped": list(warped)},
                         index=pd.Index(image_names, name="image_name"))
    return frame


def task_parameters(nwbfile: Any, path: Path) -> dict[str, Any]:
    """Task parameters (sorted by name)."""
    real = nwbfile.lab_meta_data.get(layout.TASK_PARAMETERS)
    if real is not None:
        params = {k: v for k, v in real.fields.items() if k != "name"}
        if "task_type" in params:
            params["task"] = params.pop("task_type")
        return {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in sorted(params.items())}
    table = processing_child(nwbfile, layout.METADATA_MODULE, layout.TASK_PARAMETERS)
    if table is None:
        raise NwbLayoutError(f"{path.name} has no task parameters")
    keys = read_dataset(table["key"].data)
    values = read_dataset(table["value"].data)
    return {str(k): json.loads(v) for k, v in sorted(zip(keys, values))}


def _behavior_metadata(nwbfile: Any, path: Path) -> dict[str, Any]:
    real = nwbfile.lab_meta_data.get(layout.METADATA_TABLE)
    if real is not None:
        return dict(real.fields)
    table = processing_child(nwbfile, layout.METADATA_MODULE, layout.METADATA_TABLE)
    if table is None:
        raise NwbLayoutError(f"{path.name} has no session metadata")
    return one_row(table)


def behavior_session_id(nwbfile: Any, path: Path) -> int:
    """The behavior session id from the session metadata."""
    return int(_behavior_metadata(nwbfile, path)["behavior_session_id"])


def _subject_lines(nwbfile: Any) -> tuple[list[str], str | None]:
    subject = nwbfile.subject
    if subject is not None and hasattr(subject, "driver_line"):
        drivers = [str(d) for d in np.atleast_1d(subject.driver_line)]
        return drivers, getattr(subject, "reporter_line", None) or None
    table = processing_child(nwbfile, layout.METADATA_MODULE, layout.SUBJECT_TABLE)
    if table is None:
        return [], None
    row = one_row(table)
    drivers = [d for d in str(row.get("driver_line", "")).split(";") if d]
    return drivers, str(row.get("reporter_line", "")) or None


def cre_line(genotype: str | None) -> str | None:
    """The Cre driver of a full genotype (``Sst-IRES-Cre/wt;Ai32(...)/wt`` -> ``Sst-IRES-Cre``)."""
    for part in (genotype or "").split(";"):
        if "Cre" in part:
            return part.split("/")[0]
    return None


def _age_in_days(age: str | None) -> int | None:
    match = re.fullmatch(r"P(\d+)D", age or "")
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
    drivers, reporter = _subject_lines(nwbfile)
    return {
        "equipment_name": meta.get("equipment_name"),
        "sex": getattr(subject, "sex", None),
        "age_in_days": _age_in_days(getattr(subject, "age", None)),
        "stimulus_frame_rate": float(meta["stimulus_frame_rate"]),
        "session_type": meta.get("session_type"),
        "date_of_acquisition": _utc(nwbfile.session_start_time),
        "reporter_line": reporter,
        "cre_line": cre_line(genotype),
        "behavior_session_uuid": _uuid(meta.get("behavior_session_uuid")),
        "driver_line": drivers,
        "mouse_id": getattr(subject, "subject_id", None),
        "project_code": meta.get("project_code"),
        "full_genotype": genotype,
        "behavior_session_id": int(meta["behavior_session_id"]),
    }


# --- eye tracking ---------------------------------------------------------------------------


def _ellipse(series: Any) -> dict[str, np.ndarray]:
    """Fields of one ellipse series, from an EllipseSeries or the (n, 7) stand-in."""
    if hasattr(series, "area_raw"):
        centre = read_dataset(series.data)
        return {"center_x": centre[:, 0], "center_y": centre[:, 1],
                "area_raw": read_dataset(series.area_raw), "width": read_dataset(series.width),
                "height": read_dataset(series.height), "angle": read_dataset(series.angle)}
    values = read_dataset(series.data)
    return {name: values[:, k] for k, name in enumerate(layout.EYE_FIELDS)}


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
    members = container.time_series if hasattr(container, "time_series") else container
    fits = {prefix: _ellipse(members[name]) for name, prefix in layout.EYE_SERIES.items()}
    timestamps = read_dataset(members["eye_tracking"].timestamps)
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
    if hasattr(item, "colnames"):
        row = one_row(item)
        values = {k: np.asarray(row[k], dtype=float) for k in layout.RIG_GEOMETRY_FIELDS}
        equipment = row.get("equipment")
    else:
        values = {k: np.asarray(getattr(item, k), dtype=float) for k in layout.RIG_GEOMETRY_FIELDS}
        equipment = getattr(item, "equipment", None)
    return {
        "camera_position_mm": values["camera_position"],
        "camera_rotation_deg": values["camera_rotation"],
        "equipment": equipment,
        "led_position": values["led_position"],
        "monitor_position_mm": values["monitor_position"],
        "monitor_rotation_deg": values["monitor_rotation"],
    }

