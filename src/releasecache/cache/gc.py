"""Garbage collection: delete blobs no kept manifest needs, views of versions not kept, stale partials.

Takes each blob's lock without waiting and skips blobs whose lock is held, so it
never deletes a blob another process is writing; ``dry_run=True`` only reports.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_PARTIAL_AGE_DAYS
from ..errors import StorageError
from ..manifest import Manifest
from ..store import Store
from ..store.ingest import partial_owner
from ..store.views import downloaded_manifests, walk_links
from ..utils import human_bytes as _human

log = logging.getLogger("releasecache")


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
        return
    for attempt in range(3):
        try:
            shutil.rmtree(path)
            return
        except OSError as exc:  # a process linking into the view right now leaves it non-empty: again
            if exc.errno != errno.ENOTEMPTY or attempt == 2:
                raise


def gc(store: Store, keep: list[Manifest], project: str, *, dry_run: bool = True,
       partial_age_days: float | None = DEFAULT_PARTIAL_AGE_DAYS) -> GCReport:
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
                raise StorageError.from_os_error(exc, f"cannot remove view {top}") from None
    gone = set(report.deleted_blobs)
    for name in sorted(keep_views):
        for link in walk_links(store.root / name):
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
        groups.setdefault(partial_owner(path.name) or path.name, []).append(path)
    for key, paths in sorted(groups.items()):
        try:
            newest = max(os.lstat(p).st_mtime for p in paths)
        except OSError:
            continue
        if newest > cutoff:
            continue
        if partial_owner(key) == key:
            with store.try_lock(key) as taken:
                if not taken:
                    report.busy.append(key)
                    continue
                _remove_files(paths, report, dry_run)
        else:
            _remove_files(paths, report, dry_run)


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


__all__ = ["GCReport", "gc"]
