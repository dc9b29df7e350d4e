"""Readers for the electrophysiology part of a VBN session NWB and its probe LFP files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import NwbLayoutError
from . import layout
from ._file import (
    get_child,
    is_ragged,
    processing_child,
    ragged_parts,
    read_dataset,
    scalar_columns,
    split_ragged,
    table_ids,
)
from ._h5table import NotPlainTable, child, neurodata_type, table_columns

logger = logging.getLogger("releasecache")

UNIT_RAGGED = ("spike_times", "spike_amplitudes", "waveform_mean", "waveforms", "waveform_sd",
               "obs_intervals", "electrodes")
CHANNEL_RENAMES = {
    "x": "anterior_posterior_ccf_coordinate",
    "y": "dorsal_ventral_ccf_coordinate",
    "z": "left_right_ccf_coordinate",
    "location": "structure_acronym",
    "imp": "impedance",
}
CHANNEL_DROPPED = ("impedance", "group", "group_name", "rel_x", "rel_y", "rel_z", "reference")
OPTOTAGGING_COLUMNS = ("start_time", "condition", "level", "stop_time", "stimulus_name", "duration")


# --- units ------------------------------------------------------------------------------


def units_table(nwbfile: Any, path: Path) -> pd.DataFrame:
    """Scalar unit columns (index ``id``); ragged columns are not read."""
    units = nwbfile.units
    if units is None:
        raise NwbLayoutError(f"{path.name} has no units table")
    return scalar_columns(units, skip=UNIT_RAGGED)


def units_table_h5(h5: Any) -> pd.DataFrame:
    """:func:`units_table`, read straight from the HDF5 group."""
    group = child(h5, layout.UNITS)
    if group is None or neurodata_type(group) != layout.UNITS_TYPE:
        raise NotPlainTable("no Units table at /units")
    return table_columns(group, skip=UNIT_RAGGED)


def ragged_unit_column(nwbfile: Any, name: str, path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unit ids and, per unit, the rows of a ragged units column."""
    units = nwbfile.units
    if units is None or name not in units.colnames:
        raise NwbLayoutError(f"{path.name} has no units column {name!r}")
    column = units[name]
    if not is_ragged(column):
        raise NwbLayoutError(f"{path.name}: units column {name!r} is not ragged")
    values, ends = ragged_parts(column)
    return table_ids(units), split_ragged(values, ends)


def mean_waveforms(nwbfile: Any, path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unit ids and each unit's mean waveform as (channels, samples).

    Reads both layouts pynwb accepts for ``waveform_mean``: ragged (the
    release's files: one row of samples per channel) and one fixed-shape
    dataset of (units, samples) or (units, samples, channels), whose
    per-unit (samples, channels) block is transposed.
    """
    units = nwbfile.units
    if units is None or "waveform_mean" not in units.colnames:
        raise NwbLayoutError(f"{path.name} has no units column 'waveform_mean'")
    column = units["waveform_mean"]
    if is_ragged(column):
        return ragged_unit_column(nwbfile, "waveform_mean", path)
    values = read_dataset(column.data)
    ids = table_ids(units)
    if values.shape[0] != len(ids) or values.ndim not in (2, 3):
        raise NwbLayoutError(f"{path.name}: units column 'waveform_mean' has shape {values.shape}; "
                             f"expected ({len(ids)}, samples[, channels])")
    return ids, [v.T if v.ndim == 2 else v for v in values]


# --- channels and probes ------------------------------------------------------------------


def channels_table(nwbfile: Any, path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The electrodes table under the API's column names (index ``id``).

    Parameters
    ----------
    nwbfile
        The open file.
    path
        Its path (for messages).
    columns
        Stored column names to read (default: all).
    """
    electrodes = nwbfile.electrodes
    if electrodes is None:
        raise NwbLayoutError(f"{path.name} has no electrodes table")
    names = electrodes.colnames
    if "local_index" in names and "probe_channel_number" in names:
        raise NwbLayoutError(f"{path.name}: electrodes have both 'local_index' and "
                             "'probe_channel_number'; cannot tell which is the channel number")
    frame = scalar_columns(electrodes, columns, skip=("group",))
    frame = frame.rename(columns={**CHANNEL_RENAMES, "local_index": "probe_channel_number"})
    if "structure_acronym" in frame.columns:
        frame["structure_acronym"] = pd.array(
            [None if (v is None or str(v) in ("None", "")) else str(v)
             for v in frame["structure_acronym"]], dtype=object)
    return frame


@dataclass(frozen=True)
class ProbeInfo:
    """What the session file says about one probe.

    Attributes
    ----------
    id
        ``ecephys_probe_id``.
    name
        ``probeA`` ...
    location
        Electrode group location.
    sampling_rate
        AP-band sampling rate (Hz).
    """

    id: int
    name: str
    location: str
    sampling_rate: float


def _attribute(container: Any, name: str) -> Any:
    """An extension attribute (EcephysProbe / EcephysElectrodeGroup), None on a core type."""
    value = getattr(container, name, None)
    return value.item() if isinstance(value, np.generic) else value


def _probe_ids_from_electrodes(nwbfile: Any) -> dict[str, int]:
    """``{group name: probe id}`` from the electrodes table's ``probe_id`` column."""
    electrodes = nwbfile.electrodes
    if electrodes is None or not {"probe_id", "group_name"} <= set(electrodes.colnames):
        return {}
    names = read_dataset(electrodes["group_name"].data)
    ids = read_dataset(electrodes["probe_id"].data)
    return {str(n): int(i) for n, i in zip(names, ids)}


def probe_infos(nwbfile: Any, path: Path) -> list[ProbeInfo]:
    """Probes of the session, from electrode groups and their devices, in group order."""
    fallback: dict[str, int] | None = None
    out = []
    for name, group in nwbfile.electrode_groups.items():
        probe_id = _attribute(group, "probe_id")
        if probe_id is None:
            probe_id = _attribute(group.device, "probe_id") if group.device is not None else None
        if probe_id is None:
            fallback = _probe_ids_from_electrodes(nwbfile) if fallback is None else fallback
            probe_id = fallback.get(name)
        if probe_id is None:
            raise NwbLayoutError(f"{path.name}: electrode group {name!r} has no probe id")
        rate = _attribute(group.device, "sampling_rate") if group.device is not None else None
        out.append(ProbeInfo(int(probe_id), str(name), str(group.location),
                             float(rate) if rate is not None else float("nan")))
    if not out:
        raise NwbLayoutError(f"{path.name} has no electrode groups, so no probes: it is not an ecephys session file")
    return out


# --- optotagging ----------------------------------------------------------------------------


def optotagging_table(nwbfile: Any, path: Path) -> pd.DataFrame:
    """Optogenetic stimulation trials (index ``id``)."""
    table = processing_child(nwbfile, layout.OPTOTAGGING_MODULE, layout.OPTOTAGGING_TABLE)
    if table is None:
        logger.warning("%s has no optotagging table; returning an empty table", path.name)
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("condition", "stimulus_name")
                                          else float) for c in OPTOTAGGING_COLUMNS},
                            index=pd.Index([], name="id", dtype=np.int64))
    frame = scalar_columns(table, skip=("tags", "timeseries"))
    frame = frame.rename(columns={"name": "stimulus_name"})
    leading = [c for c in OPTOTAGGING_COLUMNS if c in frame.columns]
    return frame.loc[:, leading + [c for c in frame.columns if c not in leading]]


