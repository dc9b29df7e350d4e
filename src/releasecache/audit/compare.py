"""Compare two release versions down to the rows and NWB objects: :class:`AuditDiff`.

:func:`audit_manifests` (or ``releasecache diff A B --rows`` / ``--file PATH``)
returns the familiar :class:`~releasecache.diff.ManifestDiff` (created, deleted,
changed, renamed files) with content diffs available lazily:

>>> diff = audit_manifests(cache, "0.1.0", "0.2.0")           # doctest: +SKIP
>>> diff.tables["units"].column_changes["amplitude"]           # doctest: +SKIP
>>> diff.files["behavior_ecephys_sessions/.../ecephys_session_1044385384.nwb"]   # doctest: +SKIP
>>> print(diff)       # each computed content diff is summarised under its file  # doctest: +SKIP

A content diff needs both versions of the file. Files already in the cache are
read there (offline is fine); missing ones are fetched into the cache, verified,
after a warning that says which files and how many bytes (:meth:`AuditDiff.fetch_plan`
tells beforehand). NWB files may instead be streamed from the server at both
pinned versions (``stream=True``), which writes nothing and reads only what the
comparison needs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..errors import OfflineError, UnknownFileError
from ..manifest import Manifest, match_manifest_name
from ..manifest.diff import Change, ManifestDiff, compare_manifests
from ..transfer.stream import RemoteFile
from ..utils import human_bytes
from .nwb import NwbDiff, diff_nwb
from .rows import TableDiff, diff_tables

if TYPE_CHECKING:
    from ..cache import CloudCache
    from ..manifest import FileEntry

log = logging.getLogger("releasecache")


@dataclass
class PlannedFetch:
    """One file a content diff needs that is not in the cache yet."""

    version: str
    path: str
    size: int | None
    entry: "FileEntry"

    def __str__(self) -> str:
        return f"{self.path} ({self.version}, {'size unknown' if self.size is None else human_bytes(self.size)})"


@dataclass
class FetchPlan:
    """What computing some content diffs would download."""

    fetches: list[PlannedFetch]

    @property
    def total(self) -> int:
        """Bytes to download (files of unknown size count 0)."""
        return sum(f.size or 0 for f in self.fetches)

    def __bool__(self) -> bool:
        return bool(self.fetches)

    def summary(self) -> str:
        """``fetching 2 files (1.2 MB): units.csv (0.1.0, 600 kB), ...``."""
        if not self.fetches:
            return "nothing to fetch: both versions of every file are in the cache"
        return (f"fetching {len(self.fetches)} files ({human_bytes(self.total)}) for the content diff: "
                + ", ".join(str(f) for f in self.fetches))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"files": [{"version": f.version, "path": f.path, "size": f.size} for f in self.fetches],
                "total": self.total}


class _LazyDiffs(Mapping):
    """A mapping whose values are computed (and kept) on first access."""

    def __init__(self, keys: dict[str, Change], compute: Any) -> None:
        self._keys = keys
        self._compute = compute
        self._done: dict[str, Any] = {}

    def _key(self, key: str) -> str:
        if key in self._keys:
            return key
        for name, change in self._keys.items():
            if key in (change.path, change.path.rsplit("/", 1)[-1], change.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]):
                return name
        raise KeyError(key)

    def __getitem__(self, key: str) -> Any:
        name = self._key(key)
        if name not in self._done:
            self._done[name] = self._compute(self._keys[name])
        return self._done[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def computed(self) -> dict[str, Any]:
        """The values computed so far."""
        return dict(self._done)


class AuditDiff(ManifestDiff):
    """A :class:`~releasecache.diff.ManifestDiff` whose changed files can be opened up.

    Attributes
    ----------
    tables
        ``{metadata name: TableDiff}`` for every changed metadata CSV, computed on first access.
    files
        ``{path in release: NwbDiff}`` for every changed ``.nwb`` data file, computed
        on first access (from the cache, fetching what is missing).
    """

    def __new__(cls, base: ManifestDiff, cache: "CloudCache", old: Manifest, new: Manifest) -> "AuditDiff":
        # a ManifestDiff is a str: its text is fixed here, from the base diff
        return super().__new__(cls, base.old_version, base.new_version, base.changes,
                               old_name=base.old_name, new_name=base.new_name)

    def __init__(self, base: ManifestDiff, cache: "CloudCache", old: Manifest, new: Manifest) -> None:
        super().__init__(base.old_version, base.new_version, list(base.changes), dict(base.details),
                         old_name=base.old_name, new_name=base.new_name)
        #: Called with the fetch plan's summary before missing files are downloaded.
        self.announce: Callable[[str], None] = log.warning
        self.cache = cache
        self.old_manifest = old
        self.new_manifest = new
        self.tables: _LazyDiffs = _LazyDiffs(
            {c.file_id or c.path: c for c in self.changed if c.section == "metadata" and c.path.endswith(".csv")},
            self._table_diff)
        self.files: _LazyDiffs = _LazyDiffs(
            {c.path: c for c in self.changed if c.section == "data" and c.path.endswith(".nwb")},
            lambda change: self.file_diff(change.path))

    # -- the two versions of a file ------------------------------------------------------

    def _entries(self, change: Change) -> tuple["FileEntry", "FileEntry"]:
        return self.old_manifest.by_relative_path()[change.path], self.new_manifest.by_relative_path()[change.path]

    def _change(self, path: str, section: str | None = None) -> Change:
        for change in self.changed:
            if (section is None or change.section == section) and path in (
                    change.path, change.file_id, change.path.rsplit("/", 1)[-1],
                    change.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]):
                return change
        known = ", ".join(c.path for c in self.changed if section is None or c.section == section) or "none"
        raise UnknownFileError(f"{path!r} did not change from {self.old_version} to {self.new_version} "
                               f"(changed files: {known})")

    def fetch_plan(self, tables: Iterable[str] | bool = False, files: Iterable[str] = ()) -> FetchPlan:
        """What :meth:`compute` (or accessing ``tables`` / ``files``) would download.

        Sizes come from the manifest, else from one HEAD request per file.
        """
        changes = self._selected(tables, files)
        fetches: list[PlannedFetch] = []
        for change in changes:
            for version, entry in zip((self.old_version, self.new_version), self._entries(change)):
                if self.cache.store.find_blob(entry.file_hash) is None:
                    fetches.append(PlannedFetch(version, entry.relative_path, self._size(entry), entry))
        return FetchPlan(fetches)

    def _size(self, entry: "FileEntry") -> int | None:
        if entry.size is not None or self.cache.remote is None:
            return entry.size
        try:
            return self.cache.remote.stat(entry.location)
        except Exception as exc:  # a size is only for the announcement
            log.debug("no size for %s: %s", entry.relative_path, exc)
            return None

    def _local(self, entries: Iterable["FileEntry"]) -> list[Path]:
        """Both files in the cache, fetching (after saying so) what is missing."""
        entries = list(entries)
        missing = [e for e in entries if self.cache.store.find_blob(e.file_hash) is None]
        if missing:
            if self.cache.remote is None:
                raise OfflineError("the content diff needs files this offline cache does not hold: "
                                   + ", ".join(e.relative_path for e in missing))
            plan = FetchPlan([PlannedFetch(self._version_of(e), e.relative_path, self._size(e), e) for e in missing])
            self.announce(plan.summary())
            for entry in missing:
                self.cache.transfer.fetch(self.cache.remote, entry)
        paths = []
        for entry in entries:
            blob = self.cache.store.find_blob(entry.file_hash)
            assert blob is not None
            paths.append(blob)
        return paths

    def _version_of(self, entry: "FileEntry") -> str:
        old = self.old_manifest.by_relative_path().get(entry.relative_path)
        return self.old_version if old is not None and old.file_hash == entry.file_hash else self.new_version

    # -- content diffs ---------------------------------------------------------------------

    def _table_diff(self, change: Change) -> TableDiff:
        old_path, new_path = self._local(self._entries(change))
        name = change.file_id or Path(change.path).stem
        result = diff_tables(old_path, new_path, name=name, old_version=self.old_version,
                             new_version=self.new_version, path=change.path)
        self.details[change.path] = result
        return result

    def table_diff(self, name: str) -> TableDiff:
        """The row diff of one changed metadata CSV (``units``, ``units.csv`` or its path)."""
        change = self._change(name, "metadata")
        return self.tables[change.file_id or change.path]

    def file_diff(self, path: str, *, stream: bool = False, paths: Iterable[str] | None = None,
                  compare_values: bool = True) -> NwbDiff:
        """The structural diff of one changed NWB data file.

        Parameters
        ----------
        path
            Its path in the release (or file id, or file name).
        stream
            Read both versions from the server at their pinned version ids
            instead of the cache (nothing is written; only what the comparison
            needs is fetched).
        paths
            Only these NWB paths (``["units"]``).
        compare_values
            Also compare dataset values (by chunked hashing).
        """
        change = self._change(path, "data")
        old_entry, new_entry = self._entries(change)
        options = dict(paths=paths, compare_values=compare_values, path=change.path, old_version=self.old_version,
                       new_version=self.new_version)
        if stream:
            if self.cache.remote is None:
                raise OfflineError(f"cannot stream {change.path}: this cache is offline")
            with RemoteFile(self.cache.remote, old_entry.location, size=old_entry.size, name=change.path) as a, \
                    RemoteFile(self.cache.remote, new_entry.location, size=new_entry.size, name=change.path) as b:
                result = diff_nwb(a, b, **options)
        else:
            old_path, new_path = self._local([old_entry, new_entry])
            result = diff_nwb(old_path, new_path, **options)
        if paths is None and compare_values and not stream:
            self.files._done[change.path] = result
        self.details[change.path] = result
        return result

    def _selected(self, tables: Iterable[str] | bool, files: Iterable[str]) -> list[Change]:
        chosen: list[Change] = []
        if tables is True:
            chosen += [c for c in self.changed if c.section == "metadata" and c.path.endswith(".csv")]
        elif tables:
            chosen += [self._change(t, "metadata") for t in tables]  # type: ignore[union-attr]
        chosen += [self._change(f, "data") for f in files]
        return list(dict.fromkeys(chosen))

    def compute(self, tables: Iterable[str] | bool = True, files: Iterable[str] = (), *,
                stream: bool = False) -> "AuditDiff":
        """Compute the row diffs of ``tables`` (True: every changed CSV) and the NWB diffs of ``files``.

        Returns self, whose reports now include them.
        """
        for change in self._selected(tables, []):
            self.tables[change.file_id or change.path]
        for change in self._selected(False, files):
            self.file_diff(change.path, stream=stream)
        return self


def _name(cache: "CloudCache", spec: str) -> str:
    if spec.endswith(".json"):
        return spec
    return match_manifest_name(spec, cache.known_manifest_names()) or spec


def audit_manifests(cache: "CloudCache", old: "str | Manifest", new: "str | Manifest") -> AuditDiff:
    """Compare two manifests of ``cache``'s release; content diffs available lazily (see :class:`AuditDiff`).

    Parameters
    ----------
    cache
        Where the two versions' files are (or will be fetched to).
    old, new
        Manifests, manifest names, or versions (``0.4.0``) known to ``cache``.
    """
    a = old if isinstance(old, Manifest) else cache.get_manifest(_name(cache, old))
    b = new if isinstance(new, Manifest) else cache.get_manifest(_name(cache, new))
    return AuditDiff(compare_manifests(a, b), cache, a, b)


__all__ = ["AuditDiff", "FetchPlan", "PlannedFetch", "audit_manifests"]
