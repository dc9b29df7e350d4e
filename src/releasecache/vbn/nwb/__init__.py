"""Session objects over local VBN NWB files, with the reference API's names.

>>> from releasecache.vbn.nwb import EcephysSession, BehaviorSession, ProbeMeta
"""

from __future__ import annotations

from ._file import prepare_reader
from .behavior import BehaviorSession
from .ecephys import EcephysSession, Probe, ProbeMeta, Probes

__all__ = ["BehaviorSession", "EcephysSession", "Probe", "ProbeMeta", "Probes", "prepare_reader"]
