"""Parse and validate one release manifest.

A manifest is untrusted input: it names the paths that end up in the cache
directory. Everything is checked before anything is written: JSON shape and
types, duplicate keys, hash format, URL style, and that every path stays
inside the cache directory.
"""

from __future__ import annotations

import gc
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterator, Mapping

import semver

from ..errors import (
    ManifestError,
    ManifestParseError,
    ManifestValidationError,
    UnsafePathError,
)
from ..utils import short_repr
from .names import parse_semver
from .paths import check_relative_path
from .urls import S3Location, parse_plain_s3_urls, parse_s3_url

#: Largest manifest accepted, in bytes. The real VBN manifest (4,298 entries) is ~1.5 MB.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

REQUIRED_KEYS = (
    "project_name",
    "manifest_version",
    "metadata_file_id_column_name",
    "data_pipeline",
    "metadata_files",
    "data_files",
)
ENTRY_KEYS = ("url", "version_id", "file_hash")

_HASH_RE = re.compile(r"^[0-9a-f]{128}\Z")  # \Z, not $: "$" also matches before a final newline
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\Z")
# S3 version ids are short URL-safe ASCII; anything else would only fail later, in a request.
_VERSION_ID_RE = re.compile(r"^[\x21-\x7e]*\Z")
# The same rules over many values joined by "\n" (no class below admits "\n": when no value holds
# one, a full match means every single value matches).
_NAMES_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}(?:\n[A-Za-z0-9][A-Za-z0-9._-]{0,200})*")
_VERSION_IDS_RE = re.compile(r"[\x21-\x7e]{0,1024}(?:\n[\x21-\x7e]{0,1024})*")
_ENTRY_STRINGS = itemgetter(*ENTRY_KEYS)
@dataclass(frozen=True)
class FileEntry:
    """One file of a release as the manifest pins it.

    Attributes
    ----------
    name
        The manifest key: a metadata name (``units``) or a data file id (``"870"``).
    url, version_id, file_hash
        As written in the manifest. ``file_hash`` is a 128-hex blake2b digest.
    bucket, key
        The object's S3 location, parsed from ``url``.
    relative_path
        The path in the release: the key minus its first segment (the project
        prefix), e.g. ``project_metadata/units.csv``; this is also the path under
        the version view.
    size
        Bytes, if the manifest records it (an optional extension key ``size``).
    """

    name: str
    url: str
    version_id: str
    file_hash: str
    bucket: str
    key: str
    relative_path: str
    size: int | None = None

    @property
    def location(self) -> S3Location:
        """The pinned S3 location of this file."""
        return S3Location(self.bucket, self.key, self.version_id or None)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen = dict(pairs)  # called for every JSON object: let C build it, look closer only if keys collapsed
    if len(seen) != len(pairs):
        keys: set[str] = set()
        for key, _ in pairs:
            if key in keys:
                raise ManifestValidationError(f"duplicate JSON key {short_repr(key)}")
            keys.add(key)
    return seen


class _Where:
    """Names an entry in error messages; built only when a message needs it (entries are many)."""

    __slots__ = ("source", "section", "name")

    def __init__(self, source: str, section: str, name: Any) -> None:
        self.source, self.section, self.name = source, section, name

    def __str__(self) -> str:
        return f"{self.source}: {self.section}[{short_repr(self.name)}]"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _entry(section: str, name: Any, raw: Any, source: str) -> FileEntry:
    where = _Where(source, section, name)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ManifestValidationError(f"{where}: key must be a short name of letters, digits, '.', '_' or '-'")
    if not isinstance(raw, dict):
        raise ManifestValidationError(f"{where}: must be an object with {', '.join(ENTRY_KEYS)}")
    missing = [k for k in ENTRY_KEYS if k not in raw]
    if missing:
        raise ManifestValidationError(f"{where}: missing {', '.join(missing)}")
    for k in ENTRY_KEYS:
        if not isinstance(raw[k], str):
            raise ManifestValidationError(f"{where}: {k} must be a string, got {type(raw[k]).__name__}")
    file_hash = raw["file_hash"]
    if not _HASH_RE.match(file_hash):
        raise ManifestValidationError(f"{where}: file_hash must be 128 lowercase hex characters (blake2b)")
    version_id = raw["version_id"]
    if len(version_id) > 1024 or not _VERSION_ID_RE.match(version_id):
        raise ManifestValidationError(f"{where}: version_id is not a plausible S3 version id")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 1 << 53):
        raise ManifestValidationError(f"{where}: size must be a non-negative integer below 2**53")
    try:
        bucket, key = parse_s3_url(raw["url"])
    except UnsafePathError as exc:
        raise UnsafePathError(f"{where}: {exc}", **exc.context) from None
    segments = key.split("/", 1)
    if len(segments) < 2:
        raise UnsafePathError(f"{where}: key {short_repr(key)} has no path below its project prefix",
                              url=raw["url"], key=key)
    return FileEntry(
        name=name,
        url=raw["url"],
        version_id=version_id,
        file_hash=file_hash,
        bucket=bucket,
        key=key,
        relative_path=segments[1],
        size=size,
    )


