"""Verify and gc as :class:`~releasecache.cache.CloudCache` offers them: which manifests, and the saved ones' repair.

The work itself is in :mod:`releasecache.cache.verify` and :mod:`releasecache.cache.gc`,
which take a :class:`~releasecache.store.Store` and manifests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from ..errors import NoManifestLoadedError
from ..manifest import Manifest
from . import catalogue, gc, verify

if TYPE_CHECKING:
    from .cloud import CloudCache
    from .gc import GCReport
    from .verify import VerifyReport


def manifest_arg(cache: "CloudCache", manifest: "str | Manifest | None") -> "Manifest | None":
    """A manifest given by name or version read through ``cache``; a Manifest or None as is."""
    if manifest is None or isinstance(manifest, Manifest):
        return manifest
    return cache.get_manifest(manifest)


def verify_cache(cache: "CloudCache", manifest: "str | Manifest | None" = None, *, mode: str = "fast",
                 max_seconds: float | None = None, max_bytes: int | None = None, resume: bool = True,
                 fix_permissions: bool = False) -> "VerifyReport":
    """Parse (and, online, repair) the saved manifests, then verify blobs (see ``CloudCache.verify``)."""
    checked, damaged = catalogue.check_saved_manifests(cache.store, trust_unchanged=mode == "fast")
    catalogue.repair_saved_manifests(cache.store, cache.remote, cache.project, damaged)
    report = verify.verify(cache.store, manifest_arg(cache, manifest), mode=mode, max_seconds=max_seconds,
                           max_bytes=max_bytes, resume=resume, fix_permissions=fix_permissions)
    report.manifests_checked, report.damaged_manifests = checked, damaged
    return report


def gc_cache(cache: "CloudCache", keep: "Iterable[str | Manifest] | str | Manifest | None" = None, *,
             dry_run: bool = True, partial_age_days: float | None, window_days: float | None) -> "GCReport":
    """gc keeping ``keep`` (default: the current, else the last used manifest); see ``CloudCache.gc``."""
    if keep is None:
        name = cache.current_manifest() or cache.last_used_manifest_file()
        if name is None:
            raise NoManifestLoadedError("gc needs to know what to keep: pass keep=[manifest names] or load one")
        keep = [name]
    elif isinstance(keep, (str, Manifest)):
        keep = [keep]
    kept = [manifest_arg(cache, m) for m in keep]
    loaded = cache.loaded_manifest
    return gc.gc(cache.store, [m for m in kept if m is not None], cache.project, dry_run=dry_run,
                 partial_age_days=partial_age_days, window_days=window_days,
                 parsed=[loaded] if loaded is not None else [])


__all__ = ["gc_cache", "manifest_arg", "verify_cache"]
