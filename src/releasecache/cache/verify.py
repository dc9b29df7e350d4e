"""Looking after a cache: verify and repair, disk usage, garbage collection.

All three work on the directory alone (no network) and are safe to run while
other processes download into the same cache:

* :func:`verify` re-checks blobs. ``mode="fast"`` compares each blob's size and
  its publish-time stamp (see :mod:`releasecache.stamps`) and hashes only blobs
  whose stamp is missing or differs; ``mode="full"`` hashes every byte. A
  corrupt blob is moved to ``<cache>/.quarantine/`` (under its lock) and every
  view link to it is removed, so the next access downloads it again; a view
  link that points at the wrong blob is repaired.
* :func:`disk_usage` reports bytes per manifest, split into bytes shared with
  other manifests and bytes unique to it, plus totals.
* :func:`gc` deletes blobs that no kept manifest references (and the views of
  versions not kept). It takes each blob's lock without waiting and skips any
  blob whose lock is held, so it never deletes a blob another process is
  writing; it never deletes a blob a kept manifest lists. ``dry_run=True``
  (the default) only reports.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ManifestError, StorageError
from .manifest import FileEntry, Manifest
from .stamps import read_stamp, remove_stamp, stamp_matches
from .units import human_bytes as _human
from .store import Store, _storage_error, hash_file

log = logging.getLogger("releasecache")

MODES = ("fast", "full")


def downloaded_manifests(store: Store) -> dict[str, Manifest]:
    """Every manifest saved in ``manifests/`` that still parses, by file name."""
    out: dict[str, Manifest] = {}
    folder = store.manifests_dir
    if not folder.is_dir() or folder.is_symlink():
        return out
    for path in sorted(folder.iterdir()):
        if path.suffix != ".json" or path.name.startswith(".") or path.is_symlink():
            continue
        try:
            out[path.name] = Manifest.from_path(path)
        except ManifestError as exc:
            log.warning("ignoring unreadable manifest %s: %s", path, exc)
    return out


# -- verify ------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What :func:`verify` found and did.

    Attributes
    ----------
    mode
        ``"fast"`` or ``"full"``.
    manifest
        The manifest checked, or None for every blob in the cache.
    checked
        Blobs examined.
    intact
        Blobs found good.
    hashed, bytes_hashed
        Blobs (and bytes) actually re-hashed: all of them in full mode, only
        those without a matching stamp in fast mode.
    corrupt
        One record per bad blob: ``file_hash``, ``paths`` (paths in the
        release), ``reason``, ``location`` (``"cache"`` or ``"layer"``) and
        ``quarantined_to`` (None if it could not be moved).
    missing
        Manifest entries whose blob is in neither the cache nor a layer:
        ``relative_path`` and ``file_hash``. They download on next access.
    views_repaired
        View paths that pointed at the wrong (or a vanished) blob and were fixed or removed.
    """

    mode: str
    manifest: str | None = None
    checked: int = 0
    intact: int = 0
    hashed: int = 0
    bytes_hashed: int = 0
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    views_repaired: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True if nothing was corrupt or missing."""
        return not self.corrupt and not self.missing

    def summary(self) -> str:
        text = (f"verify ({self.mode}) of {self.manifest or 'every blob'}: {self.checked} blobs checked, "
                f"{self.intact} intact, {len(self.corrupt)} corrupt, {len(self.missing)} missing; "
                f"{self.hashed} hashed ({_human(self.bytes_hashed)}) in {self.seconds:.1f} s")
        for rec in self.corrupt:
            where = f"moved to {rec['quarantined_to']}" if rec["quarantined_to"] else "left in place"
            text += f"\n  CORRUPT {', '.join(rec['paths']) or rec['file_hash'][:16]}: {rec['reason']} ({where})"
        for rec in self.missing:
            text += f"\n  MISSING {rec['relative_path']}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "manifest": self.manifest, "ok": self.ok, "checked": self.checked,
                "intact": self.intact, "hashed": self.hashed, "bytes_hashed": self.bytes_hashed,
                "corrupt": [dict(r) for r in self.corrupt], "missing": [dict(r) for r in self.missing],
                "views_repaired": list(self.views_repaired), "seconds": round(self.seconds, 3)}


def _check_one(store: Store, file_hash: str, path: Path, expected_size: int | None, mode: str,
               own: bool) -> tuple[str | None, os.stat_result | None, int | None]:
    """Return (problem or None, stat at hashing time, bytes hashed or None if not hashed)."""
    try:
        st = os.stat(path) if not own else os.lstat(path)
    except OSError as exc:
        return f"cannot stat: {exc.strerror}", None, None
    if own and not stat.S_ISREG(st.st_mode):
        return "not a regular file", st, None
    if expected_size is not None and st.st_size != expected_size:
        return f"size is {st.st_size} bytes, the manifest says {expected_size}", st, None
    if mode == "fast" and own and stamp_matches(read_stamp(store.stamps_dir, file_hash), st):
        return None, st, None
    try:
        digest = hash_file(path, follow_symlinks=False)
    except OSError as exc:
        return f"cannot read: {exc.strerror}", st, None
    if digest != file_hash:
        return f"blake2b is {digest[:16]}…, not {file_hash[:16]}…", st, st.st_size
    return None, st, st.st_size


def _quarantine(store: Store, file_hash: str, seen: os.stat_result | None) -> Path | None:
    """Move a corrupt blob aside under its lock, unless it was replaced meanwhile."""
    blob = store.blob_path(file_hash)
    with store.lock(file_hash, timeout=min(store.lock_timeout, 300.0)):
        try:
            now = os.lstat(blob)
        except FileNotFoundError:
            return None
        if seen is not None and (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            return None  # someone published a fresh copy after we hashed
        store._mkdir(store.quarantine_dir)
        dest = store.quarantine_dir / f"{file_hash}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
        try:
            os.replace(blob, dest)
        except OSError as exc:
            raise _storage_error(exc, f"cannot move corrupt blob {blob} aside") from None
        remove_stamp(store.stamps_dir, file_hash)
        log.warning("blob %s… is corrupt; moved to %s (it downloads again on next access)", file_hash[:16], dest)
        return dest


def _view_dirs(store: Store) -> list[Path]:
    """Top-level view directories (``<project>-<version>``) of every downloaded manifest."""
    names = {m.view_dir_name for m in downloaded_manifests(store).values()}
    return [store.root / n for n in sorted(names) if os.path.lexists(store.root / n)]


def _walk_links(top: Path) -> Iterable[Path]:
    """Every symlink below ``top`` (never following directory links)."""
    if os.path.islink(top) or not top.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            if os.path.islink(path):
                yield path


def _unlink_views_to(store: Store, hashes: set[str]) -> list[str]:
    """Remove every view link whose target is one of ``hashes`` and no longer exists."""
    removed: list[str] = []
    for top in _view_dirs(store):
        for link in _walk_links(top):
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if os.path.basename(target) in hashes and not os.path.exists(link):
                try:
                    os.unlink(link)
                    removed.append(str(link.relative_to(store.root)))
                except OSError as exc:
                    log.warning("could not remove dangling view link %s: %s", link, exc)
    return removed


def verify(store: Store, manifest: Manifest | None = None, *, mode: str = "fast",
           max_workers: int = 4) -> VerifyReport:
    """Check blobs (those of ``manifest``, or every blob in the cache); quarantine corrupt ones.

    See the module documentation. A read-only cache is checked but nothing is moved.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    start = time.monotonic()
    report = VerifyReport(mode=mode, manifest=manifest.name if manifest is not None else None)
    # hash -> (expected size, paths in the release)
    targets: dict[str, tuple[int | None, list[str]]] = {}
    if manifest is None:
        for h, _path in store.iter_blobs():
            targets[h] = (None, [])
    else:
        for entry in manifest.entries():
            size, paths = targets.get(entry.file_hash, (entry.size, []))
            paths.append(entry.relative_path)
            targets[entry.file_hash] = (size if size is not None else entry.size, paths)

    jobs: list[tuple[str, Path, bool]] = []
    for h, (_size, paths) in targets.items():
        found = store.find_blob(h)
        if found is None:
            report.missing.extend({"relative_path": p, "file_hash": h} for p in paths)
            continue
        jobs.append((h, found, found == store.blob_path(h)))

    def run(job: tuple[str, Path, bool]) -> tuple[str, Path, bool, tuple[str | None, os.stat_result | None, int | None]]:
        h, path, own = job
        return h, path, own, _check_one(store, h, path, targets[h][0], mode, own)

    bad: set[str] = set()
    with ThreadPoolExecutor(max(1, max_workers)) as pool:
        for h, path, own, (problem, st, nbytes) in pool.map(run, jobs):
            report.checked += 1
            if nbytes is not None:
                report.hashed += 1
                report.bytes_hashed += nbytes
            if problem is None:
                report.intact += 1
                if own and nbytes is not None and not store.read_only:
                    store.stamp(h)  # hashed because the stamp was missing or stale: stamp it again
                continue
            record: dict[str, Any] = {"file_hash": h, "paths": sorted(targets[h][1]), "reason": problem,
                                      "location": "cache" if own else "layer", "quarantined_to": None}
            if own and not store.read_only:
                moved = _quarantine(store, h, st)
                if moved is None:
                    report.intact += 1  # replaced by a fresh, verified copy while we looked
                    continue
                record["quarantined_to"] = str(moved)
                bad.add(h)
            elif not own:
                record["reason"] += f" (in read-only layer {path}; tell its maintainer)"
            report.corrupt.append(record)

    if not store.read_only:
        if bad:
            report.views_repaired.extend(_unlink_views_to(store, bad))
        if manifest is not None:
            report.views_repaired.extend(_repair_views(store, manifest))
    report.seconds = time.monotonic() - start
    log.info("%s", report.summary())
    return report


