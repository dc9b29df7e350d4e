"""Verify and repair: re-check blobs, quarantine corrupt ones, fix view links.

Works on the directory alone (no network) and is safe to run while other
processes download into the same cache (see also :mod:`releasecache.cache.du`
and :mod:`releasecache.cache.gc`):

* :func:`verify` re-checks blobs. ``mode="fast"`` compares each blob's size and
  its publish-time stamp (see :mod:`releasecache.store.stamps`) and hashes only blobs
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

import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..manifest import Manifest
from ..store import Store
from ..store.stamps import read_stamp, remove_stamp, stamp_matches
from ..store.views import unlink_views_to
from ..utils import hash_file, human_bytes as _human

log = logging.getLogger("releasecache")

MODES = ("fast", "full")


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
    manifests_checked
        Manifests saved in ``manifests/`` that were parsed.
    damaged_manifests
        One record per saved manifest that no longer parses: ``name``, ``path``,
        ``reason`` and ``repaired`` (True once fetched again and replaced).
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
    manifests_checked: int = 0
    damaged_manifests: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True if nothing was corrupt or missing, and every damaged manifest was repaired."""
        return not self.corrupt and not self.missing and all(d["repaired"] for d in self.damaged_manifests)

    def summary(self) -> str:
        text = (f"verify ({self.mode}) of {self.manifest or 'every blob'}: {self.checked} blobs checked, "
                f"{self.intact} intact, {len(self.corrupt)} corrupt, {len(self.missing)} missing; "
                f"{self.hashed} hashed ({_human(self.bytes_hashed)}) in {self.seconds:.1f} s")
        for rec in self.corrupt:
            where = f"moved to {rec['quarantined_to']}" if rec["quarantined_to"] else "left in place"
            text += f"\n  CORRUPT {', '.join(rec['paths']) or rec['file_hash'][:16]}: {rec['reason']} ({where})"
        for rec in self.missing:
            text += f"\n  MISSING {rec['relative_path']}"
        text += f"\n{self.manifests_checked} saved manifests checked, {len(self.damaged_manifests)} damaged"
        for rec in self.damaged_manifests:
            done = "fetched again and replaced" if rec["repaired"] else "not repaired"
            text += f"\n  DAMAGED MANIFEST {rec['name']}: {rec['reason']} ({done})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "manifest": self.manifest, "ok": self.ok, "checked": self.checked,
                "intact": self.intact, "hashed": self.hashed, "bytes_hashed": self.bytes_hashed,
                "corrupt": [dict(r) for r in self.corrupt], "missing": [dict(r) for r in self.missing],
                "views_repaired": list(self.views_repaired), "manifests_checked": self.manifests_checked,
                "damaged_manifests": [dict(r) for r in self.damaged_manifests], "seconds": round(self.seconds, 3)}


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
        store.make_dir(store.quarantine_dir)
        dest = store.quarantine_dir / f"{file_hash}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
        try:
            os.replace(blob, dest)
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"cannot move corrupt blob {blob} aside") from None
        remove_stamp(store.stamps_dir, file_hash)
        log.warning("blob %s… is corrupt; moved to %s (it downloads again on next access)", file_hash[:16], dest)
        return dest


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
            report.views_repaired.extend(unlink_views_to(store, bad))
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




__all__ = ["MODES", "VerifyReport", "verify"]
