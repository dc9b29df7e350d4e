"""releasecache: a verified, version-aware local cache for scientific data releases on S3.

>>> from releasecache import CloudCache, Manifest, compare_manifests
"""

from __future__ import annotations

import logging

from .cache import CloudCache
from .config import __version__
from .errors import MissingLocalManifestWarning, OutdatedManifestWarning, PublisherWarning, ReleaseCacheError
from .manifest import FileEntry, Manifest, ManifestDiff, compare_manifests
from .transfer import TransferConfig

logging.getLogger("releasecache").addHandler(logging.NullHandler())


def __getattr__(name: str):  # the facade pulls in pynwb; import it only when asked
    if name == "ProjectCache":
        # imported on first use: the facade pulls in pandas and pynwb
        from .vbn.project import ProjectCache

        return ProjectCache
    if name == "audit_manifests":
        # imported on first use: the audit pulls in numpy and, when used, pyarrow and h5py
        from .audit import audit_manifests

        return audit_manifests
    raise AttributeError(f"module 'releasecache' has no attribute {name!r}")


def __dir__() -> list[str]:  # the public names only, not the subpackages imported on the way
    return sorted([*__all__, "__version__"])


__all__ = [
    "CloudCache",
    "ProjectCache",
    "Manifest",
    "FileEntry",
    "ManifestDiff",
    "compare_manifests",
    "audit_manifests",
    "TransferConfig",
    "ReleaseCacheError",
    "OutdatedManifestWarning",
    "MissingLocalManifestWarning",
    "PublisherWarning",
]