def _repair_views(store: Store, manifest: Manifest) -> list[str]:
    """Point wrong view links of ``manifest`` at the right blob; drop links whose blob is gone."""
    fixed: list[str] = []
    view = manifest.view_dir_name
    if os.path.islink(store.root / view):
        return fixed
    for entry in manifest.entries():
        dest = store.view_path(view, entry.relative_path)
        if not os.path.islink(dest) or store.view_is_current(view, entry.relative_path, entry.file_hash):
            continue
        rel = str(dest.relative_to(store.root))
        try:
            if store.has_blob(entry.file_hash):
                store.link_view(view, entry.relative_path, entry.file_hash)
            else:
                os.unlink(dest)
            fixed.append(rel)
        except (OSError, StorageError) as exc:
            log.warning("could not repair view %s: %s", dest, exc)
    return fixed


# -- disk usage --------------------------------------------------------------


@dataclass
class ManifestUsage:
    """Disk use of one manifest's files in this cache."""

    name: str
    files: int = 0
    present: int = 0
    missing: int = 0
    in_layers: int = 0
    bytes: int = 0
    unique_bytes: int = 0
    shared_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DiskUsage:
    """Bytes per manifest (shared with other manifests vs unique to it) and totals.

    ``total_bytes`` is everything the cache's blobs, partial downloads and
    quarantine hold; ``unreferenced_bytes`` is what no downloaded manifest uses
    (what ``gc`` of every manifest would free).
    """

    manifests: dict[str, ManifestUsage] = field(default_factory=dict)
    blob_count: int = 0
    blob_bytes: int = 0
    referenced_bytes: int = 0
    unreferenced_bytes: int = 0
    partial_bytes: int = 0
    quarantine_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.blob_bytes + self.partial_bytes + self.quarantine_bytes

    def summary(self) -> str:
        lines = [f"{_human(self.total_bytes)} in total: {self.blob_count} blobs ({_human(self.blob_bytes)}), "
                 f"{_human(self.partial_bytes)} partial downloads, {_human(self.quarantine_bytes)} quarantined; "
                 f"{_human(self.unreferenced_bytes)} used by no manifest"]
        for u in self.manifests.values():
            lines.append(f"  {u.name}: {u.present}/{u.files} files, {_human(u.bytes)} "
                         f"({_human(u.unique_bytes)} unique, {_human(u.shared_bytes)} shared)"
                         + (f", {u.in_layers} in read-only layers" if u.in_layers else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"manifests": {k: v.to_dict() for k, v in self.manifests.items()}, "blob_count": self.blob_count,
                "blob_bytes": self.blob_bytes, "referenced_bytes": self.referenced_bytes,
                "unreferenced_bytes": self.unreferenced_bytes, "partial_bytes": self.partial_bytes,
                "quarantine_bytes": self.quarantine_bytes, "total_bytes": self.total_bytes}

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([u.to_dict() for u in self.manifests.values()]).set_index("name")


def _dir_bytes(path: Path) -> int:
    total = 0
    if os.path.islink(path) or not path.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def disk_usage(store: Store, manifests: dict[str, Manifest] | None = None) -> DiskUsage:
    """Bytes used, per manifest (default: every downloaded manifest) and in total."""
    manifests = downloaded_manifests(store) if manifests is None else manifests
    usage = DiskUsage()
    sizes: dict[str, int] = {}
    for h, path in store.iter_blobs():
        try:
            sizes[h] = os.lstat(path).st_size
        except OSError:
            continue
    usage.blob_count = len(sizes)
    usage.blob_bytes = sum(sizes.values())
    refs: dict[str, set[str]] = {}
    per: dict[str, set[str]] = {}
    for name, manifest in manifests.items():
        hashes = {e.file_hash for e in manifest.entries()}
        per[name] = hashes
        for h in hashes:
            refs.setdefault(h, set()).add(name)
    for name, manifest in manifests.items():
        u = ManifestUsage(name=name, files=sum(1 for _ in manifest.entries()))
        for entry in manifest.entries():
            if entry.file_hash in sizes:
                u.present += 1
            elif store.layer_blob(entry.file_hash) is not None:
                u.in_layers += 1
            else:
                u.missing += 1
        for h in per[name]:
            if h not in sizes:
                continue
            u.bytes += sizes[h]
            if len(refs[h]) > 1:
                u.shared_bytes += sizes[h]
            else:
                u.unique_bytes += sizes[h]
        usage.manifests[name] = u
    usage.referenced_bytes = sum(s for h, s in sizes.items() if h in refs)
    usage.unreferenced_bytes = usage.blob_bytes - usage.referenced_bytes
    usage.partial_bytes = _dir_bytes(store.partial_dir)
    usage.quarantine_bytes = _dir_bytes(store.quarantine_dir)
    return usage


# -- garbage collection -------------------------------------------------------


@dataclass
class GCReport:
    """What :func:`gc` deleted (or, in a dry run, would delete)."""

    dry_run: bool
    kept: list[str] = field(default_factory=list)
    deleted_blobs: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    busy: list[str] = field(default_factory=list)
    removed_views: list[str] = field(default_factory=list)
    removed_links: list[str] = field(default_factory=list)
    removed_partials: list[str] = field(default_factory=list)
    removed_quarantine: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (f"gc keeping {', '.join(self.kept) or 'nothing'}: {verb} {len(self.deleted_blobs)} blobs "
                f"({_human(self.bytes_freed)}), {len(self.removed_views)} views of other versions, "
                f"{len(self.removed_links)} dangling links, {len(self.removed_partials)} stale partial files, "
                f"{len(self.removed_quarantine)} quarantined blobs; skipped {len(self.busy)} in use by another process")

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if k == "seconds" else v) for k, v in self.__dict__.items()}


