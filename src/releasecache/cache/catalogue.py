"""The catalogue: which manifests a cache knows, reading one safely, the last-used state, file ids → entries.

Functions over the lower-level objects (a :class:`~releasecache.store.Store`,
a :class:`~releasecache.remote.base.Remote` or None, a project name, a
:class:`~releasecache.manifest.Manifest`); :class:`~releasecache.cache.CloudCache`
delegates to them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import (
    ManifestError,
    ManifestNotFoundError,
    ReleaseCacheError,
    MissingLocalManifestWarning,
    RemoteError,
    RemoteNotFoundError,
    UnknownFileError,
    UnsafePathError,
)
from ..manifest import FileEntry, Manifest, check_relative_path, sort_manifest_names
from ..manifest.consistency import duplicate_versions, republished, version_id_conflicts
from ..manifest.consistency import warn as warn_publisher
from ..remote import Remote
from ..store import Store
from ..utils import atomic_write, short_repr, warn_user

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
        raise ManifestNotFoundError(f"manifest name {name!r} must be a plain file name", manifest=name)
    local = store.manifests_dir / name
    if local.is_symlink():
        raise UnsafePathError(f"{local} is a symbolic link, not a saved manifest; remove it", manifest=str(local))
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
            f"manifest {name!r} is not in the offline cache {store.root}; downloaded: {have or 'none'}",
            manifest=name)
    try:
        data = remote.get_manifest(project, name)
    except RemoteNotFoundError:
        listed = available if available is not None else sort_manifest_names(remote.list_manifests(project))
        raise ManifestNotFoundError(f"no manifest {name!r} for project {project!r}; available: {listed}") from None
    manifest = Manifest.from_bytes(data, name=name)  # validate before writing anything
    store.write_manifest(name, data)
    check_new_manifest(store, project, name, manifest, data)
    return manifest


def saved_manifest_bytes(store: Store, project: str) -> dict[str, bytes]:
    """The bytes of every manifest of ``project`` saved in the store or its layers, by name."""
    out: dict[str, bytes] = {}
    for name in downloaded_names(store, project):
        for folder in [store.manifests_dir] + [layer / "manifests" for layer in store.layers]:
            try:
                out[name] = (folder / name).read_bytes()
                break
            except OSError:
                continue
    return out


def check_new_manifest(store: Store, project: str, name: str, manifest: Manifest, data: bytes) -> list[str]:
    """Warn about publisher mistakes a newly fetched manifest shows against the saved ones.

    Issues a :class:`~releasecache.errors.PublisherWarning` for each version id
    it lists with another hash than a saved manifest does, and if its version
    was saved before under another name with other bytes. Returns the messages.
    """
    saved = saved_manifest_bytes(store, project)
    saved[name] = data
    others: list[Manifest] = []
    for other, raw in saved.items():
        if other == name:
            continue
        try:
            others.append(Manifest.from_bytes(raw, name=other))
        except ManifestError:
            continue  # an invalid saved manifest is reported when it is read
    messages = [m for m in version_id_conflicts([*others, manifest]) if name in m]
    messages += [m for m in duplicate_versions(saved) if name in m]
    return warn_publisher(messages)


def check_release(store: Store, remote: Remote | None, project: str) -> list[str]:
    """Every publisher mistake the saved manifests show, and (with a remote) manifests served again changed.

    Issues each as a :class:`~releasecache.errors.PublisherWarning` and returns the messages.
    """
    saved = saved_manifest_bytes(store, project)
    manifests: list[Manifest] = []
    for name, raw in saved.items():
        try:
            manifests.append(Manifest.from_bytes(raw, name=name))
        except ManifestError:
            continue
    messages = version_id_conflicts(manifests) + duplicate_versions(saved)
    if remote is not None:
        for name, raw in saved.items():
            try:
                served = remote.get_manifest(project, name)
            except RemoteNotFoundError:
                messages.append(f"manifest {name}, saved in this cache, is no longer served by {remote.describe()}")
                continue
            message = republished(name, raw, served)
            if message:
                messages.append(message)
    return warn_publisher(messages)


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


#: In ``.stamps/``: ``{name: [size, mtime_ns, inode]}`` of each saved manifest as it was when it last parsed.
PARSED_MANIFESTS = "manifests-parsed.json"


def _read_parsed(store: Store) -> dict[str, list[int]]:
    try:
        with open(store.stamps_dir / PARSED_MANIFESTS, "rb") as fh:
            value = json.loads(fh.read(1 << 20))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def check_saved_manifests(store: Store, *, trust_unchanged: bool = False) -> tuple[int, list[dict[str, object]]]:
    """Parse every manifest saved in ``manifests/``; return (how many, the damaged ones).

    Each damaged one is ``{"name", "path", "reason", "repaired": False}``. With
    ``trust_unchanged`` (a fast verify), a manifest whose size, mtime and inode are those it
    had when it last parsed is counted as checked without parsing it again (the blobs'
    stamps work the same way; parsing a manifest of 100,000 entries takes half a second).
    """
    folder = store.manifests_dir
    try:
        if not folder.is_dir() or folder.is_symlink():
            return 0, []
        paths = sorted(folder.iterdir())
    except PermissionError:  # another user's narrow umask: verify's permission check reports it
        return 0, []
    before = _read_parsed(store)
    after: dict[str, list[int]] = {}
    checked, damaged = 0, []
    for path in paths:
        if path.suffix != ".json" or path.name.startswith(".") or path.is_symlink():
            continue
        if not os.access(path, os.R_OK):
            continue  # unreadable is not damaged: the permission check names it and its owner
        checked += 1
        try:
            st = os.lstat(path)
        except OSError:
            continue  # removed meanwhile
        seen = [st.st_size, st.st_mtime_ns, st.st_ino]
        if trust_unchanged and before.get(path.name) == seen:
            after[path.name] = seen
            continue
        try:
            Manifest.from_path(path)
        except ManifestError as exc:
            damaged.append({"name": path.name, "path": str(path), "reason": str(exc), "repaired": False})
            continue
        after[path.name] = seen
    if after != before and not store.read_only:
        try:
            store.make_dir(store.stamps_dir)
            atomic_write(store.stamps_dir / PARSED_MANIFESTS, json.dumps(after).encode(), durable=False)
        except (OSError, ReleaseCacheError) as exc:  # best effort: the next run parses them again
            log.debug("could not record the parsed manifests: %s", exc)
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
    name, _ = last_used_record(store, project)
    return name


def last_used_record(store: Store, project: str) -> tuple[str | None, str | None]:
    """``(name, damage)``: the recorded last-used manifest, and what is wrong with the record, if anything.

    No record at all is ``(None, None)``; a state file that does not parse, or
    whose entry for ``project`` is not a manifest name, gives ``(None, what)``.
    """
    path = store.root / "state"
    try:
        raw = path.read_bytes()[: 1 << 20]
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path} cannot be read ({exc.strerror or exc})"
    try:
        state = json.loads(raw)
    except ValueError:
        return None, f"{short_repr(raw[:60].decode('utf-8', 'replace'))} (the state file {path} is damaged)"
    if not isinstance(state, dict):
        return None, f"the state file {path} is damaged"
    recorded = state.get("last_manifest", {})
    if not isinstance(recorded, dict):
        return None, f"{short_repr(recorded)} (the state file {path} is damaged)"
    if project not in recorded:
        return None, None
    name = recorded[project]
    if not isinstance(name, str):
        return None, f"{short_repr(name)}"
    return name, None


def newest_used(store: Store, project: str) -> str | None:
    """The newest manifest (by version) ever loaded in this cache directory for ``project``, if recorded."""
    state = store.read_state()
    candidates = []
    for key in ("newest_manifest", "last_manifest"):  # caches made before the first key only have the second
        recorded = state.get(key, {})
        name = recorded.get(project) if isinstance(recorded, dict) else None
        if isinstance(name, str):
            candidates.append(name)
    ordered = sort_manifest_names(set(candidates))
    return ordered[-1] if ordered else None


def remember_last_used(store: Store, project: str, name: str) -> None:
    """Record ``name`` as the project's last used manifest, and as the newest used if it is newer."""
    state = store.read_state()
    last = state.get("last_manifest", {})
    last = last if isinstance(last, dict) else {}
    newest = state.get("newest_manifest", {})
    newest = newest if isinstance(newest, dict) else {}
    changes = {}
    if last.get(project) != name:
        changes["last_manifest"] = {**last, project: name}
    before = newest.get(project)
    if before != name and sort_manifest_names({name, before} if isinstance(before, str) else {name})[-1:] == [name]:
        changes["newest_manifest"] = {**newest, project: name}
    if changes:
        store.update_state(**changes)


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
            f"file id {file_id!r} is not in manifest {manifest.name} ({len(ids)} data files: {sample})",
            manifest=manifest.name) from None


