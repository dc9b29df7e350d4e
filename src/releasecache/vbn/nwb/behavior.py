"""``BehaviorSession``: the behavior part of a VBN NWB file, read lazily."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from . import _behavior_data as bd
from ._file import NwbHandle, Source
from ._performance import ENGAGED_REWARD_RATE, performance_metrics, reward_rate, rolling_performance

logger = logging.getLogger("releasecache")


class BehaviorSession:
    """A behavior session read from a local NWB file.

    Works on behavior-only files (``behavior_session_<id>.nwb``) and on the
    behavior part of ecephys files. The file is opened read-only when data is
    first asked for; each attribute reads only the datasets it needs and is
    computed once. Frames and dicts returned are copies, safe to modify.

    Parameters
    ----------
    path
        Local path of the NWB file, or a seekable binary file object (for
        example a streamed remote file; it stays open after :meth:`close`).

    Examples
    --------
    >>> with BehaviorSession(path) as session:  # doctest: +SKIP
    ...     session.trials.head()
    """

    DATA_ATTRIBUTES: tuple[str, ...] = (
        "behavior_session_id", "eye_tracking", "eye_tracking_rig_geometry",
        "get_performance_metrics", "get_reward_rate", "get_rolling_performance_df", "licks",
        "metadata", "raw_running_speed", "rewards", "running_speed", "stimulus_presentations",
        "stimulus_templates", "stimulus_timestamps", "task_parameters", "trials",
    )
    """What :meth:`list_data_attributes_and_methods` lists (the reference API's names)."""

    RECOMPUTE_IS_CHANGE = True
    """Recompute ``is_change`` / ``flashes_since_change`` from the image names, as the
    reference reader does for behavior sessions (not for ecephys sessions)."""

    def __init__(self, path: Source) -> None:
        self._handle = NwbHandle(path)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def nwb_path(self) -> Path:
        """Path of the NWB file (a file object's ``name`` when reading a stream)."""
        return self._handle.path

    @property
    def _nwb(self) -> Any:
        return self._handle.nwbfile

    def close(self) -> None:
        """Close the NWB file. Further data access raises ``SessionClosedError``."""
        self._handle.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle.closed

    def __enter__(self) -> BehaviorSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"{type(self).__name__}({str(self.nwb_path)!r}, {state})"

    @classmethod
    def list_data_attributes_and_methods(cls) -> list[str]:
        """Names of the data attributes and methods, as the reference API lists them."""
        return sorted(cls.DATA_ATTRIBUTES)

    # -- metadata --------------------------------------------------------------------

    @cached_property
    def _metadata(self) -> dict[str, Any]:
        return bd.metadata(self._nwb, self.nwb_path)

    @property
    def metadata(self) -> dict[str, Any]:
        """Session and subject metadata (``mouse_id`` is a str, ``date_of_acquisition`` a datetime)."""
        meta = dict(self._metadata)
        if meta["driver_line"] is not None:
            meta["driver_line"] = list(meta["driver_line"])
        return meta

    @property
    def behavior_session_id(self) -> int | None:
        """The behavior session id (None only for a file without session metadata that
        does not say it either)."""
        return self._metadata["behavior_session_id"]

    @cached_property
    def _task_parameters(self) -> dict[str, Any]:
        return bd.task_parameters(self._nwb, self.nwb_path)

    @property
    def task_parameters(self) -> dict[str, Any]:
        """Task parameters such as ``reward_volume`` and ``response_window_sec``."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._task_parameters.items()}

    # -- stimulus --------------------------------------------------------------------

    @cached_property
    def _presentations(self) -> pd.DataFrame:
        frames = self._handle.read_direct(bd.presentation_frames_h5, bd.presentation_frames)
        has_trials = self._handle.read_direct(bd.has_trials_h5, lambda nwb: nwb.trials is not None)
        return bd.stimulus_presentations(frames, self._trials if has_trials else None, self.nwb_path,
                                         add_is_change=self.RECOMPUTE_IS_CHANGE)

    @property
    def stimulus_presentations(self) -> pd.DataFrame:
        """Every stimulus presentation, sorted by start time (index ``stimulus_presentations_id``)."""
        return self._presentations.copy()

    @cached_property
    def _templates(self) -> pd.DataFrame | None:
        return bd.stimulus_templates(self._nwb)

    @property
    def stimulus_templates(self) -> pd.DataFrame | None:
        """Stimulus images: index ``image_name``, columns ``unwarped`` and ``warped``
        (None when the file has no stimulus template)."""
        if self._templates is None:
            return None
        frame = self._templates.copy()
        for column in frame.columns:
            frame[column] = [np.array(v) for v in frame[column]]
        return frame

    @cached_property
    def _stimulus_timestamps(self) -> np.ndarray:
        return bd.stimulus_timestamps(self._nwb, self.nwb_path)

    @property
    def stimulus_timestamps(self) -> np.ndarray:
        """Stimulus frame times (s)."""
        return self._stimulus_timestamps.copy()

    # -- behavior --------------------------------------------------------------------

    @cached_property
    def _trials(self) -> pd.DataFrame:
        return self._handle.read_direct(bd.trials_h5, lambda nwb: bd.trials(nwb, self.nwb_path))

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial (index ``trials_id``; ``lick_times`` holds arrays)."""
        frame = self._trials.copy()
        if "lick_times" in frame.columns:
            frame["lick_times"] = [np.array(v) for v in frame["lick_times"]]
        return frame

    @cached_property
    def _licks(self) -> pd.DataFrame:
        return bd.licks(self._nwb, self.nwb_path)

    @property
    def licks(self) -> pd.DataFrame:
        """Lick ``timestamps`` (s) and stimulus ``frame`` (empty if the file has none)."""
        return self._licks.copy()

    @cached_property
    def _rewards(self) -> pd.DataFrame:
        return bd.rewards(self._nwb, self.nwb_path)

    @property
    def rewards(self) -> pd.DataFrame:
        """Reward ``volume`` (mL), ``timestamps`` (s) and ``auto_rewarded`` (empty if none)."""
        return self._rewards.copy()

    @cached_property
    def _running_speed(self) -> pd.DataFrame:
        return bd.running(self._nwb, self.nwb_path, "speed")

    @property
    def running_speed(self) -> pd.DataFrame:
        """Filtered running speed: ``timestamps`` (s), ``speed`` (cm/s)."""
        return self._running_speed.copy()

    @cached_property
    def _raw_running_speed(self) -> pd.DataFrame:
        return bd.running(self._nwb, self.nwb_path, "speed_unfiltered")

    @property
    def raw_running_speed(self) -> pd.DataFrame:
        """Unfiltered running speed: ``timestamps`` (s), ``speed`` (cm/s)."""
        return self._raw_running_speed.copy()

    @cached_property
    def _eye_tracking(self) -> pd.DataFrame:
        return bd.eye_tracking(self._nwb, self.nwb_path)

    @property
    def eye_tracking(self) -> pd.DataFrame:
        """Ellipse fits of eye, pupil and corneal reflection per frame (empty if not recorded)."""
        return self._eye_tracking.copy()

    @cached_property
    def _rig_geometry(self) -> dict[str, Any]:
        return bd.rig_geometry(self._nwb)

    @property
    def eye_tracking_rig_geometry(self) -> dict[str, Any]:
        """Positions (mm) and rotations (deg) of monitor, camera and LED; ``{}`` if absent."""
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._rig_geometry.items()}

    # -- performance -----------------------------------------------------------------

    def get_reward_rate(self) -> np.ndarray:
        """Rewarded responses per minute around each trial (NaN for the first trials)."""
        return reward_rate(self._trials)

    def get_rolling_performance_df(self) -> pd.DataFrame:
        """Per trial: ``reward_rate``, raw and corrected hit / false-alarm rates, ``rolling_dprime``."""
        return rolling_performance(self._trials)

    def get_performance_metrics(
        self, engaged_trial_reward_rate_threshold: float = ENGAGED_REWARD_RATE
    ) -> dict[str, Any]:
        """Trial counts, reward totals and mean/max rates and d' (overall and engaged)."""
        return performance_metrics(self._trials, self._rewards, engaged_trial_reward_rate_threshold)
