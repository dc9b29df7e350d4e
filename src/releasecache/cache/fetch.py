"""Getting one file: present and verified in the store, linked at its view path.

The one path by which :class:`~releasecache.cache.CloudCache` hands out a
local file (``ensure``); downloads go through the transfer engine, which brings
the bytes in through :mod:`releasecache.store.ingest`.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any, Callable

from ..errors import OfflineError, ReadOnlyCacheError, ReleaseCacheError, StorageError
from ..manifest import FileEntry, Manifest
from ..remote import Remote
from ..store import Store
from ..transfer import Transfer

log = logging.getLogger("releasecache")


def ensure_entry(store: Store, transfer: Transfer, remote: Remote | None, manifest: Manifest, entry: FileEntry, *,
                 progress: Callable[[int], None] | None = None, show_bar: bool = False) -> Path:
    """Make ``entry`` of ``manifest`` present and verified, link its view path, and return that path.

    Retried when a concurrent gc or verify removes the blob or view while it is linked.
    Every library error on the way carries the entry's path, URL, key, version id,
    hash and manifest (those the layer that raised it did not set already).
    """
    try:
        return _ensure_retrying(store, transfer, remote, manifest, entry, progress, show_bar)
    except ReleaseCacheError as exc:
        raise exc.fill_context(path=entry.relative_path, url=entry.url, key=entry.key,
                               version_id=entry.version_id or None, file_hash=entry.file_hash,
                               manifest=manifest.name)


def _ensure_retrying(store: Store, transfer: Transfer, remote: Remote | None, manifest: Manifest, entry: FileEntry,
                     progress: Callable[[int], None] | None, show_bar: bool) -> Path:
    for _attempt in range(3):
        try:
            path = _ensure_once(store, transfer, remote, manifest, entry, progress, show_bar)
        except StorageError as exc:
            if exc.errno != errno.ENOENT:
                raise
            path = None  # a concurrent gc removed the view directory while we linked into it
        if path is not None and (store.read_only or store.has_blob(entry.file_hash)):
            return path
        log.info("%s: its blob or view vanished while linking (a concurrent gc or verify); again",
                 entry.relative_path)
    raise StorageError(errno.ENOENT, f"{entry.relative_path}: removed three times by a concurrent gc or "
                       "verify while being fetched; is a gc running that does not keep this manifest?")


def _ensure_once(store: Store, transfer: Transfer, remote: Remote | None, manifest: Manifest, entry: FileEntry,
                 progress: Callable[[int], None] | None, show_bar: bool) -> Path:
    if store.has_blob(entry.file_hash):
        if store.read_only:
            view = store.view_path(manifest.view_dir_name, entry.relative_path)
            return view if store.view_is_current(manifest.view_dir_name, entry.relative_path,
                                                 entry.file_hash) else store.find_blob(entry.file_hash)
        if store.view_is_current(manifest.view_dir_name, entry.relative_path, entry.file_hash):
            return store.view_path(manifest.view_dir_name, entry.relative_path)
        return store.link_view(manifest.view_dir_name, entry.relative_path, entry.file_hash)
    if remote is None:
        raise OfflineError(
            f"{entry.relative_path} (version {manifest.version}) is not in the cache {store.root}, "
            "and this cache is offline; open it with from_s3(...) to download it"
        )
    if store.read_only:
        raise ReadOnlyCacheError(
            errno.EROFS,
            f"{entry.relative_path} (version {manifest.version}) is not in the cache {store.root}, which is "
            "read-only for you (another user's cache, or opened with read_only=True); ask its owner to fetch "
            "it, or use that cache as a read-only layer of a cache of your own (--layer)")
    bar = None if progress is not None else _progress_bar(entry, show_bar)
    try:
        transfer.fetch(remote, entry, progress=progress or (bar.update if bar is not None else None))
    finally:
        if bar is not None:
            bar.close()
    return store.link_view(manifest.view_dir_name, entry.relative_path, entry.file_hash)


def _progress_bar(entry: FileEntry, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported here: only interactive downloads show a bar

    return tqdm(
        total=entry.size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=entry.relative_path.rsplit("/", 1)[-1],
        leave=False,
        dynamic_ncols=True,
    )