def metadata_entry(manifest: Manifest, name: str) -> FileEntry:
    """The entry of a metadata file by its manifest key (``units``, or ``metadata_1.csv`` where the key
    ends in ``.csv``), with or without the ``.csv`` suffix."""
    files = manifest.metadata_files
    for key in (name, name[:-4] if name.endswith(".csv") else f"{name}.csv"):
        if key in files:
            return files[key]
    raise UnknownFileError(
        f"{name!r} is not a metadata file of manifest {manifest.name}; choose from {manifest.metadata_file_names}",
        manifest=manifest.name)


def outdated_message(ui: str, name: str, latest: str) -> str:
    """AllenSDK's warning when a manifest other than the latest is loaded (``ui``: the class the user calls)."""
    return ("The manifest file you are loading is not the most up to date manifest file available for this "
            f"dataset. The most up to date manifest file available for this dataset is\n\n{latest}\n\n"
            f"To see the differences between these manifests, run\n\n{ui}.compare_manifests('{name}', '{latest}')"
            "\n\nTo see all of the manifest files currently downloaded onto your local system, run\n\n"
            f"{ui}.list_all_downloaded_manifests()\n\nIf you just want to load the latest manifest, run\n\n"
            f"{ui}.load_latest_manifest()")


def moved_past_message(ui: str, latest: str, previous: str) -> str:
    """AllenSDK's warning when ``load_latest_manifest`` moves past the newest manifest used before."""
    return (f"You are loading\n{latest}\nwhich is newer than the most recent manifest file you have previously "
            f"been working with\n{previous}\nIt is possible that some data files have changed between these two "
            "data releases, which will force you to re-download those data files (currently downloaded files "
            f"will not be overwritten). To continue using {previous}, run\n{ui}.load_manifest('{previous}')")


