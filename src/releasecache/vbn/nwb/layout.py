"""Names and paths of the VBN NWB layout that the session readers rely on.

These are the places AllenSDK's writer puts things (the real release's
files), with their ndx extension types:

=============================================  ===============================================
where                                          type
=============================================  ===============================================
``lab_meta_data["metadata"]``                  BehaviorMetadata (ndx-aibs-behavior-ophys)
``subject``                                    BehaviorSubject (``driver_line``, ``reporter_line``)
``lab_meta_data["task_parameters"]``           BehaviorTaskParameters
``devices[<probe>]``, ``electrode_groups``     EcephysProbe, EcephysElectrodeGroup (ndx-aibs-ecephys)
``acquisition["EyeTracking"]``                 EllipseEyeTracking of EllipseSeries (ndx-ellipse-eye-tracking)
``processing["eye_tracking_rig_metadata"]``    OphysEyeTrackingRigMetadata
``stimulus_template[<image set>]``             StimulusTemplate (ndx-aibs-stimulus-template)
``processing["current_source_density"]``       EcephysCSD (probe LFP files)
=============================================  ===============================================

The files embed these extensions' schemas, so pynwb opens them without any
extension package installed.
"""

from __future__ import annotations

METADATA = "metadata"
"""``lab_meta_data`` name of the session metadata (BehaviorMetadata)."""
TASK_PARAMETERS = "task_parameters"
EYE_TRACKING = "EyeTracking"
EYE_SERIES: dict[str, str] = {
    "eye_tracking": "eye",
    "pupil_tracking": "pupil",
    "corneal_reflection_tracking": "cr",
}
"""Ellipse series name -> column prefix of ``eye_tracking``."""
LIKELY_BLINK = "likely_blink"
RIG_MODULE = "eye_tracking_rig_metadata"
RIG_GEOMETRY_FIELDS: tuple[str, ...] = (
    "monitor_position", "camera_position", "led_position", "monitor_rotation", "camera_rotation",
)
CSD_MODULE = "current_source_density"
CSD_CONTAINER = "ecephys_csd"
CSD_SERIES = "current_source_density"
UNITS = "units"
"""Root group of the units table."""
UNITS_TYPE = "Units"
INTERVALS = "intervals"
TRIALS = "trials"
"""``intervals`` name of the trials table."""
TIME_INTERVALS = "TimeIntervals"
"""neurodata_type of the trials and presentations tables."""
PRESENTATIONS_SUFFIX = "_presentations"
OPTOTAGGING_MODULE = "optotagging"
OPTOTAGGING_TABLE = "optogenetic_stimulation"
NONE_TEXT = "None"
"""How the writer stores a missing text value (``str(None)``); read back as None."""


def lfp_container_name(probe_id: int) -> str:
    """``acquisition`` name of a probe's LFP container."""
    return f"probe_{probe_id}_lfp"


def lfp_series_name(probe_id: int) -> str:
    """Name of a probe's LFP ElectricalSeries."""
    return f"probe_{probe_id}_lfp_data"
