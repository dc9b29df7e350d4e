"""``CacheFileAttributes``: AllenSDK's description of one file of a release and where it is on disk."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, StorageError

if TYPE_CHECKING:
    from ..manifest import FileEntry
    from ..store import Store

log = logging.getLogger("releasecache")


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


def file_attributes(store: "Store", view_dir: str, entry: "FileEntry") -> CacheFileAttributes:
    """The attributes of ``entry`` with its view path in ``view_dir`` (looks at nothing on disk)."""
    return CacheFileAttributes(entry.url, entry.version_id, entry.file_hash,
                               store.view_path(view_dir, entry.relative_path))


def local_path(store: "Store", view_dir: str, entry: "FileEntry") -> dict[str, Any]:
    """AllenSDK's ``{"local_path", "exists", "file_attributes"}`` (plus hash, version id and URL).

    ``exists`` is True only if ``local_path`` can be opened now. When the
    content is stored but the version path is missing, the link is made
    again (a read-only cache points ``local_path`` at the stored file).
    """
    path = store.view_path(view_dir, entry.relative_path)
    exists = False
    if store.has_blob(entry.file_hash):
        if store.view_is_current(view_dir, entry.relative_path, entry.file_hash):
            exists = True
        elif store.read_only:
            blob = store.find_blob(entry.file_hash)
            path, exists = (blob, True) if blob is not None else (path, False)
        else:
            try:
                path, exists = store.link_view(view_dir, entry.relative_path, entry.file_hash), True
            except StorageError as exc:
                log.warning("cannot link %s: %s", path, exc)
    return {"local_path": path, "exists": exists,
            "file_attributes": CacheFileAttributes(entry.url, entry.version_id, entry.file_hash, path),
            "file_hash": entry.file_hash, "version_id": entry.version_id, "url": entry.url}


__all__ = ["CacheFileAttributes", "file_attributes", "local_path"]
