"""Names and paths of the VBN NWB layout that the session readers rely on.

The real files use ndx extension types; files written with pynwb core types
only (the synthetic fixture) keep the same paths and names and put the
extension-only fields in these places instead:

=============================================  ===============================================
real (extension)                               core-type stand-in
=============================================  ===============================================
``lab_meta_data["metadata"]``                  ``processing["metadata"]["metadata"]`` one-row table
BehaviorSubject ``driver_line``/``reporter_line``  ``processing["metadata"]["subject"]`` one-row table
``lab_meta_data["task_parameters"]``           ``processing["metadata"]["task_parameters"]`` (key, JSON value)
EcephysProbe / EcephysElectrodeGroup attrs     JSON in the Device / ElectrodeGroup ``description``
EllipseEyeTracking / EllipseSeries             BehavioralTimeSeries ``EyeTracking`` of (n, 7) TimeSeries
OphysEyeTrackingRigMetadata                    one-row table at the same processing path
StimulusTemplate ``data`` / ``unwarped``       ImageSeries ``<name>`` / ``<name>_unwarped``
EcephysCSD                                     TimeSeries ``current_source_density`` + table ``ecephys_csd``
=============================================  ===============================================

The readers look for the real (extension) form first, so they read both.
"""

from __future__ import annotations

METADATA_MODULE = "metadata"
METADATA_TABLE = "metadata"
SUBJECT_TABLE = "subject"
TASK_PARAMETERS = "task_parameters"
EYE_TRACKING = "EyeTracking"
EYE_SERIES: dict[str, str] = {
    "eye_tracking": "eye",
    "pupil_tracking": "pupil",
    "corneal_reflection_tracking": "cr",
}
"""Ellipse series name -> column prefix of ``eye_tracking``."""
EYE_FIELDS: tuple[str, ...] = ("center_x", "center_y", "area", "area_raw", "width", "height", "angle")
"""Column order of the (n, 7) stand-in ellipse series."""
LIKELY_BLINK = "likely_blink"
RIG_MODULE = "eye_tracking_rig_metadata"
RIG_GEOMETRY_FIELDS: tuple[str, ...] = (
    "monitor_position", "camera_position", "led_position", "monitor_rotation", "camera_rotation",
)
UNWARPED_SUFFIX = "_unwarped"
CSD_MODULE = "current_source_density"
CSD_CONTAINER = "ecephys_csd"
CSD_SERIES = "current_source_density"
PRESENTATIONS_SUFFIX = "_presentations"
OPTOTAGGING_MODULE = "optotagging"
OPTOTAGGING_TABLE = "optogenetic_stimulation"


def lfp_container_name(probe_id: int) -> str:
    """``acquisition`` name of a probe's LFP container."""
    return f"probe_{probe_id}_lfp"


def lfp_series_name(probe_id: int) -> str:
    """Name of a probe's LFP ElectricalSeries."""
    return f"probe_{probe_id}_lfp_data"
