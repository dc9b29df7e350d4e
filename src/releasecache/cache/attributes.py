"""``CacheFileAttributes``: AllenSDK's description of one file of a release and where it is on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError


@dataclass(frozen=True)
class CacheFileAttributes:
    """A file of the loaded manifest: its URL, pinned version id, blake2b hash, and local path.

    The ``file_attributes`` of :meth:`~releasecache.cache.CloudCache.data_path`
    and :meth:`~releasecache.cache.CloudCache.metadata_path`, with AllenSDK's
    attribute names.
    """

    url: str
    version_id: str
    file_hash: str
    local_path: Path

    def __post_init__(self) -> None:
        for name, kind in (("url", str), ("version_id", str), ("file_hash", str), ("local_path", Path)):
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise InvalidArgumentError(f"{name} must be {kind.__name__}; got {type(value).__name__} {value!r}")

    def __str__(self) -> str:
        fields = {"url": self.url, "version_id": self.version_id, "file_hash": self.file_hash,
                  "local_path": str(self.local_path)}
        return f"CacheFileParameters{json.dumps(fields, indent=2, sort_keys=True)}"


__all__ = ["CacheFileAttributes"]
