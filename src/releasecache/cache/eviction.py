"""The size budget applied to one :class:`~releasecache.cache.CloudCache`: pins by spec, eviction, room, read leases.

:mod:`releasecache.cache.budget` works on a :class:`~releasecache.store.Store`;
this module adds what only the cache knows: which manifest a version spec
names, which manifest is current, which blobs this process handed out, and
the ``ensure`` that a read lease wraps.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import InvalidArgumentError, ManifestNotFoundError, StorageError
from ..manifest import FileEntry, Manifest, match_manifest_name
from . import budget

if TYPE_CHECKING:
    from .cloud import CloudCache


def pin_name(cache: "CloudCache", spec: "str | Manifest") -> str:
    """The manifest name a pin refers to: a manifest's name, a manifest file name, or a version."""
    if isinstance(spec, Manifest):
        return spec.name or spec.view_dir_name
    if spec.endswith(".json"):
        return spec
    found = match_manifest_name(spec, cache.known_manifest_names())
    if found is None:
        raise ManifestNotFoundError(f"no manifest of version {spec!r} for {cache.project!r}")
    return found


def pin(cache: "CloudCache", spec: "str | Manifest") -> str:
    """Pin the manifest ``spec`` names; return its name."""
    name = pin_name(cache, spec)
    budget.pin(cache.store, name)
    return name


def pinned_manifests(cache: "CloudCache") -> list[str]:
    """The explicit pins plus the current (else the last used) manifest."""
    current = cache.current_manifest() or cache.last_used_manifest_file()
    return sorted({*budget.pinned(cache.store), *([current] if current else [])})


def evict(cache: "CloudCache", max_size: int | str | None = None, *, incoming: int = 0, dry_run: bool = True,
          in_flight: dict[str, int] | None = None) -> "budget.EvictionReport":
    """Evict least-recently-used blobs of ``cache`` until ``incoming`` more bytes fit (see ``CloudCache.evict``)."""
    limit = cache.max_size if max_size is None else budget.parse_size(max_size)
    if limit is None:
        raise InvalidArgumentError("no size budget: pass max_size (e.g. '400GB') or set RELEASECACHE_MAX_SIZE")
    if not dry_run and cache.store.read_only:
        raise StorageError(errno.EROFS, f"cache {cache.store.root} is read-only; nothing can be evicted")
    in_use = {r["file_hash"] for r in cache.usage.records() if not r.get("streamed")}
    return budget.evict(cache.store, limit, incoming=incoming, pinned_names=pinned_manifests(cache),
                        protect=in_use, dry_run=dry_run, in_flight=in_flight)


def make_room(cache: "CloudCache", entry: FileEntry) -> int:
    """Evict what the budget requires before ``entry`` is downloaded; return the bytes reserved for it.

    Downloads in flight in this process count as incoming, so concurrent
    downloads (``prefetch``) do not overshoot the budget together.

    Raises
    ------
    StorageError
        If the file cannot fit without evicting pinned, locked or in-use blobs.
    """
    assert cache.max_size is not None
    size = entry.size
    if size is None:
        size = cache.remote.stat(entry.location) if cache.remote is not None else 0
    with budget.reserving(cache.store, entry.file_hash, size) as in_flight:
        report = evict(cache, incoming=size, dry_run=False, in_flight=in_flight)
        if report.fits:
            return size
        raise StorageError(errno.ENOSPC, f"{entry.relative_path} ({size} bytes) does not fit in the size budget "
                           f"of {cache.max_size} bytes: {report.total_after} bytes are pinned, locked or in use "
                           f"(pinned: {', '.join(report.pinned) or 'none'}; {len(report.busy)} busy; "
                           f"{report.incoming - size} bytes of other downloads in flight); unpin a version "
                           "or raise max_size")
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def reading(cache: "CloudCache", entry: FileEntry) -> Iterator[Path]:
    """``cache.ensure(entry)`` and hold a read lease on its blob while the block runs (see ``CloudCache.reading``)."""
    for _attempt in range(3):
        path = cache.ensure(entry)
        blob = cache.store.find_blob(entry.file_hash)
        if blob is None:
            continue
        try:
            with budget.read_lease(blob):
                if cache.store.has_blob(entry.file_hash):  # not deleted between ensure and the lease
                    yield path
                    return
        except FileNotFoundError:
            continue
    raise StorageError(errno.ENOENT, f"{entry.relative_path}: deleted by a concurrent gc three times "
                       "before it could be read")


__all__ = ["evict", "make_room", "pin", "pin_name", "pinned_manifests", "reading"]
