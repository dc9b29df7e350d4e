"""Adopt files someone already has: bring them into the cache without downloading.

Two kinds of directory are understood:

``allensdk``
    An AllenSDK cache directory: ``<project>-<version>/<path in release>``
    trees (files, or AllenSDK's absolute symlinks between versions), the
    manifests it saved next to them, and its ``_downloaded_data.json``
    (``{absolute path: blake2b}``), whose paths are used as extra hints.
``mirror``
    A copy of the bucket, e.g. made with ``aws s3 sync --no-sign-request
    s3://<bucket> DIR`` or a mounted bucket: ``DIR/<project>/<path in release>``
    (``DIR`` may also be the ``<project>`` folder itself).

Nothing is trusted: every candidate file is hashed (blake2b) and adopted only if
its hash equals the manifest's. Adopting copies the file into a temporary file
inside the cache while hashing the copied bytes (one read), or hard-links it and
hashes the link; only then is the blob published (atomically, under the blob's
lock, exactly like a download). Views of every manifest considered are linked
afterwards, so the adopted files appear at their usual paths.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import (
    ManifestError,
    ManifestNotFoundError,
    ReleaseCacheError,
    SourceLayoutError,
    StorageError,
)
from ..manifest import FileEntry, Manifest, match_manifest_name, relpath_within, sort_manifest_names
from ..store.ingest import ingest_file
from ..utils import hash_file, human_bytes as _human

if TYPE_CHECKING:
    from .cloud import CloudCache

log = logging.getLogger("releasecache")

CHUNK = 4 * 1024 * 1024
MODES = ("copy", "hardlink")


@dataclass
class AdoptReport:
    """What :func:`adopt` did (or would do, with ``dry_run``).

    Attributes
    ----------
    layout
        ``"allensdk"`` or ``"mirror"``.
    manifests
        Names of the manifests the files were checked against.
    adopted
        Files brought in: ``{"path", "source", "bytes", "file_hash", "mode"}``.
    present
        Paths whose content the cache already held (nothing to do).
    mismatched
        Candidates whose content does not match the manifest:
        ``{"path", "source", "expected", "actual"}``. They were not adopted.
    missing
        Paths of the manifests with no candidate file in the directory.
    linked
        Version-view links created or refreshed.
    notes
        Messages for people (e.g. a manifest read from a local copy).
    """

    layout: str
    source: str
    manifests: list[str] = field(default_factory=list)
    adopted: list[dict[str, Any]] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    linked: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if no candidate file had the wrong content."""
        return not self.mismatched

    @property
    def bytes_adopted(self) -> int:
        return sum(a["bytes"] for a in self.adopted)

    def summary(self) -> str:
        """A few lines for people."""
        verb = "would adopt" if self.dry_run else "adopted"
        text = (f"{verb} {len(self.adopted)} files ({_human(self.bytes_adopted)}) from {self.source} "
                f"[{self.layout}]; {len(self.present)} already cached, {len(self.mismatched)} mismatched, "
                f"{len(self.missing)} not in the directory; {self.linked} view links")
        for note in self.notes:
            text += f"\n  note: {note}"
        for bad in self.mismatched:
            text += f"\n  MISMATCH {bad['path']}: {bad['source']} has blake2b {bad['actual'][:16]}…, " \
                    f"the manifest says {bad['expected'][:16]}…"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "source": self.source, "manifests": self.manifests,
                "adopted": self.adopted, "present": self.present, "mismatched": self.mismatched,
                "missing": self.missing, "linked": self.linked, "bytes_adopted": self.bytes_adopted,
                "dry_run": self.dry_run, "notes": self.notes}


# -- layout detection -----------------------------------------------------------


def _version_dirs(root: Path, project: str) -> dict[str, Path]:
    pattern = re.compile(rf"^{re.escape(project)}-(?P<v>\d+\.\d+\.\d+\S*)$")
    out = {}
    try:
        for child in root.iterdir():
            match = pattern.match(child.name)
            if match and child.is_dir():
                out[match.group("v")] = child
    except OSError:
        pass
    return out


