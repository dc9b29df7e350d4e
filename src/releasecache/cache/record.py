"""Reproducibility records: which manifest, and exactly which files, an analysis used.

Every time :meth:`CloudCache.ensure <releasecache.cache.CloudCache.ensure>`
returns a path (``download_data``, ``download_metadata``, ``get_metadata``,
``prefetch``, and the facade's tables and sessions on top of them), the cache
notes the file in memory: :meth:`CloudCache.used_files
<releasecache.cache.CloudCache.used_files>` lists them, and
:meth:`CloudCache.write_record <releasecache.cache.CloudCache.write_record>`
writes a JSON *lock*::

    {
      "releasecache_lock": 1,
      "created": "2026-01-31T12:00:00Z",
      "project": "visual-behavior-neuropixels",
      "manifest": {"name": "..._v0.5.0.json", "version": "0.5.0", "blake2b": "<128 hex>"},
      "manifests": [ ...one record per manifest used... ],
      "files": [
        {"manifest": "..._v0.5.0.json", "section": "metadata", "name": "units",
         "path": "project_metadata/units.csv", "file_hash": "<128 hex>",
         "version_id": "...", "url": "https://...", "streamed": false},
        ...
      ]
    }

A file read by streaming (:mod:`releasecache.vbn.streaming`) is listed with
``"streamed": true``: its bytes were not hash-verified.

Across processes (scripts, job arrays, Dask workers), the same records can be
appended to a *usage log*: a JSON-lines file named by the ``usage_log=``
argument of :class:`~releasecache.cache.CloudCache` or by the environment
variable ``RELEASECACHE_USAGE_LOG``. Each line is one file use, written with a
single append, so many processes can share one log on a local filesystem.
:func:`lock_from_log` turns a log into a lock; ``releasecache record -o lock.json
-- python analysis.py`` does both around a command. Reading a lock back, checking
it and reproducing it live in :mod:`releasecache.cache.reproduce`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..config import ENV_USAGE_LOG, __version__
from ..errors import ManifestParseError, StorageError
from ..manifest import FileEntry, sort_manifest_names
from ..utils import atomic_write, hash_bytes

if TYPE_CHECKING:
    from ..manifest import Manifest
    from .cloud import CloudCache

log = logging.getLogger("releasecache")

#: Environment variable naming a usage log that every cache in the process appends to.
USAGE_LOG_ENV = ENV_USAGE_LOG
#: Format number written into every lock as ``releasecache_lock``.
LOCK_FORMAT = 1

_manifest_hashes: dict[tuple[str, str], str | None] = {}


def stored_manifest_hash(cache: "CloudCache", name: str, *, fetch: bool) -> str | None:
    """The blake2b of manifest ``name`` as the cache holds it: its own copy, else a layer's.

    The cache saves manifests as the bytes published on the bucket, so the value can
    be checked against the remote object. With ``fetch``, a manifest found nowhere
    locally is read from the remote. None if it cannot be found.
    """
    for folder in (cache.store.manifests_dir, *(layer / "manifests" for layer in cache.store.layers)):
        try:
            return hash_bytes((folder / name).read_bytes())
        except OSError:
            continue
    if fetch and cache.remote is not None:
        try:
            return hash_bytes(cache.remote.get_manifest(cache.project, name))
        except Exception as exc:  # a record or a check must not break the analysis around it
            log.warning("cannot read manifest %s to hash it: %s", name, exc)
    return None


def manifest_blake2b(cache: "CloudCache", manifest: "Manifest") -> str | None:
    """The blake2b of ``manifest``'s file as stored (remembered per cache; None if not found).

    See :func:`stored_manifest_hash`; the remote is asked only for a named manifest.
    """
    name = manifest.name or f"{manifest.project_name}-{manifest.version}"
    key = (str(cache.store.root), name)
    if key not in _manifest_hashes:
        _manifest_hashes[key] = stored_manifest_hash(cache, name, fetch=bool(manifest.name))
    return _manifest_hashes[key]


def forget_manifest_hash(cache: "CloudCache", name: str) -> None:
    """Drop the remembered blake2b of manifest ``name`` in ``cache``, so the next use hashes the file again."""
    _manifest_hashes.pop((str(cache.store.root), name), None)


def _section(manifest: "Manifest", entry: "FileEntry") -> str:
    return "metadata" if manifest.metadata_files.get(entry.name) is entry else "data"


def entry_record(manifest: "Manifest", entry: "FileEntry", *, streamed: bool = False) -> dict[str, Any]:
    """The record of one file of ``manifest`` (one element of a lock's ``files``)."""
    return {
        "manifest": manifest.name,
        "version": manifest.version,
        "section": _section(manifest, entry),
        "name": entry.name,
        "path": entry.relative_path,
        "file_hash": entry.file_hash,
        "version_id": entry.version_id,
        "url": entry.url,
        "streamed": streamed,
    }


def use_record(cache: "CloudCache", entry: "FileEntry", *, streamed: bool = False) -> dict[str, Any]:
    """The record of one file use of the cache's loaded manifest."""
    return entry_record(cache.manifest, entry, streamed=streamed)


def note_used(cache: "CloudCache", entry: "FileEntry", *, streamed: bool = False) -> None:
    """Record that ``entry`` of the loaded manifest was used (called by ``ensure`` and by streaming).

    A file both streamed and later downloaded is recorded as downloaded (verified).
    """
    manifest = cache.manifest
    key = (manifest.name or manifest.version, entry.relative_path)
    if not cache.usage.wants(key, streamed=streamed):
        return  # already recorded at least as strongly
    record = use_record(cache, entry, streamed=streamed)
    cache.usage.add(key, record)
    if cache.usage_log:
        _append_log(cache, Path(cache.usage_log), record)


def _append_log(cache: "CloudCache", path: Path, record: dict[str, Any]) -> None:
    line = dict(record)
    line["project"] = cache.project
    line["manifest_blake2b"] = manifest_blake2b(cache, cache.manifest)
    line["host"] = socket.gethostname()
    line["pid"] = os.getpid()
    line["time"] = time.time()
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides
        try:
            os.write(fd, data)  # one write per line: appends from many processes do not interleave
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot append to the usage log %s: %s", path, exc)


def build_lock(
    project: str,
    files: Iterable[dict[str, Any]],
    manifests: dict[str, dict[str, Any]],
    *,
    current: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Assemble a lock document from file records and manifest records.

    Parameters
    ----------
    project
        The project name.
    files
        File records as made by :func:`use_record`.
    manifests
        ``{manifest name: {"name", "version", "blake2b"}}``.
    current
        The name of the manifest to put under ``"manifest"`` (else the newest used).
    source
        Where files came from, for people (e.g. the remote's description).
    """

    rows = sorted(files, key=lambda r: (r.get("manifest") or "", r["section"] != "metadata", r["path"]))
    names = sort_manifest_names(list(manifests))
    names += [n for n in manifests if n not in names]
    chosen = current if current in manifests else (names[-1] if names else None)
    return {
        "releasecache_lock": LOCK_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "releasecache_version": __version__,
        "project": project,
        "source": source,
        "manifest": manifests.get(chosen) if chosen else None,
        "manifests": [manifests[n] for n in names],
        "files": rows,
    }


def cache_lock(cache: "CloudCache") -> dict[str, Any]:
    """The lock of everything ``cache`` used in this process (see :meth:`CloudCache.write_record`)."""
    files = cache.usage.records()
    manifests: dict[str, dict[str, Any]] = {}
    loaded = cache.loaded_manifest
    seen = {r["manifest"] for r in files}
    if loaded is not None:
        seen.add(loaded.name)
    for name in seen:
        if name is None:
            continue
        manifest = loaded if loaded is not None and loaded.name == name else cache.get_manifest(name)
        manifests[name] = {"name": name, "version": manifest.version, "blake2b": manifest_blake2b(cache, manifest)}
    source = cache.remote.describe() if cache.remote is not None else f"offline cache {cache.store.root}"
    return build_lock(cache.project, files, manifests, current=cache.current_manifest(), source=source)


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a usage log (JSON lines); a torn last line is skipped with a warning."""
    out: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise StorageError(exc.errno or 0, f"cannot read usage log {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("usage log %s line %d is not JSON; skipped", path, number)
            continue
        if isinstance(record, dict) and {"path", "file_hash", "manifest"} <= record.keys():
            out.append(record)
    return out


def lock_from_log(path: str | os.PathLike[str], *, project: str | None = None) -> dict[str, Any]:
    """A lock from a usage log: one entry per (manifest, path); verified use wins over streamed."""
    records = read_log(path)
    if project is not None:
        records = [r for r in records if r.get("project") == project]
    files: dict[tuple[str, str], dict[str, Any]] = {}
    manifests: dict[str, dict[str, Any]] = {}
    projects = {r.get("project") for r in records} - {None}
    if project is None:
        if len(projects) > 1:
            raise ManifestParseError(f"usage log {path} mixes projects {sorted(projects)}; choose one")
        project = next(iter(projects), "")
    last_manifest = None
    for r in records:
        key = (r["manifest"], r["path"])
        if key not in files or (files[key].get("streamed") and not r.get("streamed")):
            files[key] = {k: r.get(k) for k in
                          ("manifest", "version", "section", "name", "path", "file_hash", "version_id", "url",
                           "streamed")}
        manifests.setdefault(r["manifest"], {"name": r["manifest"], "version": r.get("version"),
                                             "blake2b": r.get("manifest_blake2b")})
        last_manifest = r["manifest"]
    return build_lock(project, files.values(), manifests, current=last_manifest, source=f"usage log {path}")


def write_lock(lock: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a lock document as indented JSON (atomically)."""

    out = Path(path)
    try:
        atomic_write(out, (json.dumps(lock, indent=2) + "\n").encode())
    except OSError as exc:
        raise StorageError(exc.errno or 0, f"cannot write the lock {out}: {exc.strerror or exc}") from None
    return out


__all__ = ["LOCK_FORMAT", "USAGE_LOG_ENV", "build_lock", "cache_lock", "entry_record", "forget_manifest_hash",
           "lock_from_log", "manifest_blake2b", "note_used", "read_log", "stored_manifest_hash", "use_record",
           "write_lock"]
