"""``EcephysSession``: a VBN ecephys session NWB plus its lazily fetched probe LFP files."""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ...errors import NwbLayoutError, UnknownProbeError
from . import _ecephys_data as ed
from ._file import NwbHandle, Source
from .behavior import BehaviorSession

logger = logging.getLogger("releasecache")

PROBE_COLUMNS = ("name", "location", "sampling_rate", "lfp_sampling_rate", "has_lfp_data")


@dataclass(frozen=True)
class ProbeMeta:
    """What the metadata tables say about a probe's LFP/CSD file.

    Attributes
    ----------
    lfp_csd_filepath
        Zero-argument callable returning the local path of the probe's LFP
        file, or a seekable binary file object (called, and so downloaded or
        opened, only when the LFP or CSD is asked for).
    lfp_sampling_rate
        ``lfp_sampling_rate`` from probes.csv (Hz).
    """

    lfp_csd_filepath: Callable[[], Source]
    lfp_sampling_rate: float


@dataclass(frozen=True)
class Probe:
    """One probe of a session, as ``session.probes`` describes it.

    Attributes
    ----------
    id, name, location, sampling_rate
        From the session file.
    lfp_sampling_rate
        From probes.csv; the LFP file's (subsampled) rate once the LFP was read;
        None when the probe has no LFP file.
    has_lfp_data
        Whether an LFP file is known for the probe.
    """

    id: int
    name: str
    location: str
    sampling_rate: float
    lfp_sampling_rate: float | None
    has_lfp_data: bool

    def to_dict(self) -> dict[str, Any]:
        """The probe's row of ``session.probes`` (plus ``id``)."""
        return {"id": self.id, **{c: getattr(self, c) for c in PROBE_COLUMNS}}