def last_is_outdated_message(ui: str, name: str, latest: str, online: bool) -> str:
    """AllenSDK's warning when the manifest used last is not the latest."""
    where = "online" if online else "in this cache"
    return (f"You are loading {name}. A more up to date version of the dataset -- {latest} -- exists {where}. "
            f"To see the changes between the two versions of the dataset, run\n{ui}.compare_manifests('{name}', "
            f"'{latest}')\nTo load another version of the dataset, run\n{ui}.load_manifest('{latest}')")


def damaged_record_message(record: str, latest: str) -> str:
    """AllenSDK's warning when the last-used record names no manifest of the dataset."""
    return (f"The manifest version recorded as last used for this cache -- {record} -- is not a valid manifest "
            f"for this dataset. Loading latest version -- {latest} -- instead.")


def missing_local_manifest_message(ui: str, cache_dir: str) -> str:
    """The warning for a directory that an AllenSDK cache used: its files are not in the store yet."""
    return (f"This cache directory ({cache_dir}) was used by an AllenSDK cache: it may contain data files that "
            "this cache has no record of. You might want to consider running\n\n"
            f"{ui}.construct_local_manifest()\n\nto bring them in (each is hashed against its manifest and "
            "hard-linked into the store) instead of downloading them again. NOTE: this hashes every such file "
            "once and can take a while.")


def warn_of_allensdk_files(store: Store, ui: str) -> None:
    """Warn once per directory that files an AllenSDK cache left in ``store`` are not in the store yet."""
    root = store.root
    if not any((root / name).is_file() for name in ("_downloaded_data.json", "_manifest_last_used.txt")):
        return
    if store.read_state().get("allensdk_files_indexed"):
        return
    warn_user(missing_local_manifest_message(ui, str(root)), MissingLocalManifestWarning)
