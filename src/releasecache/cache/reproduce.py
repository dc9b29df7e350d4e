"""Reading a reproducibility lock back, checking it against a cache and the server, and reproducing it.

The lock's format and how it is written are in :mod:`releasecache.cache.record`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    IntegrityError,
    ManifestParseError,
    OfflineError,
    ReleaseCacheError,
    RemoteNotFoundError,
    StorageError,
)
from ..manifest import FileEntry, parse_s3_url
from ..utils import hash_file
from .record import LOCK_FORMAT, forget_manifest_hash, manifest_blake2b, stored_manifest_hash

if TYPE_CHECKING:
    from ..manifest import Manifest
    from .cloud import CloudCache

log = logging.getLogger("releasecache")

#: Keys every file record of a lock must have.
FILE_KEYS = ("manifest", "path", "file_hash", "version_id", "url")


def read_lock(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a lock written by :func:`write_lock` (or by ``releasecache record``).

    Raises
    ------
    ManifestParseError
        If the file is not JSON, not a lock, or a file record lacks a key.
    StorageError
        If the file cannot be read.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ManifestParseError(f"no record {path}") from None
    except OSError as exc:
        raise StorageError(exc.errno or 0, f"cannot read the record {path}: {exc.strerror}") from None
    try:
        lock = json.loads(text)
    except ValueError as exc:
        raise ManifestParseError(f"record {path} is not JSON: {exc}") from None
    if not isinstance(lock, dict) or "releasecache_lock" not in lock or not isinstance(lock.get("files"), list):
        raise ManifestParseError(f"{path} is not a releasecache record (no 'releasecache_lock' and 'files')")
    if lock["releasecache_lock"] != LOCK_FORMAT:
        raise ManifestParseError(f"record {path} has format {lock['releasecache_lock']!r}; this version reads "
                                 f"{LOCK_FORMAT}")
    for number, record in enumerate(lock["files"], 1):
        missing = [k for k in FILE_KEYS if not isinstance(record, dict) or not record.get(k)]
        if missing and missing != ["version_id"]:
            raise ManifestParseError(f"record {path}: file {number} lacks {', '.join(missing)}")
    return lock


class RecordCheck:
    """What :func:`check_lock` found: per file, whether the cache holds it and the server still serves it.

    Attributes
    ----------
    files
        One dict per file record: the record's ``manifest``, ``path``, ``file_hash``,
        ``version_id`` plus ``cache`` (``"ok"``, ``"missing"``, ``"corrupt"``) and
        ``server`` (``"ok"``, ``"gone"``, ``"error: ..."``, or None when not asked).
    manifests
        One dict per manifest: ``name``, ``blake2b`` (recorded), ``found`` (the blake2b
        of the copy the cache holds or fetched, None if none) and ``ok``.
    """

    def __init__(self, files: list[dict[str, Any]], manifests: list[dict[str, Any]]) -> None:
        self.files = files
        self.manifests = manifests

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Files not in the cache (or corrupt there)."""
        return [f for f in self.files if f["cache"] != "ok"]

    @property
    def gone(self) -> list[dict[str, Any]]:
        """Files the server no longer serves at the recorded version id (or could not be asked)."""
        return [f for f in self.files if f["server"] not in (None, "ok")]

    @property
    def manifest_mismatches(self) -> list[dict[str, Any]]:
        """Manifests whose bytes differ from the recorded blake2b."""
        return [m for m in self.manifests if not m["ok"] and m["found"] is not None]

    @property
    def missing_manifests(self) -> list[dict[str, Any]]:
        """Manifests neither in the cache nor (when asked) on the server."""
        return [m for m in self.manifests if m["found"] is None]

    @property
    def ok(self) -> bool:
        """True if every file and manifest checked out."""
        return not (self.missing or self.gone or self.manifest_mismatches or self.missing_manifests)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"ok": self.ok, "files": self.files, "manifests": self.manifests,
                "missing": [f["path"] for f in self.missing], "gone": [f["path"] for f in self.gone]}

    def summary(self) -> str:
        """A report for people: totals, then every problem."""
        server = [f for f in self.files if f["server"] is not None]
        lines = [f"{len(self.files)} files recorded: {len(self.files) - len(self.missing)} in the cache with the "
                 f"recorded hash" + (f", {len(server) - len(self.gone)} of {len(server)} retrievable from the server "
                                     "at the recorded version id" if server else " (server not asked)")]
        for m in self.manifest_mismatches + self.missing_manifests:
            lines.append(f"  manifest {m['name']}: " + ("not found" if m["found"] is None else
                         f"blake2b {m['found'][:16]}… differs from the recorded {str(m['blake2b'])[:16]}…"))
        for f in self.missing:
            lines.append(f"  {f['cache']:<8} in cache: {f['path']} ({f['manifest']})")
        for f in self.gone:
            lines.append(f"  {f['server']:<8} on server: {f['path']} version {f['version_id']}")
        lines.append("record reproduces" if self.ok else "record does NOT reproduce from here")
        return "\n".join(lines)


