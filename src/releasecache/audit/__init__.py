"""Audits of a release: what changed inside its files between two versions.

* :mod:`~releasecache.audit.rows`: row-level diffs of the metadata tables;
* :mod:`~releasecache.audit.nwb`: structural diffs of NWB (HDF5) data files.
"""

from __future__ import annotations

from .compare import AuditDiff, FetchPlan, audit_manifests
from .nwb import NwbDiff, ObjectChange, ValueChange, diff_nwb
from .rows import ColumnChange, TableDiff, diff_tables

__all__ = ["AuditDiff", "ColumnChange", "FetchPlan", "audit_manifests", "NwbDiff", "ObjectChange", "TableDiff", "ValueChange", "diff_nwb", "diff_tables"]