def _plain_entries(entries: dict[Any, Any]) -> dict[str, FileEntry] | None:
    """Every entry of a section, validated with one C-level scan per rule over many at once.

    Accepts only sections whose every entry passes every check of :func:`_entry` (with plain
    URLs, see :func:`~releasecache.manifest.urls.parse_plain_s3_urls`), and then builds the very
    entries it would. None means "validate entry by entry" (something is unusual or wrong, and
    :func:`_entry` says exactly what). A manifest holds up to 100,000 entries; they are taken in
    chunks whose joined strings stay in the CPU's caches, so the time grows linearly.
    """
    out: dict[str, FileEntry] = {}
    items = list(entries.items())
    for start in range(0, len(items), _CHUNK):
        if not _plain_chunk(items[start:start + _CHUNK], out):
            return None
    return out


_CHUNK = 2048


def _each_matches(pattern: re.Pattern[str], values: tuple[str, ...]) -> bool:
    """True if every value matches ``pattern`` (a rule repeated over "\n"-joined values)."""
    joined = "\n".join(values)
    return joined.count("\n") == len(values) - 1 and pattern.fullmatch(joined) is not None  # no value holds "\n"


def _plain_chunk(items: list[tuple[Any, Any]], out: dict[str, FileEntry]) -> bool:
    """Validate one chunk of a section's ``(name, entry)`` pairs and add their entries to ``out``."""
    names, values = zip(*items)
    if set(map(type, values)) != {dict}:
        return False
    try:
        urls, version_ids, hashes = zip(*map(_ENTRY_STRINGS, values))
        ok = (_each_matches(_NAMES_RE, names) and _each_matches(_VERSION_IDS_RE, version_ids)
              and set(map(len, hashes)) == {128}
              and not "".join(hashes).encode("ascii").translate(None, b"0123456789abcdef"))
    except (KeyError, TypeError, UnicodeEncodeError):  # a missing key, a value that is not a string
        return False
    if not ok:
        return False
    sizes = [v.get("size") for v in values]
    if sizes.count(None) != len(sizes) and not all(
            s is None or (type(s) is int and 0 <= s < 1 << 53) for s in sizes):
        return False
    located = parse_plain_s3_urls(list(urls))
    if located is None:
        return False
    new = object.__new__  # frozen: fill __dict__ at once, not one object.__setattr__ per field
    for name, url, version_id, file_hash, (bucket, key, relative_path), size in zip(
            names, urls, version_ids, hashes, located, sizes):
        entry = new(FileEntry)
        entry.__dict__.update(name=name, url=url, version_id=version_id, file_hash=file_hash, bucket=bucket,
                              key=key, relative_path=relative_path, size=size)
        out[name] = entry
    return True


def _plain_sections(raw: dict[str, Any]) -> dict[str, dict[str, FileEntry]] | None:
    """Both sections through :func:`_plain_entries`, if both are plain and no two entries share a path."""
    if not isinstance(raw["metadata_files"], dict) or not isinstance(raw["data_files"], dict):
        return None
    metadata = _plain_entries(raw["metadata_files"])
    data = _plain_entries(raw["data_files"]) if metadata is not None else None
    if data is None or metadata is None:
        return None
    paths = {e.relative_path for e in metadata.values()}
    paths.update(e.relative_path for e in data.values())
    if len(paths) != len(metadata) + len(data):
        return None  # two entries share a path: the entry-by-entry check names them
    return {"metadata_files": metadata, "data_files": data}


def _sections_one_by_one(raw: dict[str, Any], source: str) -> dict[str, dict[str, FileEntry]]:
    """Both sections, validated entry by entry (raises on the first problem, naming it)."""
    sections: dict[str, dict[str, FileEntry]] = {}
    seen_paths: dict[str, tuple[str, str]] = {}
    for section in ("metadata_files", "data_files"):
        entries = raw[section]
        if not isinstance(entries, dict):
            raise ManifestValidationError(f"{source}: {section} must be an object")
        parsed: dict[str, FileEntry] = {}
        for key, value in entries.items():
            entry = _entry(section, key, value, source)
            other = seen_paths.get(entry.relative_path)
            if other is not None:
                raise ManifestValidationError(
                    f"{source}: {section}[{short_repr(key)}] and {other[0]}[{short_repr(other[1])}] both map to "
                    f"{short_repr(entry.relative_path)}"
                )
            seen_paths[entry.relative_path] = (section, key)
            parsed[key] = entry
        sections[section] = parsed
    return sections


