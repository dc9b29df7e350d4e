"""The catalogue: which manifests a cache knows, reading one safely, the last-used state, file ids → entries.

Functions over the lower-level objects (a :class:`~releasecache.store.Store`,
a :class:`~releasecache.remote.base.Remote` or None, a project name, a
:class:`~releasecache.manifest.Manifest`); :class:`~releasecache.cache.CloudCache`
delegates to them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import (
    ManifestError,
    ManifestNotFoundError,
    RemoteError,
    RemoteNotFoundError,
    UnknownFileError,
    UnsafePathError,
)
from ..manifest import FileEntry, Manifest, check_relative_path, sort_manifest_names
from ..remote import Remote
from ..store import Store

log = logging.getLogger("releasecache")

#: How to repair a saved manifest that no longer parses, for messages.
REPAIR_HINT = ("it is fetched again and replaced automatically when the cache is opened online (from_s3(...), "
               "or the command line without --offline); or delete the file")


def downloaded_names(store: Store, project: str) -> list[str]:
    """Names of the project's manifests saved in the store or its read-only layers, oldest to newest."""
    names: set[str] = set()
    for folder in [store.manifests_dir] + [layer / "manifests" for layer in store.layers]:
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir()
                         if p.suffix == ".json" and p.name.startswith(project) and not p.name.startswith("."))
    return sort_manifest_names(names)


def read_manifest(store: Store, remote: Remote | None, project: str, name: str,
                  available: "list[str] | None" = None) -> Manifest:
    """A manifest by name: from the store or a layer if present, else fetched, validated and saved.

    Nothing is written unless the manifest is valid. ``available`` (the remote's
    names) is only used in the error message.
    """
    check_relative_path(name, what="manifest name")
    if "/" in name:
        raise ManifestNotFoundError(f"manifest name {name!r} must be a plain file name")
    local = store.manifests_dir / name
    if local.is_symlink():
        raise UnsafePathError(f"{local} is a symbolic link, not a saved manifest; remove it")
    damaged: tuple[Path, ManifestError] | None = None
    for path in [local] + [layer / "manifests" / name for layer in store.layers]:  # layers hold manifests too
        if path.is_file():
            try:
                return Manifest.from_path(path)
            except UnsafePathError:
                raise  # the same bytes would come back from the server: refetching cannot help
            except ManifestError as exc:  # truncated, emptied or edited since it was saved
                damaged = (path, exc)
                break
    if damaged is not None:
        return _refetch_damaged(store, remote, project, name, *damaged)
    if remote is None:
        have = downloaded_names(store, project)
        raise ManifestNotFoundError(
            f"manifest {name!r} is not in the offline cache {store.root}; downloaded: {have or 'none'}"
        )
    try:
        data = remote.get_manifest(project, name)
    except RemoteNotFoundError:
        listed = available if available is not None else sort_manifest_names(remote.list_manifests(project))
        raise ManifestNotFoundError(f"no manifest {name!r} for project {project!r}; available: {listed}") from None
    manifest = Manifest.from_bytes(data, name=name)  # validate before writing anything
    store.write_manifest(name, data)
    return manifest


def _refetch_damaged(store: Store, remote: Remote | None, project: str, name: str, path: Path,
                     problem: ManifestError) -> Manifest:
    """A saved manifest that no longer parses: fetch it again and replace it, or say how to fix it."""
    if remote is None:
        raise type(problem)(f"the saved manifest {path} is damaged ({problem}); {REPAIR_HINT}") from None
    try:
        data = remote.get_manifest(project, name)
    except RemoteError as exc:
        raise type(problem)(f"the saved manifest {path} is damaged ({problem}), and fetching it again failed: "
                            f"{exc}") from None
    manifest = Manifest.from_bytes(data, name=name)  # validate before replacing anything
    if store.read_only or path != store.manifests_dir / name:
        log.warning("the saved manifest %s is damaged (%s); using a fresh copy from %s without replacing it "
                    "(it is read-only)", path, problem, remote.describe())
        return manifest
    store.write_manifest(name, data)  # atomic: readers see the damaged file or the good one, never half
    log.warning("the saved manifest %s was damaged (%s); fetched it again from %s and replaced it",
                path, problem, remote.describe())
    return manifest


def check_saved_manifests(store: Store) -> tuple[int, list[dict[str, object]]]:
    """Parse every manifest saved in ``manifests/``; return (how many, the damaged ones).

    Each damaged one is ``{"name", "path", "reason", "repaired": False}``.
    """
    folder = store.manifests_dir
    if not folder.is_dir() or folder.is_symlink():
        return 0, []
    checked, damaged = 0, []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".json" or path.name.startswith(".") or path.is_symlink():
            continue
        checked += 1
        try:
            Manifest.from_path(path)
        except ManifestError as exc:
            damaged.append({"name": path.name, "path": str(path), "reason": str(exc), "repaired": False})
    return checked, damaged


def repair_saved_manifests(store: Store, remote: Remote | None, project: str,
                           damaged: list[dict[str, object]]) -> None:
    """Fetch damaged manifests again where possible; mark each record ``repaired``."""
    for record in damaged:
        if remote is None or store.read_only:
            record["reason"] = f"{record['reason']}; {REPAIR_HINT}"
            continue
        try:
            read_manifest(store, remote, project, str(record["name"]))
        except (ManifestError, RemoteError) as exc:
            record["reason"] = str(exc)
            continue
        record["repaired"] = True


def last_used(store: Store, project: str) -> str | None:
    """The manifest loaded last in this cache directory for ``project``, if recorded."""
    state = store.read_state().get("last_manifest", {})
    name = state.get(project) if isinstance(state, dict) else None
    return name if isinstance(name, str) else None


def remember_last_used(store: Store, project: str, name: str) -> None:
    """Record ``name`` as the project's last used manifest (only if it changed)."""
    state = store.read_state().get("last_manifest", {})
    if not isinstance(state, dict):
        state = {}
    if state.get(project) != name:
        state[project] = name
        store.update_state(last_manifest=state)


def data_entry(manifest: Manifest, file_id: int | str) -> FileEntry:
    """The entry of a data file id: ints, numpy ints, strings and floats read from CSVs (870.0)."""
    if isinstance(file_id, str):
        key = file_id.strip()
    else:
        try:
            key = str(int(file_id))
        except (TypeError, ValueError):
            raise UnknownFileError(f"file id {file_id!r} is not an integer") from None
    try:
        return manifest.data_files[key]
    except KeyError:
        ids = list(manifest.data_files)
        sample = ", ".join(ids[:8]) + (" …" if len(ids) > 8 else "")
        raise UnknownFileError(
            f"file id {file_id!r} is not in manifest {manifest.name} ({len(ids)} data files: {sample})"
        ) from None


def metadata_entry(manifest: Manifest, name: str) -> FileEntry:
    """The entry of a metadata file (``units`` or ``units.csv``)."""
    key = name[:-4] if name.endswith(".csv") else name
    try:
        return manifest.metadata_files[key]
    except KeyError:
        raise UnknownFileError(
            f"{name!r} is not a metadata file of manifest {manifest.name}; choose from {manifest.metadata_file_names}"
        ) from None


def outdated_message(name: str, latest: str) -> str:
    """The warning shown when a manifest other than the latest is loaded."""
    return (f"The manifest you loaded, {name}, is not the latest one ({latest}).\n"
            f"To see what changed:   cache.compare_manifests('{name}', '{latest}')\n"
            f"To load the latest:    cache.load_latest_manifest()")