def _remove_tree(path: Path) -> None:
    """Delete a view directory without ever following a link out of it."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def gc(store: Store, keep: list[Manifest], project: str, *, dry_run: bool = True,
       partial_age_days: float | None = 7.0) -> GCReport:
    """Delete what the ``keep`` manifests do not need. See the module documentation.

    Parameters
    ----------
    keep
        Manifests whose files must stay. Blobs of downloaded manifests of
        *other* projects sharing this directory are kept too.
    project
        The project this cache serves (views of its versions not kept are removed).
    dry_run
        Only report (the default).
    partial_age_days
        Also delete partial downloads (``.partial/``) untouched for this many
        days whose lock is free; None keeps them all.
    """
    if not dry_run and store.read_only:
        raise StorageError(errno.EROFS, f"cache {store.root} is read-only; gc cannot delete anything")
    start = time.monotonic()
    report = GCReport(dry_run=dry_run, kept=sorted(m.name or m.view_dir_name for m in keep))
    all_manifests = downloaded_manifests(store)
    needed: set[str] = set()
    keep_views = {m.view_dir_name for m in keep}
    for m in keep:
        needed.update(e.file_hash for e in m.entries())
    for m in all_manifests.values():
        if m.project_name != project:  # another project's files: not ours to judge
            needed.update(e.file_hash for e in m.entries())
            keep_views.add(m.view_dir_name)

    for h, path in store.iter_blobs():
        if h in needed:
            continue
        try:
            size = os.lstat(path).st_size
        except OSError:
            continue
        with store.try_lock(h) as taken:
            if not taken:
                report.busy.append(h)
                continue
            if not dry_run:
                store.remove_blob(h)
        report.deleted_blobs.append(h)
        report.bytes_freed += size

    # Views of versions not kept go entirely; kept views lose links whose blob is gone.
    for name in sorted({m.view_dir_name for m in all_manifests.values()} - keep_views):
        top = store.root / name
        if not os.path.lexists(top):
            continue
        report.removed_views.append(name)
        if not dry_run:
            try:
                _remove_tree(top)
            except OSError as exc:
                raise _storage_error(exc, f"cannot remove view {top}") from None
    gone = set(report.deleted_blobs)
    for name in sorted(keep_views):
        for link in _walk_links(store.root / name):
            try:
                target = os.readlink(link)
            except OSError:
                continue
            base = os.path.basename(target)
            dangling = not os.path.exists(link) or (dry_run and base in gone)
            if dangling and len(base) == 128:
                report.removed_links.append(str(link.relative_to(store.root)))
                if not dry_run:
                    try:
                        os.unlink(link)
                    except OSError:
                        pass

    _gc_partials(store, report, dry_run, partial_age_days)
    qdir = store.quarantine_dir
    if qdir.is_dir() and not qdir.is_symlink():
        for path in sorted(qdir.iterdir()):
            report.removed_quarantine.append(path.name)
            if not dry_run:
                try:
                    os.unlink(path)
                except OSError as exc:
                    log.warning("could not remove %s: %s", path, exc)
    if not dry_run:
        _gc_orphan_stamps(store)
    report.seconds = time.monotonic() - start
    log.info("%s", report.summary())
    return report


def _gc_partials(store: Store, report: GCReport, dry_run: bool, age_days: float | None) -> None:
    folder = store.partial_dir
    if age_days is None or not folder.is_dir() or folder.is_symlink():
        return
    cutoff = time.time() - age_days * 86400
    groups: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        parts = path.name.lstrip(".").split(".")
        key = parts[0] if _is_hash(parts[0]) else path.name  # <h>, <h>.json, <h>.layer, .<h>.json.<x>.tmp
        groups.setdefault(key, []).append(path)
    for key, paths in sorted(groups.items()):
        try:
            newest = max(os.lstat(p).st_mtime for p in paths)
        except OSError:
            continue
        if newest > cutoff:
            continue
        if _is_hash(key):
            with store.try_lock(key) as taken:
                if not taken:
                    report.busy.append(key)
                    continue
                _remove_files(paths, report, dry_run)
        else:
            _remove_files(paths, report, dry_run)


def _is_hash(text: str) -> bool:
    return len(text) == 128 and all(c in "0123456789abcdef" for c in text)


def _remove_files(paths: list[Path], report: GCReport, dry_run: bool) -> None:
    for p in paths:
        report.removed_partials.append(p.name)
        if not dry_run:
            try:
                os.unlink(p)
            except IsADirectoryError:
                shutil.rmtree(p)
            except OSError as exc:
                log.warning("could not remove %s: %s", p, exc)


def _gc_orphan_stamps(store: Store) -> None:
    folder = store.stamps_dir
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in folder.iterdir():
        if sub.is_symlink() or not sub.is_dir():
            continue
        for stamp in sub.iterdir():
            if not store.has_own_blob(stamp.name):
                try:
                    os.unlink(stamp)
                except OSError:
                    pass


__all__ = ["VerifyReport", "DiskUsage", "ManifestUsage", "GCReport", "verify", "disk_usage", "gc",
           "downloaded_manifests", "hash_file"]