# --- LFP and CSD files -----------------------------------------------------------------------


@dataclass(frozen=True)
class LfpData:
    """LFP of one probe as read from its file."""

    data: np.ndarray
    timestamps: np.ndarray
    channel_ids: np.ndarray
    sampling_rate: float


def read_lfp(nwbfile: Any, probe_id: int, path: Path) -> LfpData:
    """The LFP ElectricalSeries of a probe file, fully read."""
    container = get_child(nwbfile.acquisition, layout.lfp_container_name(probe_id),
                          f"LFP of probe {probe_id}", path)
    series_map = getattr(container, "electrical_series", None)
    if series_map is not None:
        series = series_map.get(layout.lfp_series_name(probe_id))
        if series is None and len(series_map) == 1:
            series = next(iter(series_map.values()))
    else:
        series = container
    if series is None:
        raise NwbLayoutError(f"{path.name} has no series {layout.lfp_series_name(probe_id)!r}")
    rows = np.asarray(series.electrodes.data[:], dtype=np.int64)
    all_ids = table_ids(series.electrodes.table)
    timestamps = read_dataset(series.timestamps)
    rate = None
    for group in nwbfile.electrode_groups.values():
        if _attribute(group, "probe_id") == probe_id or len(nwbfile.electrode_groups) == 1:
            rate = _attribute(group, "lfp_sampling_rate")
    if rate is None and len(timestamps) > 1:
        rate = 1.0 / float(np.median(np.diff(timestamps)))
    return LfpData(read_dataset(series.data), timestamps, all_ids[rows],
                   float(rate) if rate is not None else float("nan"))


@dataclass(frozen=True)
class CsdData:
    """Current source density of one probe."""

    data: np.ndarray
    timestamps: np.ndarray
    x_positions: np.ndarray
    y_positions: np.ndarray


def read_csd(nwbfile: Any, path: Path) -> CsdData:
    """The CSD of a probe file: ``data`` is (time, virtual channel)."""
    item = processing_child(nwbfile, layout.CSD_MODULE, layout.CSD_CONTAINER)
    if item is None or not hasattr(item, "time_series"):
        raise NwbLayoutError(f"{path.name} has no EcephysCSD at processing[{layout.CSD_MODULE!r}]"
                             f"[{layout.CSD_CONTAINER!r}]")
    series = item.time_series
    x = read_dataset(item.virtual_electrode_x_positions)
    y = read_dataset(item.virtual_electrode_y_positions)
    return CsdData(read_dataset(series.data), read_dataset(series.timestamps),
                   x.astype(np.int64), y.astype(np.int64))