def _lock_entry(record: dict[str, Any]) -> FileEntry:
    """A manifest entry rebuilt from a lock's file record (for checks that need its S3 location)."""
    bucket, key = parse_s3_url(record["url"])
    return FileEntry(record.get("name") or record["path"], record["url"], record.get("version_id") or "",
                     record["file_hash"], bucket, key, record["path"])


def check_lock(cache: "CloudCache", lock: dict[str, Any], *, server: bool = True, full: bool = False) -> RecordCheck:
    """Check a lock against the cache and (unless ``server=False`` or offline) against the server.

    Parameters
    ----------
    cache
        The cache to look in.
    lock
        A lock document (:func:`read_lock`).
    server
        Also ask the server whether each recorded version id is still retrievable
        (one HEAD request per file) and compare the manifests' bytes there.
    full
        Re-hash every cached file instead of trusting the store (where a blob's
        name is its verified hash).
    """
    ask = server and cache.remote is not None
    files: list[dict[str, Any]] = []
    for record in lock["files"]:
        row = {k: record.get(k) for k in ("manifest", "version", "section", "path", "file_hash", "version_id")}
        blob = cache.store.find_blob(record["file_hash"])
        if blob is None:
            row["cache"] = "missing"
        elif full and hash_file(blob) != record["file_hash"]:
            row["cache"] = "corrupt"
        else:
            row["cache"] = "ok"
        row["server"] = None
        if ask:
            try:
                cache.remote.stat(_lock_entry(record).location)
                row["server"] = "ok"
            except ReleaseCacheError as exc:
                row["server"] = "gone" if isinstance(exc, RemoteNotFoundError) else f"error: {exc}"
        files.append(row)
    manifests: list[dict[str, Any]] = []
    for m in lock.get("manifests") or []:
        found = stored_manifest_hash(cache, m["name"], fetch=ask)
        manifests.append({"name": m["name"], "blake2b": m.get("blake2b"), "found": found,
                          "ok": found is not None and (m.get("blake2b") in (None, found))})
    return RecordCheck(files, manifests)


def fill_from_lock(cache: "CloudCache", lock: dict[str, Any], *, progress: bool = False) -> list[Path]:
    """Download exactly the files a lock lists into ``cache``, verified, each under its version's view.

    Every manifest of the lock is fetched (if needed) and must have the recorded
    blake2b; every file must be listed in its manifest with the recorded hash and
    version id. Only then is anything downloaded, so a record that does not match
    its release changes nothing.

    Returns
    -------
    list of pathlib.Path
        The view path of every recorded file, in the lock's order.

    Raises
    ------
    IntegrityError
        A manifest's bytes or a file's hash / version id differ from the record.
    """
    manifests: dict[str, "Manifest"] = {}
    for m in lock.get("manifests") or []:
        manifest = cache.get_manifest(m["name"])
        digest = manifest_blake2b(cache, manifest)
        forget_manifest_hash(cache, m["name"])
        if m.get("blake2b") and digest != m["blake2b"]:
            raise IntegrityError(f"manifest {m['name']} has blake2b {str(digest)[:16]}…, the record says "
                                 f"{m['blake2b'][:16]}…: the release listing changed since the record was written")
        manifests[m["name"]] = manifest
    plan: list[tuple["Manifest", "FileEntry"]] = []
    for record in lock["files"]:
        manifest = manifests.get(record["manifest"])
        if manifest is None:
            manifest = manifests[record["manifest"]] = cache.get_manifest(record["manifest"])
        entry = manifest.by_relative_path().get(record["path"])
        if entry is None or entry.file_hash != record["file_hash"] or \
                (record.get("version_id") or "") != (entry.version_id or ""):
            raise IntegrityError(f"{record['path']}: manifest {record['manifest']} lists "
                                 + ("no such file" if entry is None else
                                    f"hash {entry.file_hash[:16]}… version {entry.version_id}")
                                 + f", the record says hash {record['file_hash'][:16]}… version "
                                   f"{record.get('version_id')}")
        plan.append((manifest, entry))
    paths: list[Path] = []
    for manifest, entry in plan:
        if cache.remote is not None:
            cache.transfer.fetch(cache.remote, entry)
        elif not cache.store.has_blob(entry.file_hash):
            raise OfflineError(f"{entry.relative_path} is not in the cache {cache.store.root} and it is offline")
        paths.append(cache.store.link_view(manifest.view_dir_name, entry.relative_path, entry.file_hash))
    return paths


__all__ = ["FILE_KEYS", "RecordCheck", "check_lock", "fill_from_lock", "read_lock"]