_no_gc_lock = threading.Lock()
_no_gc_depth = 0
_gc_was_enabled = False


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a manifest is parsed (restored after, also on error).

    Parsing allocates a few objects per entry and frees none, so each collection rescans a heap
    that keeps growing: at 100,000 entries that made parsing worse than linear. Nested and
    concurrent uses are counted, so the collector comes back only when the last one ends.
    """
    global _no_gc_depth, _gc_was_enabled
    with _no_gc_lock:
        if _no_gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _no_gc_depth += 1
    try:
        yield
    finally:
        with _no_gc_lock:
            _no_gc_depth -= 1
            if _no_gc_depth == 0 and _gc_was_enabled:
                gc.enable()


@dataclass(frozen=True)
class Manifest:
    """One version of a release: its metadata files and data files.

    Build one with :meth:`from_path`, :meth:`from_bytes` or :meth:`from_dict`;
    all of them validate fully and raise a :class:`~releasecache.errors.ManifestError`
    subclass on any problem.
    """

    project_name: str
    version: str
    file_id_column: str
    data_pipeline: tuple[Mapping[str, Any], ...]
    metadata_files: Mapping[str, FileEntry]
    data_files: Mapping[str, FileEntry]
    name: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_path(cls, path: str | Path) -> "Manifest":
        """Read and validate a manifest JSON file; its file name becomes :attr:`name`."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise ManifestParseError(f"cannot read manifest {path}: {exc.strerror or exc}",
                                     manifest=str(path)) from None
        return cls.from_bytes(data, name=path.name)

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str | None = None) -> "Manifest":
        """Parse and validate manifest JSON bytes."""
        source = name or "manifest"
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestParseError(f"{source}: larger than {MAX_MANIFEST_BYTES} bytes; refusing to parse",
                                     manifest=name)
        with _no_cyclic_gc():  # decoding allocates a few objects per entry, too
            try:
                raw = json.loads(data, object_pairs_hook=_no_duplicate_keys)
            except ManifestValidationError as exc:
                raise ManifestValidationError(f"{source}: {exc}", manifest=name) from None
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
                raise ManifestParseError(f"{source}: not valid JSON: {exc}", manifest=name) from None
            try:
                return cls.from_dict(raw, name=name)
            except ManifestError as exc:
                raise exc.fill_context(manifest=name)

    @classmethod
    def from_dict(cls, raw: Any, *, name: str | None = None) -> "Manifest":
        """Validate an already-decoded manifest document."""
        source = name or "manifest"
        if not isinstance(raw, dict):
            raise ManifestValidationError(f"{source}: top level must be a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in raw]
        if missing:
            raise ManifestValidationError(f"{source}: missing required key(s) {', '.join(missing)}")
        for key in ("project_name", "manifest_version", "metadata_file_id_column_name"):
            if not isinstance(raw[key], str) or not raw[key]:
                raise ManifestValidationError(f"{source}: {key} must be a non-empty string")
        project = raw["project_name"]
        if not _NAME_RE.match(project):
            raise UnsafePathError(f"{source}: project_name {short_repr(project)} is not a safe directory name")
        version = raw["manifest_version"]
        parse_semver(version, what=f"{source}: manifest_version")
        if not _NAME_RE.match(version):
            raise UnsafePathError(f"{source}: manifest_version {short_repr(version)} is not a safe directory name")
        if name is not None:
            check_relative_path(name, what="manifest name")
            if "/" in name:
                raise UnsafePathError(f"manifest name {short_repr(name)} must be a plain file name")
        pipeline = raw["data_pipeline"]
        if isinstance(pipeline, dict):  # tolerate a single step written as an object
            pipeline = [pipeline]
        if not isinstance(pipeline, list) or not all(isinstance(p, dict) for p in pipeline):
            raise ManifestValidationError(f"{source}: data_pipeline must be a list of objects")
        with _no_cyclic_gc():
            sections = _plain_sections(raw) or _sections_one_by_one(raw, source)
        return cls(
            project_name=project,
            version=version,
            file_id_column=raw["metadata_file_id_column_name"],
            data_pipeline=tuple(pipeline),
            metadata_files=sections["metadata_files"],
            data_files=sections["data_files"],
            name=name,
            raw=raw,
        )

    # -- queries --------------------------------------------------------------

    @property
    def semver(self) -> semver.Version:
        """The manifest version as a :class:`semver.Version`."""
        return semver.Version.parse(self.version)

    @property
    def view_dir_name(self) -> str:
        """Directory of this version's view in the cache: ``<project>-<version>``."""
        return f"{self.project_name}-{self.version}"

    @property
    def metadata_file_names(self) -> list[str]:
        """Names of the metadata files (``units``, ``channels`` ...), sorted."""
        return sorted(self.metadata_files)

    def entries(self) -> Iterator[FileEntry]:
        """Every file of the release: metadata files first, then data files."""
        yield from self.metadata_files.values()
        yield from self.data_files.values()

    def by_relative_path(self) -> dict[str, FileEntry]:
        """Map each path in the release to its entry."""
        return {e.relative_path: e for e in self.entries()}

    def pipeline_version(self, name: str = "AllenSDK") -> str | None:
        """The version of the named pipeline step in ``data_pipeline``, if present."""
        for step in self.data_pipeline:
            if step.get("name") == name:
                return str(step.get("version"))
        return None

    def to_json(self) -> str:
        """The manifest document as JSON text (as it was read)."""
        return json.dumps(self.raw, indent=1, sort_keys=False)


