"""Garbage collection: delete blobs no kept manifest needs, views of versions not kept, stale partials.

What stays:

* every blob of a manifest in ``keep``;
* every blob of a manifest that *anybody* used within ``window_days`` (default
  30; ``$RELEASECACHE_GC_WINDOW_DAYS``): uses are recorded per manifest in the
  cache itself (``.usage/<manifest name>``, whose mtime is the last use; see
  :func:`releasecache.cache.budget.touch_usage`), by every user and process that
  loads the manifest, so one user's gc never deletes what a colleague's job used
  last week;
* every blob of another project's manifest sharing the directory;
* every blob another process holds: gc takes each blob's lock without waiting
  and then an exclusive ``flock`` on the blob itself, and skips (reports as
  ``busy``) a blob another process is downloading or verifying (its lock), or
  reading through :meth:`CloudCache.reading <releasecache.cache.CloudCache.reading>`
  (a shared read lease, :func:`releasecache.cache.budget.read_lease`).

``dry_run=True`` (the default) only reports; the report says, per manifest,
whether it is kept and why, and what of it would go.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_GC_WINDOW_DAYS, DEFAULT_PARTIAL_AGE_DAYS, ENV_GC_WINDOW_DAYS, env
from ..errors import StorageError
from ..manifest import Manifest
from ..store import Store
from ..store.ingest import partial_owner
from ..store.views import downloaded_manifests, walk_links
from ..utils import human_bytes as _human
from .budget import read_usage

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
    #: Per downloaded manifest: ``name``, ``kept`` (bool), ``why``, ``last_used`` (epoch s or None),
    #: ``users``, and what of it goes: ``blobs``, ``bytes`` (its blobs no kept manifest needs).
    manifests: list[dict[str, Any]] = field(default_factory=list)
    window_days: float | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = (f"gc keeping {', '.join(self.kept) or 'nothing'}: {verb} {len(self.deleted_blobs)} blobs "
                f"({_human(self.bytes_freed)}), {len(self.removed_views)} views of other versions, "
                f"{len(self.removed_links)} dangling links, {len(self.removed_partials)} stale partial files, "
                f"{len(self.removed_quarantine)} quarantined blobs; skipped {len(self.busy)} in use by another process")
        for rec in self.manifests:
            if rec["kept"]:
                text += f"\n  keep {rec['name']}: {rec['why']}"
            else:
                text += (f"\n  {'would remove' if self.dry_run else 'removed'} {rec['name']}: {rec['why']}; "
                         f"{rec['blobs']} blobs ({_human(rec['bytes'])}) only it used")
        return text

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


def resolve_window(window_days: float | None = None) -> float:
    """gc's usage window in days: the argument, else ``$RELEASECACHE_GC_WINDOW_DAYS``, else 30."""
    if window_days is None:
        raw = env(ENV_GC_WINDOW_DAYS)
        try:
            window_days = float(raw) if raw is not None else DEFAULT_GC_WINDOW_DAYS
        except ValueError:
            raise ValueError(f"{ENV_GC_WINDOW_DAYS} must be a number of days, not {raw!r}") from None
    if not window_days >= 0:
        raise ValueError(f"the gc window must be a number of days >= 0, not {window_days!r}")
    return float(window_days)


def _decide(name: str, manifest: Manifest, project: str, asked: set[str], use: float | None,
            window: float, now: float) -> tuple[bool, str]:
    """Whether a downloaded manifest's files stay, and why (in words)."""
    if manifest.project_name != project:
        return True, f"a manifest of another project ({manifest.project_name}) sharing this directory"
    if name in asked:
        return True, "asked to keep it"
    if use is None:
        return False, "no use of it is recorded in this cache"
    age = max(0.0, now - use) / 86400
    if age <= window:
        return True, f"used {_ago(age)} (within the {window:g}-day window)"
    return False, f"last used {_ago(age)}, longer ago than the {window:g}-day window"


def _being_read(path: "str | Path", *, hold: bool, remove: Any) -> bool:
    """True if another process holds a read lease on the blob; else (when ``hold``) remove it
    while holding the exclusive ``flock``, so no lease can start in between."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # gone already, or unreadable: nothing reads it through a lease
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            pass  # no flock on this filesystem: the lock above is all there is
        if hold:
            remove()
        return False
    finally:
        os.close(fd)


def _ago(days: float) -> str:
    if days < 1 / 24:
        return f"{max(1, round(days * 1440))} min ago"
    if days < 2:
        return f"{days * 24:.0f} h ago"
    return f"{days:.0f} days ago"


def gc(store: Store, keep: list[Manifest], project: str, *, dry_run: bool = True,
       partial_age_days: float | None = DEFAULT_PARTIAL_AGE_DAYS, window_days: float | None = None,
       parsed: "list[Manifest] | tuple[Manifest, ...]" = ()) -> GCReport:
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
    window_days
        Also keep every manifest anybody used within this many days (default:
        ``$RELEASECACHE_GC_WINDOW_DAYS``, else 30). 0 keeps only ``keep``.
    parsed
        Saved manifests the caller already parsed (the loaded one): not read again.
    """
    if not dry_run and store.read_only:
        raise StorageError(errno.EROFS, f"cache {store.root} is read-only; gc cannot delete anything")
    start = time.monotonic()
    window = resolve_window(window_days)
    now = time.time()
    report = GCReport(dry_run=dry_run, kept=sorted(m.name or m.view_dir_name for m in keep), window_days=window)
    all_manifests = downloaded_manifests(store, {m.name: m for m in (*parsed, *keep) if m.name})
    uses = read_usage(store)
    needed: set[str] = set()
    keep_views = {m.view_dir_name for m in keep}
    asked = {m.name for m in keep if m.name}
    decisions: dict[str, dict[str, Any]] = {}
    for name, m in all_manifests.items():
        use = uses.get(name)
        kept, why = _decide(name, m, project, asked, use, window, now)
        decisions[name] = {"name": name, "kept": kept, "why": why, "last_used": use, "blobs": 0, "bytes": 0}
        if kept and name not in asked:
            needed.update(e.file_hash for e in m.entries())
            keep_views.add(m.view_dir_name)
    for m in keep:
        needed.update(e.file_hash for e in m.entries())
    by_blob: dict[str, list[str]] = {}
    for name, m in all_manifests.items():
        if not decisions[name]["kept"]:
            for h in {e.file_hash for e in m.entries()}:
                by_blob.setdefault(h, []).append(name)

    for h, path, st in store.iter_blob_stats():
        if h in needed:
            continue
        size = st.st_size
        with store.try_lock(h) as taken:
            if not taken or _being_read(path, hold=not dry_run, remove=lambda: store.remove_blob(h)):
                report.busy.append(h)
                continue
        report.deleted_blobs.append(h)
        report.bytes_freed += size
        for name in by_blob.get(h, ()):
            decisions[name]["blobs"] += 1
            decisions[name]["bytes"] += size
    report.manifests = [decisions[n] for n in sorted(decisions)]

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
                report.removed_links.append(os.path.relpath(link, store.root))
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
