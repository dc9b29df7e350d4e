"""Which manifests a :class:`~releasecache.cache.CloudCache` knows, and loading one (with AllenSDK's warnings).

:mod:`releasecache.cache.catalogue` reads and saves manifests in a
:class:`~releasecache.store.Store`; this module keeps what one cache object
remembers between calls (:class:`LoadState`: the loaded manifest, the remote's
listing, the latest manifest it last warned about) and decides the
``OutdatedManifestWarning`` of ``load_manifest``, ``load_latest_manifest`` and
``load_last_manifest``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ManifestNotFoundError, OutdatedManifestWarning
from ..manifest import Manifest, sort_manifest_names
from ..utils import warn_user
from . import budget, catalogue

if TYPE_CHECKING:
    from .cloud import CloudCache

log = logging.getLogger("releasecache")


@dataclass
class LoadState:
    """What one cache object remembers between calls."""

    #: The loaded manifest, or None.
    manifest: Manifest | None = None
    #: The remote's manifest names, listed once (None: not listed yet).
    remote_names: list[str] | None = None
    #: The latest manifest the outdated-manifest warning was last given for (once per cache and latest).
    warned_latest: str | None = None


def list_names(cache: "CloudCache", state: LoadState, *, refresh: bool = False) -> list[str]:
    """The remote's manifest names (listed once, or again with ``refresh``), else the downloaded ones."""
    if cache.remote is None:
        return cache.list_all_downloaded_manifests()
    if state.remote_names is None or refresh:
        state.remote_names = sort_manifest_names(cache.remote.list_manifests(cache.project))
    return list(state.remote_names)


def latest_name(cache: "CloudCache") -> str:
    """The newest manifest name, or ManifestNotFoundError naming where none was found."""
    names = cache.list_manifest_file_names()
    if not names:
        where = cache.remote.describe() if cache.remote else str(cache.store.manifests_dir)
        raise ManifestNotFoundError(f"no manifests for project {cache.project!r} in {where}")
    return names[-1]


def known_names(cache: "CloudCache") -> list[str]:
    """The remote's names (when online) and the downloaded ones, oldest to newest."""
    names = cache.list_manifest_file_names()
    if cache.remote is not None:
        names = sort_manifest_names(set(names) | set(cache.list_all_downloaded_manifests()))
    return names


def latest_known(cache: "CloudCache") -> str | None:
    """The remote's newest name when online, else the newest downloaded one (or None)."""
    if cache.remote is None:
        return cache.latest_downloaded_manifest_file() or None
    return cache.latest_manifest_file()


def _latest_or(cache: "CloudCache", name: str) -> str:
    try:
        return cache.latest_known_manifest() or name
    except ManifestNotFoundError:
        return name


def load(cache: "CloudCache", state: LoadState, name: str) -> Manifest:
    """Resolve, read and make current manifest ``name``; warn once per latest if a newer one exists."""
    name = cache.resolve_manifest_name(name)
    manifest = cache.get_manifest(name)
    if cache.check_manifest is not None:  # before anything changes: a refused manifest leaves no trace
        cache.check_manifest(manifest)
    if manifest.project_name != cache.project:
        log.warning("manifest %s names project %r, this cache is for %r", name, manifest.project_name, cache.project)
    state.manifest = manifest
    catalogue.remember_last_used(cache.store, cache.project, name)
    budget.touch_usage(cache.store, manifest.name or name)  # gc's window and the size budget read it
    latest = _latest_or(cache, name)
    if latest != name and latest != state.warned_latest:
        state.warned_latest = latest
        warn_user(catalogue.outdated_message(cache.ui_name, name, latest), OutdatedManifestWarning)
    return manifest


def latest_to_load(cache: "CloudCache") -> str:
    """The newest manifest's name; warns if that moves past the newest one this directory used before."""
    latest = cache.latest_manifest_file()
    previous = catalogue.newest_used(cache.store, cache.project)
    if previous is not None and previous != latest and sort_manifest_names({previous, latest})[-1] == latest:
        warn_user(catalogue.moved_past_message(cache.ui_name, latest, previous), OutdatedManifestWarning)
    return latest


def last_to_load(cache: "CloudCache", state: LoadState) -> str:
    """The manifest used last here (warning if it is outdated), else the latest (warning if the record is damaged)."""
    name, damage = catalogue.last_used_record(cache.store, cache.project)
    if name is not None and name not in cache.known_manifest_names():
        damage = name
    if name is None or damage is not None:
        latest = cache.latest_known_manifest()
        if latest is None:
            raise ManifestNotFoundError(f"the offline cache {cache.store.root} holds no manifest of {cache.project!r}")
        if damage is not None:
            warn_user(catalogue.damaged_record_message(damage, latest), UserWarning)
        return latest
    latest = _latest_or(cache, name)
    if latest != name:
        state.warned_latest = latest
        warn_user(catalogue.last_is_outdated_message(cache.ui_name, name, latest, online=cache.remote is not None),
                  OutdatedManifestWarning)
    return name


__all__ = ["LoadState", "known_names", "last_to_load", "latest_known", "latest_name", "latest_to_load", "list_names",
           "load"]