class Probes:
    """The probes of a session (``session.get_probes_obj()``).

    Parameters
    ----------
    probes
        The probes, in file order.
    """

    def __init__(self, probes: list[Probe]) -> None:
        self.probes = list(probes)

    def __iter__(self) -> Iterator[Probe]:
        return iter(self.probes)

    def __len__(self) -> int:
        return len(self.probes)

    def __getitem__(self, index: int) -> Probe:
        return self.probes[index]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per probe, index ``id``."""
        frame = pd.DataFrame([p.to_dict() for p in self.probes],
                             columns=["id", *PROBE_COLUMNS]).set_index("id")
        frame["lfp_sampling_rate"] = frame["lfp_sampling_rate"].astype(object)
        frame["has_lfp_data"] = frame["has_lfp_data"].astype(bool)
        return frame


class EcephysSession(BehaviorSession):
    """An ecephys session read from a local NWB file.

    Adds units, channels, probes, optotagging, LFP and CSD to the behavior
    data of :class:`BehaviorSession`. Probe LFP files are fetched through
    ``probe_meta`` only when :meth:`get_lfp` or
    :meth:`get_current_source_density` is called, and read then closed.

    Parameters
    ----------
    path
        Local path of ``ecephys_session_<id>.nwb``, or a seekable binary file
        object.
    probe_meta
        ``{probe name: ProbeMeta}`` for the probes that have an LFP file.

    Examples
    --------
    >>> with EcephysSession(path, probe_meta=meta) as session:  # doctest: +SKIP
    ...     units = session.get_units(filter_by_validity=True)
    ...     lfp = session.get_lfp(units["probe_id"].iloc[0])
    """

    DATA_ATTRIBUTES: tuple[str, ...] = (
        "behavior_data_class", "behavior_session_id", "eye_tracking", "eye_tracking_rig_geometry",
        "get_channels", "get_current_source_density", "get_lfp", "get_performance_metrics",
        "get_probes_obj", "get_reward_rate", "get_rolling_performance_df", "get_units", "licks",
        "mean_waveforms", "metadata", "optotagging_table", "probes", "raw_running_speed",
        "rewards", "running_speed", "spike_amplitudes", "spike_times", "stimulus_presentations",
        "stimulus_templates", "stimulus_timestamps", "task_parameters", "trials",
    )

    RECOMPUTE_IS_CHANGE = False

    def __init__(self, path: Source, *, probe_meta: Mapping[str, ProbeMeta] | None = None) -> None:
        super().__init__(path)
        self._probe_meta: dict[str, ProbeMeta] = dict(probe_meta or {})
        self._lfp_rates: dict[str, float] = {}

    @classmethod
    def behavior_data_class(cls) -> type[BehaviorSession]:
        """The class that reads the behavior part of the file."""
        return BehaviorSession

    # -- metadata --------------------------------------------------------------------

    @property
    def ecephys_session_id(self) -> int:
        """The ecephys session id (the NWB identifier)."""
        identifier = str(self._nwb.identifier)
        if not identifier.isdigit():
            raise NwbLayoutError(f"{self.nwb_path.name}: identifier {identifier[:80]!r} is not an ecephys session id")
        return int(identifier)

    @property
    def metadata(self) -> dict[str, Any]:
        """Behavior metadata plus ``ecephys_session_id``."""
        meta = super().metadata
        meta["ecephys_session_id"] = self.ecephys_session_id
        return meta

    # -- probes ----------------------------------------------------------------------

    @cached_property
    def _probe_infos(self) -> list[ed.ProbeInfo]:
        return ed.probe_infos(self._nwb, self.nwb_path)

    def get_probes_obj(self) -> Probes:
        """The probes as objects (see :class:`Probe`)."""
        probes = []
        for info in self._probe_infos:
            meta = self._probe_meta.get(info.name)
            rate: float | None = None
            if meta is not None:
                rate = self._lfp_rates.get(info.name, float(meta.lfp_sampling_rate))
            probes.append(Probe(info.id, info.name, info.location, info.sampling_rate, rate,
                                meta is not None))
        return Probes(probes)

    @property
    def probes(self) -> pd.DataFrame:
        """One row per probe (index ``id``): name, location, sampling rates, ``has_lfp_data``."""
        return self.get_probes_obj().to_dataframe()

    def _probe(self, probe_id: int | str) -> ed.ProbeInfo:
        """The probe with this id (an int, a numpy integer, a string of digits) or this name (``"probeA"``)."""
        if isinstance(probe_id, str) and not probe_id.strip().isdigit():
            wanted = [info for info in self._probe_infos if info.name == probe_id.strip()]
        else:
            try:
                number = operator.index(int(probe_id)) if isinstance(probe_id, str) else operator.index(probe_id)
            except TypeError:
                raise UnknownProbeError(
                    f"probe id {probe_id!r} ({type(probe_id).__name__}): an integer probe id or a probe name "
                    "is expected"
                ) from None
            wanted = [info for info in self._probe_infos if info.id == number]
        if wanted:
            return wanted[0]
        known = ", ".join(f"{p.id} ({p.name})" for p in self._probe_infos)
        raise UnknownProbeError(
            f"probe {probe_id} is not a probe of session {self.ecephys_session_id}; "
            f"its probes are {known}"
        )

    # -- channels and units ----------------------------------------------------------

    def get_channels(self, filter_by_validity: bool = True) -> pd.DataFrame:
        """Channels (index ``id``), columns in alphabetical order.

        Parameters
        ----------
        filter_by_validity
            Drop channels whose ``valid_data`` is False, and the column itself.
        """
        frame = ed.channels_table(self._nwb, self.nwb_path)
        frame = frame.drop(columns=[c for c in ed.CHANNEL_DROPPED if c in frame.columns])
        if filter_by_validity and "valid_data" in frame.columns:
            frame = frame.loc[frame["valid_data"].astype(bool).to_numpy()].drop(columns="valid_data")
        return frame.loc[:, sorted(frame.columns)]

    @cached_property
    def _units(self) -> pd.DataFrame:
        return self._handle.read_direct(ed.units_table_h5, lambda nwb: ed.units_table(nwb, self.nwb_path))

    def get_units(self, filter_by_validity: bool = False, filter_out_of_brain_units: bool = False,
                  amplitude_cutoff_maximum: float | None = None,
                  presence_ratio_minimum: float | None = None,
                  isi_violations_maximum: float | None = None) -> pd.DataFrame:
        """Units with their quality metrics (index ``id``); all units by default.

        Parameters
        ----------
        filter_by_validity
            Keep units whose peak channel has valid data and whose ``quality``
            is ``"good"``; the ``quality`` column is then dropped.
        filter_out_of_brain_units
            Keep units whose peak channel has a structure acronym.
        amplitude_cutoff_maximum
            Keep ``amplitude_cutoff <= value`` (None: no limit).
        presence_ratio_minimum
            Keep ``presence_ratio >= value`` (None: no limit).
        isi_violations_maximum
            Keep ``isi_violations <= value`` (None: no limit).

        Returns
        -------
        pandas.DataFrame
            The kept units.
        """
        units = self._units.copy()
        keep = np.ones(len(units), dtype=bool)
        if filter_by_validity or filter_out_of_brain_units:
            wanted = ["valid_data"] if filter_by_validity else []
            wanted += ["location"] if filter_out_of_brain_units else []
            channels = ed.channels_table(self._nwb, self.nwb_path, wanted)
            peak = units["peak_channel_id"].to_numpy()
            if filter_by_validity:
                valid = channels["valid_data"].astype(bool)
                keep &= valid.reindex(peak, fill_value=False).to_numpy()
                if "quality" in units.columns:
                    keep &= (units["quality"] == "good").to_numpy()
            if filter_out_of_brain_units:
                keep &= channels["structure_acronym"].reindex(peak).notna().to_numpy()
        limits = (("amplitude_cutoff", amplitude_cutoff_maximum, np.less_equal),
                  ("presence_ratio", presence_ratio_minimum, np.greater_equal),
                  ("isi_violations", isi_violations_maximum, np.less_equal))
        for column, limit, compare in limits:
            if limit is not None:
                keep &= compare(units[column].to_numpy(float), limit)
        units = units.loc[keep]
        if filter_by_validity and "quality" in units.columns:
            units = units.drop(columns="quality")
        return units

    @cached_property
    def _spikes(self) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        ids, times = ed.ragged_unit_column(self._nwb, "spike_times", self.nwb_path)
        _, amplitudes = ed.ragged_unit_column(self._nwb, "spike_amplitudes", self.nwb_path)
        spike_times: dict[int, np.ndarray] = {}
        spike_amplitudes: dict[int, np.ndarray] = {}
        for unit_id, t, a in zip(ids, times, amplitudes):
            order = np.argsort(t, kind="stable") if np.any(np.diff(t) < 0) else slice(None)
            t, a = t[order], a[order]
            keep = t >= 0
            spike_times[int(unit_id)] = t[keep]
            spike_amplitudes[int(unit_id)] = a[keep]
        return spike_times, spike_amplitudes

    @property
    def spike_times(self) -> dict[int, np.ndarray]:
        """``{unit id: sorted spike times (s)}``; times before 0 are dropped."""
        return {k: v.copy() for k, v in self._spikes[0].items()}

    @property
    def spike_amplitudes(self) -> dict[int, np.ndarray]:
        """``{unit id: spike amplitudes (V)}``, aligned with :attr:`spike_times`."""
        return {k: v.copy() for k, v in self._spikes[1].items()}

    @property
    def mean_waveforms(self) -> dict[int, np.ndarray]:
        """``{unit id: (channels, samples) mean waveform}`` (ragged or fixed-shape in the file)."""
        ids, waveforms = ed.mean_waveforms(self._nwb, self.nwb_path)
        return {int(u): w for u, w in zip(ids, waveforms)}

    # -- optotagging -----------------------------------------------------------------

    @cached_property
    def _optotagging(self) -> pd.DataFrame:
        return ed.optotagging_table(self._nwb, self.nwb_path)

    @property
    def optotagging_table(self) -> pd.DataFrame:
        """Optogenetic stimulation trials (index ``id``)."""
        return self._optotagging.copy()

    # -- LFP and CSD -----------------------------------------------------------------

    def _probe_file(self, probe_id: int | str) -> tuple[ed.ProbeInfo, NwbHandle | None]:
        info = self._probe(probe_id)
        meta = self._probe_meta.get(info.name)
        if meta is None:
            logger.info("probe %s (%s) of session %s has no LFP file", probe_id, info.name,
                        self.ecephys_session_id)
            return info, None
        return info, NwbHandle(meta.lfp_csd_filepath())

    def get_lfp(self, probe_id: int | str) -> Any:
        """The probe's LFP as an ``xarray.DataArray`` named ``"LFP"``, dims ``(time, channel)``.

        The probe's LFP file is fetched now if needed, read, and closed.
        Returns None for a probe without an LFP file. ``probe_id`` is the
        probe's id (``ecephys_probe_id``) or its name (``"probeA"``).

        Raises
        ------
        UnknownProbeError
            ``probe_id`` is not a probe of this session.
        """
        import xarray as xr  # noqa: PLC0415 - only LFP users need xarray

        info, handle = self._probe_file(probe_id)
        if handle is None:
            return None
        try:
            lfp = ed.read_lfp(handle.nwbfile, info.id, handle.path)
        finally:
            handle.close()
        self._lfp_rates[info.name] = lfp.sampling_rate
        return xr.DataArray(name="LFP", data=lfp.data, dims=("time", "channel"),
                            coords={"time": lfp.timestamps, "channel": lfp.channel_ids.astype(np.int64)})

    def get_current_source_density(self, probe_id: int | str) -> Any:
        """The probe's CSD as an ``xarray.DataArray`` named ``"CSD"``.

        Dims ``(virtual_channel_index, time)``, with ``vertical_position`` and
        ``horizontal_position`` coordinates along the virtual channels. Returns
        None for a probe without an LFP file.

        Raises
        ------
        UnknownProbeError
            ``probe_id`` is not a probe of this session.
        """
        import xarray as xr  # noqa: PLC0415

        info, handle = self._probe_file(probe_id)
        if handle is None:
            return None
        try:
            csd = ed.read_csd(handle.nwbfile, handle.path)
        finally:
            handle.close()
        n = csd.data.shape[1]
        return xr.DataArray(
            name="CSD", data=csd.data.T, dims=("virtual_channel_index", "time"),
            coords={"virtual_channel_index": np.arange(n), "time": csd.timestamps,
                    "vertical_position": (("virtual_channel_index",), csd.y_positions),
                    "horizontal_position": (("virtual_channel_index",), csd.x_positions)},
        )


__all__ = ["EcephysSession", "Probe", "ProbeMeta", "Probes"]
