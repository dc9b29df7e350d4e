"""Getting one file: present and verified in the store, linked at its view path.

The one path by which :class:`~releasecache.cache.CloudCache` hands out a
local file (``ensure``); downloads go through the transfer engine, which brings
the bytes in through :mod:`releasecache.store.ingest`.
"""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import OfflineError, ReadOnlyCacheError, ReleaseCacheError, StorageError
from ..manifest import FileEntry, Manifest
from ..remote import Remote
from ..store import Store
from ..transfer import FetchOutcome, Transfer
from ..transfer.cancel import CancelToken

log = logging.getLogger("releasecache")


def ensure_entry(store: Store, transfer: Transfer, remote: Remote | None, manifest: Manifest, entry: FileEntry, *,
                 progress: Callable[[int], None] | None = None, show_bar: bool = False,
                 token: CancelToken | None = None, outcome: FetchOutcome | None = None) -> Path:
    """Make ``entry`` of ``manifest`` present and verified, link its view path, and return that path.

    ``token`` stops the download when cancelled (see :class:`~releasecache.transfer.cancel.CancelToken`);
    ``outcome`` is filled in with what was fetched (see :class:`~releasecache.transfer.engine.FetchOutcome`).

    Retried when a concurrent gc or verify removes the blob or view while it is linked.
    Every library error on the way carries the entry's path, URL, key, version id,
    hash and manifest (those the layer that raised it did not set already).
    """
    try:
        return _ensure_retrying(store, transfer, remote, manifest, entry, progress, show_bar, token, outcome)
    except ReleaseCacheError as exc:
        raise exc.fill_context(path=entry.relative_path, url=entry.url, key=entry.key,
                               version_id=entry.version_id or None, file_hash=entry.file_hash,
                               manifest=manifest.name)


def _ensure_retrying(store: Store, transfer: Transfer, remote: Remote | None, manifest: Manifest, entry: FileEntry,
                     progress: Callable[[int], None] | None, show_bar: bool, token: CancelToken | None,
                     outcome: FetchOutcome | None) -> Path:
    for _attempt in range(3):
        try:
            path = _ensure_once(store, transfer, remote, manifest, entry, progress, show_bar, token, outcome)
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
                 progress: Callable[[int], None] | None, show_bar: bool, token: CancelToken | None,
                 outcome: FetchOutcome | None) -> Path:
    if store.has_blob(entry.file_hash):
        if outcome is not None:
            outcome.present = True
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
    outcome = FetchOutcome() if outcome is None else outcome
    if bar is not None:
        outcome.on_size = _total_setter(bar, outcome.on_size)
    try:
        transfer.fetch(remote, entry, progress=progress or (bar.update if bar is not None else None), token=token,
                       outcome=outcome)
    finally:
        if bar is not None:
            bar.close()
    return store.link_view(manifest.view_dir_name, entry.relative_path, entry.file_hash)


def _progress_bar(entry: FileEntry, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported here: only interactive downloads show a bar

    return tqdm(
        total=entry.size,  # None until the first response says (see _total_setter)
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=entry.relative_path.rsplit("/", 1)[-1],
        leave=not sys.stderr.isatty(),  # a log keeps the finished line; a terminal clears it
        dynamic_ncols=True,
    )


def _total_setter(bar: Any, then: Callable[[int, int], None] | None) -> Callable[[int, int], None]:
    """Give the bar its total once the size is known: the bytes still to come, so it shows %, rate and ETA."""
    def set_total(size: int, resumed: int) -> None:
        bar.total = size - resumed
        bar.refresh()
        if then is not None:
            then(size, resumed)

    return set_total