def detect_layout(directory: str | os.PathLike[str], project: str) -> tuple[str, Path]:
    """Return ``("allensdk", dir)`` or ``("mirror", bucket_root)`` for ``directory``.

    Raises
    ------
    SourceLayoutError
        If the directory is neither.
    """
    root = Path(directory).expanduser().absolute()
    if not root.is_dir():
        raise SourceLayoutError(f"{root} is not a directory", path=str(root))
    if (root / "_downloaded_data.json").is_file() or (root / "_manifest_last_used.txt").is_file() \
            or _version_dirs(root, project):
        return "allensdk", root
    if (root / project).is_dir():
        return "mirror", root
    if root.name == project and any((root / sub).is_dir() for sub in ("project_metadata", "manifests")):
        return "mirror", root.parent
    raise SourceLayoutError(
        f"{root} looks neither like an AllenSDK cache (<project>-<version>/ folders, _downloaded_data.json) "
        f"nor like a copy of the bucket ({project}/ folder) for project {project!r}; check --project",
        path=str(root))


def _local_manifests(layout: str, root: Path, project: str) -> dict[str, Path]:
    """Manifest files found in the directory, by name."""
    folders = [root, root / "manifests"] if layout == "allensdk" else [root / project / "manifests"]
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob("*.json"):
            if path.name.startswith(project) and sort_manifest_names([path.name]):
                found.setdefault(path.name, path)
    return found


# -- hashing and publishing -----------------------------------------------------


class _Adopter:
    def __init__(self, cache: "CloudCache", mode: str, dry_run: bool, progress: Callable[[int], None] | None):
        self.cache = cache
        self.store = cache.store
        self.mode = mode
        self.dry_run = dry_run
        self.progress = progress
        self._hashes: dict[tuple[int, int, int, int], str] = {}
        self._lock = threading.Lock()

    def digest(self, path: Path) -> str:
        """blake2b of a file, remembered by (device, inode, size, mtime) for this run."""
        st = path.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._hashes.get(key)
        if known is None:
            known = hash_file(path)
            if self.progress:
                self.progress(st.st_size)
            with self._lock:
                self._hashes[key] = known
        return known

    def bring_in(self, path: Path, file_hash: str) -> tuple[str, str | None]:
        """Publish ``path`` as blob ``file_hash``; return (outcome, actual hash if mismatched).

        ``outcome`` is ``"adopted:<mode>"``, ``"present"`` or ``"mismatched"``.
        """
        done = ingest_file(self.store, path, file_hash, hardlink=self.mode == "hardlink", tag="adopt",
                           progress=self.progress)
        if done.outcome in ("present", "mismatched"):
            return done.outcome, done.actual if done.outcome == "mismatched" else None
        return f"adopted:{done.outcome}", None


