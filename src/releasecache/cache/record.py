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
-- python analysis.py`` does both around a command.
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
from ..errors import (
    IntegrityError,
    ManifestParseError,
    OfflineError,
    ReleaseCacheError,
    RemoteNotFoundError,
    StorageError,
)
from ..manifest import FileEntry, parse_s3_url, sort_manifest_names
from ..utils import atomic_write, hash_bytes, hash_file

if TYPE_CHECKING:
    from ..manifest import Manifest
    from .cloud import CloudCache

log = logging.getLogger("releasecache")

#: Environment variable naming a usage log that every cache in the process appends to.
USAGE_LOG_ENV = ENV_USAGE_LOG
#: Format number written into every lock as ``releasecache_lock``.
LOCK_FORMAT = 1

_manifest_hashes: dict[tuple[str, str], str | None] = {}


def manifest_blake2b(cache: "CloudCache", manifest: "Manifest") -> str | None:
    """The blake2b of the manifest file as stored in the cache (None if it is not stored).

    The manifest is hashed as the bytes published on the bucket (the cache saves
    them unchanged), so the value can be checked against the remote object.
    """
    name = manifest.name or f"{manifest.project_name}-{manifest.version}"
    key = (str(cache.store.root), name)
    if key in _manifest_hashes:
        return _manifest_hashes[key]
    path = cache.store.manifests_dir / name
    data: bytes | None = None
    try:
        data = path.read_bytes()
    except OSError:
        if cache.remote is not None and manifest.name:
            try:
                data = cache.remote.get_manifest(cache.project, manifest.name)
            except Exception as exc:  # a record must not break the analysis it records
                log.warning("cannot hash manifest %s for the usage record: %s", name, exc)
    digest = hash_bytes(data) if data is not None else None
    _manifest_hashes[key] = digest
    return digest


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




# -- checking and reproducing a lock ------------------------------------------------------------

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
        found = _stored_manifest_hash(cache, m["name"], fetch=ask)
        manifests.append({"name": m["name"], "blake2b": m.get("blake2b"), "found": found,
                          "ok": found is not None and (m.get("blake2b") in (None, found))})
    return RecordCheck(files, manifests)


def _stored_manifest_hash(cache: "CloudCache", name: str, *, fetch: bool) -> str | None:
    path = cache.store.manifests_dir / name
    try:
        return hash_bytes(path.read_bytes())
    except OSError:
        pass
    for layer in cache.store.layers:
        try:
            return hash_bytes((layer / "manifests" / name).read_bytes())
        except OSError:
            continue
    if fetch and cache.remote is not None:
        try:
            return hash_bytes(cache.remote.get_manifest(cache.project, name))
        except Exception as exc:  # reported as "not found"
            log.info("cannot fetch manifest %s: %s", name, exc)
    return None


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
        _manifest_hashes.pop((str(cache.store.root), m["name"]), None)
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


__all__ = ["USAGE_LOG_ENV", "RecordCheck", "build_lock", "cache_lock", "check_lock", "entry_record", "fill_from_lock",
           "lock_from_log", "manifest_blake2b", "note_used", "read_lock",
           "read_log", "use_record", "write_lock"]
