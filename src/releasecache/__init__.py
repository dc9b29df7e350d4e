"""releasecache: a verified, version-aware local cache for scientific data releases on S3.

>>> from releasecache import CloudCache, Manifest, compare_manifests
"""

from __future__ import annotations

import logging

from .cache import CloudCache
from .diff import ManifestDiff, compare_manifests
from .errors import OutdatedManifestWarning, ReleaseCacheError
from .manifest import FileEntry, Manifest
from .transfer import TransferConfig

__version__ = "0.1.0"

logging.getLogger("releasecache").addHandler(logging.NullHandler())


def __getattr__(name: str):  # the facade pulls in pynwb; import it only when asked
    if name == "ProjectCache":
        from .project import ProjectCache

        return ProjectCache
    raise AttributeError(f"module 'releasecache' has no attribute {name!r}")


__all__ = [
    "CloudCache",
    "ProjectCache",
    "Manifest",
    "FileEntry",
    "ManifestDiff",
    "compare_manifests",
    "TransferConfig",
    "ReleaseCacheError",
    "OutdatedManifestWarning",
]