def _candidates_allensdk(root: Path, project: str, manifests: list[Manifest]) -> dict[str, list[Path]]:
    """Candidate paths per file hash in an AllenSDK cache directory."""
    out: dict[str, list[Path]] = {}
    for manifest in manifests:
        view = root / f"{project}-{manifest.version}"
        for entry in manifest.entries():
            out.setdefault(entry.file_hash, []).append(relpath_within(view, entry.relative_path))
    index = root / "_downloaded_data.json"
    if index.is_file():
        try:
            recorded = json.loads(index.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", index, exc)
            recorded = {}
        if isinstance(recorded, dict):
            marker = re.compile(rf"(?:^|/)({re.escape(project)}-\d[^/]*/.+)$")
            for recorded_path, file_hash in recorded.items():
                if not isinstance(recorded_path, str) or file_hash not in out:
                    continue
                paths = [Path(recorded_path)]
                # the directory may have moved since AllenSDK wrote absolute paths: re-root them here
                match = marker.search(recorded_path.replace(os.sep, "/"))
                if match:
                    paths.append(root.joinpath(*match.group(1).split("/")))
                for p in paths:
                    if p not in out[file_hash]:
                        out[file_hash].append(p)
    return out


def _candidates_mirror(root: Path, manifests: list[Manifest]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for manifest in manifests:
        for entry in manifest.entries():
            path = relpath_within(root, entry.key)
            if path not in out.setdefault(entry.file_hash, []):
                out[entry.file_hash].append(path)
    return out


# -- manifests ---------------------------------------------------------------------


def _resolve_names(cache: "CloudCache", wanted: Iterable[str], local: dict[str, Path]) -> list[str]:
    """Map versions (``0.4.0``) or manifest names to manifest names."""
    known = set(local) | set(cache.list_all_downloaded_manifests())
    if cache.remote is not None:
        known |= set(cache.list_manifest_file_names())
    out = []
    for item in wanted:
        name = match_manifest_name(item, known)
        if name is not None:
            out.append(name)
        else:
            raise ManifestNotFoundError(
                f"no manifest for {item!r} of project {cache.project!r}; known: {sorted(known) or 'none'}",
                manifest=str(item))
    return list(dict.fromkeys(out))


def _load(cache: "CloudCache", name: str, local: dict[str, Path], notes: list[str], dry_run: bool) -> Manifest:
    """The manifest: from the cache or the remote when possible, else the directory's validated copy."""
    if cache.remote is not None or (cache.store.manifests_dir / name).is_file():
        manifest = cache.get_manifest(name)
        if name in local:
            try:
                if Manifest.from_path(local[name]).raw != manifest.raw:
                    notes.append(f"the directory's copy of {name} differs from the bucket's; "
                                 "files were checked against the bucket's")
            except ManifestError as exc:
                notes.append(f"the directory's copy of {name} is not a valid manifest ({exc}); ignored")
        return manifest
    data = local[name].read_bytes()
    manifest = Manifest.from_bytes(data, name=name)  # validated before it is kept
    if not dry_run:
        cache.store.write_manifest(name, data)
    notes.append(f"{name} was read from {local[name]} (offline: not checked against the bucket)")
    return manifest


# -- the entry point -----------------------------------------------------------------


def adopt(
    cache: "CloudCache",
    directory: str | os.PathLike[str],
    *,
    manifests: Iterable[str] | None = None,
    mode: str = "copy",
    jobs: int = 4,
    dry_run: bool = False,
    progress: bool = False,
    in_place: bool = False,
) -> AdoptReport:
    """Adopt the files of an AllenSDK cache or a bucket copy into ``cache``; see the module docs.

    Parameters
    ----------
    cache
        The destination cache (online or offline; not read-only).
    directory
        The AllenSDK cache directory, or the bucket copy.
    manifests
        Versions (``"0.4.0"``) or manifest names to check files against. By
        default: for an AllenSDK cache, every ``<project>-<version>`` folder
        present; for a bucket copy, the latest manifest.
    mode
        ``"copy"`` (the source is left untouched) or ``"hardlink"`` (no extra
        disk space; the source files then share their inode with the cache's
        read-only blobs, so they become read-only too and must not be edited;
        falls back to copying across filesystems).
    jobs
        Files hashed at once.
    dry_run
        Hash and report only; write nothing.
    progress
        Show a progress bar of bytes hashed.
    in_place
        ``directory`` is the cache directory itself: adopt the files found at
        its own version paths (what
        :meth:`~releasecache.cache.CloudCache.construct_local_manifest` does).

    Returns
    -------
    AdoptReport
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if cache.store.read_only and not dry_run:
        raise StorageError(errno.EROFS, f"the cache {cache.cache_dir} is read-only; cannot adopt into it")
    given = Path(directory).expanduser().absolute()
    if in_place:
        if given != cache.cache_dir:
            raise SourceLayoutError(f"in_place adopts from the cache directory {cache.cache_dir}, not {given}")
        layout, root = "allensdk", given
    elif given == cache.cache_dir or cache.cache_dir in given.parents or given in cache.cache_dir.parents:
        raise SourceLayoutError(f"{given} overlaps the cache directory {cache.cache_dir}; adopt from elsewhere")
    else:
        layout, root = detect_layout(given, cache.project)
    report = AdoptReport(layout=layout, source=str(root), dry_run=dry_run)
    local = _local_manifests(layout, root, cache.project)
    if manifests is not None:
        names = _resolve_names(cache, list(manifests), local)
    elif layout == "allensdk":
        versions = sorted(_version_dirs(root, cache.project))
        if not versions and in_place:
            versions = []  # nothing downloaded yet: nothing to index
        elif not versions:
            raise SourceLayoutError(f"{root} has no {cache.project}-<version>/ folders to adopt")
        names = _resolve_names(cache, versions, local)
    else:
        pool = set(local)
        if cache.remote is not None:
            pool |= set(cache.list_manifest_file_names())
        ordered = sort_manifest_names(list(pool))
        if not ordered:
            raise ManifestNotFoundError(f"no manifest of {cache.project!r} in {root} or on the remote")
        names = [ordered[-1]]
    loaded = [_load(cache, name, local, report.notes, dry_run) for name in names]
    report.manifests = names
    candidates = (_candidates_allensdk(root, cache.project, loaded) if layout == "allensdk"
                  else _candidates_mirror(root, loaded))
    paths_of: dict[str, list[str]] = {}
    for manifest in loaded:
        for entry in manifest.entries():
            paths_of.setdefault(entry.file_hash, [])
            if entry.relative_path not in paths_of[entry.file_hash]:
                paths_of[entry.file_hash].append(entry.relative_path)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc="adopt", dynamic_ncols=True)
    lock = threading.Lock()

    def tick(n: int) -> None:
        if bar is not None:
            with lock:
                bar.update(n)

    adopter = _Adopter(cache, mode, dry_run, tick if bar is not None else None)

    def one(file_hash: str) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]]]:
        if cache.store.has_blob(file_hash):
            return "present", None, []
        bad: list[dict[str, Any]] = []
        for path in candidates.get(file_hash, []):
            if not path.is_file():
                continue
            if dry_run:
                actual = adopter.digest(path)
                outcome = "adopted:" + mode if actual == file_hash else "mismatched"
            else:
                outcome, actual = adopter.bring_in(path, file_hash)
            if outcome == "present":
                return "present", None, bad
            if outcome == "mismatched":
                bad.append({"source": str(path), "expected": file_hash, "actual": actual})
                continue
            return "adopted", {"source": str(path), "bytes": path.stat().st_size, "file_hash": file_hash,
                               "mode": outcome.split(":", 1)[1]}, bad
        return ("mismatched" if bad else "missing"), None, bad

    try:
        with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="rc-adopt") as pool_:
            results = list(pool_.map(lambda h: (h, one(h)), list(paths_of)))
    finally:
        if bar is not None:
            bar.close()
    for file_hash, (outcome, info, bad) in results:
        paths = paths_of[file_hash]
        for b in bad:
            report.mismatched.append({"path": paths[0], **b})
        if outcome == "present":
            report.present.extend(paths)
        elif outcome == "adopted":
            assert info is not None
            report.adopted.append({"path": paths[0], **info})
            report.present.extend(paths[1:])  # same content at other paths: linked, not adopted twice
        elif outcome == "missing":
            report.missing.extend(paths)
    if not dry_run:
        for manifest in loaded:
            for entry in manifest.entries():
                report.linked += _link(cache, manifest, entry)
    report.adopted.sort(key=lambda a: a["path"])
    report.present = sorted(set(report.present))
    report.missing = sorted(set(report.missing) - set(report.present) - {a["path"] for a in report.adopted})
    log.info("adopt: %s", report.summary())
    return report


def _link(cache: "CloudCache", manifest: Manifest, entry: FileEntry) -> int:
    store = cache.store
    if not store.has_blob(entry.file_hash):
        return 0
    if store.view_is_current(manifest.view_dir_name, entry.relative_path, entry.file_hash):
        return 0
    try:
        store.link_view(manifest.view_dir_name, entry.relative_path, entry.file_hash)
    except ReleaseCacheError as exc:
        log.warning("cannot link %s of %s: %s", entry.relative_path, manifest.name, exc)
        return 0
    return 1


__all__ = ["AdoptReport", "adopt", "detect_layout", "MODES"]
