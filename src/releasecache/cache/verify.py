"""Verify and repair: re-check blobs, quarantine corrupt ones, fix view links.

Works on the directory alone (no network) and is safe to run while other
processes download into the same cache (see also :mod:`releasecache.cache.du`
and :mod:`releasecache.cache.gc`):

* :func:`verify` re-checks blobs. ``mode="fast"`` compares each blob's size and
  its publish-time stamp (see :mod:`releasecache.store.stamps`) and hashes only blobs
  whose stamp is missing or differs (one directory scan, one ``lstat`` and one
  stamp read per blob; the same ``lstat`` serves the mode check below), and it
  parses a saved manifest again only if its size, mtime or inode changed since
  it last parsed; ``mode="full"`` hashes every byte and parses every manifest. A
  corrupt blob is moved to ``<cache>/.quarantine/`` (under its lock) and every
  view link to it is removed, so the next access downloads it again; a view
  link that points at the wrong blob is repaired.
* ``mode="full"`` is incremental and resumable (like ``git annex fsck
  --incremental``): every stamp records when its blob was last hashed, a full
  *pass* is recorded in ``.stamps/pass-<scope>.json``, blobs are hashed oldest
  first, and a run stopped by ``max_seconds`` / ``max_bytes`` (or killed)
  continues the same pass next time, skipping blobs already hashed in it. A
  pass that finished starts a new one.
* Every run also checks the modes and groups of the cache's files (see
  :mod:`releasecache.store.perms`): what would lock the cache directory's group
  out is reported, and ``fix_permissions=True`` repairs what this user owns.
* :func:`disk_usage` reports bytes per manifest, split into bytes shared with
  other manifests and bytes unique to it, plus totals.
* :func:`gc` deletes blobs that no kept manifest references (and the views of
  versions not kept). It takes each blob's lock without waiting and skips any
  blob whose lock is held, so it never deletes a blob another process is
  writing; it never deletes a blob a kept manifest lists. ``dry_run=True``
  (the default) only reports.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_INTEGRITY, ENV_INTEGRITY, env
from ..errors import StorageError
from ..manifest import Manifest
from ..store import Store
from ..store.perms import check_tree, fix_tree
from ..store.stamps import last_verified, read_stamp, remove_stamp, stamp_matches
from ..store.views import unlink_views_to
from ..utils import atomic_write, hash_file, human_bytes as _human

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
    complete
        False when a budget (``max_seconds``, ``max_bytes``) stopped a full run early;
        ``remaining`` blobs are then left for the next run of the same pass.
    resumed, skipped, pass_started
        Full mode: whether this run continued an unfinished pass, how many blobs it
        skipped because that pass had already hashed them, and when the pass began.
    permissions
        Paths whose mode or group would lock the cache directory's group out (see
        :func:`releasecache.store.perms.check_tree`): ``path``, ``owner``, ``mode``,
        ``want_mode``, ``problem``.
    permissions_fixed
        Paths repaired by ``fix_permissions=True``.
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
    complete: bool = True
    remaining: int = 0
    resumed: bool = False
    skipped: int = 0
    pass_started: float | None = None
    permissions: list[dict[str, Any]] = field(default_factory=list)
    permissions_fixed: list[str] = field(default_factory=list)
    manifests_checked: int = 0
    damaged_manifests: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True if nothing was corrupt or missing, every damaged manifest was repaired, and no file
        locks the group out."""
        return (not self.corrupt and not self.missing and all(d["repaired"] for d in self.damaged_manifests)
                and not self.permissions)

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
        if self.resumed or self.skipped:
            text += f"\n  continued the full pass begun {time.ctime(self.pass_started or 0)}: {self.skipped} blobs " \
                    "already hashed in it were skipped"
        if not self.complete:
            text += f"\n  stopped by its budget: {self.remaining} blobs left for the next run (it continues there)"
        if self.permissions_fixed:
            text += f"\n  fixed the modes of {len(self.permissions_fixed)} paths"
        for rec in self.permissions[:50]:
            text += f"\n  PERMISSIONS {rec['path']} (owner uid {rec['owner']}, mode {rec['mode']}): {rec['problem']}"
        if len(self.permissions) > 50:
            text += f"\n  ... and {len(self.permissions) - 50} more paths with modes that lock the group out"
        if self.permissions:
            text += "\n  run `releasecache verify --fix` as their owner (or root) to repair them"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "manifest": self.manifest, "ok": self.ok, "checked": self.checked,
                "intact": self.intact, "hashed": self.hashed, "bytes_hashed": self.bytes_hashed,
                "corrupt": [dict(r) for r in self.corrupt], "missing": [dict(r) for r in self.missing],
                "views_repaired": list(self.views_repaired), "complete": self.complete,
                "remaining": self.remaining, "resumed": self.resumed, "skipped": self.skipped,
                "pass_started": self.pass_started, "permissions": [dict(r) for r in self.permissions],
                "permissions_fixed": list(self.permissions_fixed), "manifests_checked": self.manifests_checked,
                "damaged_manifests": [dict(r) for r in self.damaged_manifests], "seconds": round(self.seconds, 3)}


def _check_one(store: Store, file_hash: str, path: str | Path, expected_size: int | None, mode: str,
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


def quarantine_blob(store: Store, file_hash: str, seen: os.stat_result | None) -> Path | None:
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


def _pass_path(store: Store, manifest: Manifest | None) -> Path:
    scope = manifest.name if manifest is not None and manifest.name else "all"
    return store.stamps_dir / f"pass-{scope}.json"


def _read_pass(path: Path) -> dict[str, Any] | None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            value = json.loads(fh.read(65536))
        return value if isinstance(value, dict) and isinstance(value.get("started"), (int, float)) else None
    except (OSError, ValueError):
        return None


def _write_pass(store: Store, path: Path, record: dict[str, Any]) -> None:
    if store.read_only:
        return
    try:
        store.make_dir(path.parent)
        atomic_write(path, json.dumps(record).encode(), durable=False)
    except (OSError, StorageError) as exc:
        log.debug("could not record the verify pass in %s: %s", path, exc)


def verify(store: Store, manifest: Manifest | None = None, *, mode: str = "fast", max_workers: int = 4,
           max_seconds: float | None = None, max_bytes: int | None = None, resume: bool = True,
           fix_permissions: bool = False) -> VerifyReport:
    """Check blobs (those of ``manifest``, or every blob in the cache); quarantine corrupt ones.

    See the module documentation. A read-only cache is checked but nothing is moved.

    Parameters
    ----------
    mode
        ``"fast"`` (stamps; hash only changed blobs) or ``"full"`` (hash every byte,
        incrementally: see the module documentation).
    max_seconds, max_bytes
        Full mode: stop starting new blobs once this much time has passed or this many
        bytes were hashed in this run (at least one blob is always hashed). The next
        run continues the pass.
    resume
        Full mode: continue an unfinished pass (default); False starts a new one.
    fix_permissions
        Repair modes and groups that lock the cache's group out, where this user may.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    start = time.monotonic()
    report = VerifyReport(mode=mode, manifest=manifest.name if manifest is not None else None)
    # hash -> (expected size, paths in the release)
    targets: dict[str, tuple[int | None, list[str]]] = {}
    listed: dict[str, tuple[str, os.stat_result]] = {}  # hash -> (path, lstat) of blobs the scan listed
    if manifest is None:
        for h, path, st in store.iter_blob_stats():
            targets[h] = (None, [])
            listed[h] = (path, st)
    else:
        for entry in manifest.entries():
            size, paths = targets.get(entry.file_hash, (entry.size, []))
            paths.append(entry.relative_path)
            targets[entry.file_hash] = (size if size is not None else entry.size, paths)

    stamps = str(store.stamps_dir)
    jobs: list[tuple[float, str, str | Path, bool, os.stat_result | None]] = []
    for h, (_size, paths) in targets.items():
        seen = listed.get(h)
        if seen is None:
            seen = _own_blob(store, h)
        if seen is not None:
            found: str | Path | None = seen[0]
        else:
            found = store.layer_blob(h)
            if found is None:
                report.missing.extend({"relative_path": p, "file_hash": h} for p in paths)
                continue
        own = seen is not None
        # only a full run orders by when each blob was last hashed (layers last)
        when = (last_verified(read_stamp(stamps, h)) if own else float("inf")) if mode == "full" else 0.0
        jobs.append((when, h, found, own, seen[1] if seen is not None else None))
    jobs.sort(key=lambda j: (j[0], j[1]))  # verified longest ago first

    pass_file = _pass_path(store, manifest)
    if mode == "full":
        current = _read_pass(pass_file) if resume else None
        if current is not None and not current.get("completed"):
            report.resumed = True
            started = float(current["started"])
            before = len(jobs)
            jobs = [j for j in jobs if not (j[3] and j[0] >= started)]
            report.skipped = before - len(jobs)
        else:
            started = time.time()
            _write_pass(store, pass_file, {"started": started, "completed": None})
        report.pass_started = started

    bad: set[str] = set()
    if mode == "fast":  # sizes and stamps first, in chunks; only what does not match is hashed below
        jobs = _fast_pass(store, report, targets, bad, jobs, max(1, max_workers))

    def run(job: tuple[float, str, str | Path, bool, os.stat_result | None]) -> tuple[
            str, str | Path, bool, tuple[str | None, os.stat_result | None, int | None]]:
        _when, h, path, own, _st = job
        return h, path, own, _check_one(store, h, path, targets[h][0], mode, own)

    budget_bytes = 0
    pending = list(reversed(jobs))  # pop() from the end = oldest first
    with ThreadPoolExecutor(max(1, max_workers)) as pool:
        running: set[Future[Any]] = set()
        while pending or running:
            while pending and len(running) < max(1, max_workers):
                over_time = max_seconds is not None and time.monotonic() - start >= max_seconds
                over_bytes = max_bytes is not None and budget_bytes >= max_bytes
                if mode == "full" and (report.checked + len(running)) > 0 and (over_time or over_bytes):
                    report.complete = False
                    report.remaining = len(pending)
                    pending = []
                    break
                job = pending.pop()
                if mode == "full":
                    try:
                        budget_bytes += os.stat(job[2]).st_size
                    except OSError:
                        pass
                running.add(pool.submit(run, job))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                h, path, own, (problem, st, nbytes) = fut.result()
                _record(store, report, targets, bad, h, path, own, problem, st, nbytes)

    if mode == "full" and report.complete:
        _write_pass(store, pass_file, {"started": report.pass_started, "completed": time.time()})
    if not store.read_only:
        if bad:
            report.views_repaired.extend(unlink_views_to(store, bad))
        if manifest is not None:
            report.views_repaired.extend(_repair_views(store, manifest))
    problems = check_tree(store.root, {path: st for path, st in listed.values()})
    if fix_permissions and problems and not store.read_only:
        fixed, problems = fix_tree(store.root, problems)
        report.permissions_fixed = fixed
    report.permissions = [p.to_dict() for p in problems]
    report.seconds = time.monotonic() - start
    log.info("%s", report.summary())
    return report


def _own_blob(store: Store, file_hash: str) -> tuple[str, os.stat_result] | None:
    """(path, lstat) of the blob in this cache's own ``blobs/``, or None if it is not a regular file there."""
    path = str(store.blob_path(file_hash))
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (path, st) if stat.S_ISREG(st.st_mode) else None


_FAST_CHUNK = 512  # blobs per task of a fast pass: a task per blob cost more than its system calls


def _fast_look(stamps: str, file_hash: str, path: str | Path, expected_size: int | None, own: bool,
               st: os.stat_result | None) -> tuple[str | None, os.stat_result | None, bool]:
    """(problem or None, stat, whether it must be hashed): what :func:`_check_one` sees before hashing.

    Uses the ``lstat`` taken when the blob was listed, so an intact blob costs that one call
    and the reading of its stamp.
    """
    if st is None:
        try:
            st = os.stat(path) if not own else os.lstat(path)
        except OSError as exc:
            return f"cannot stat: {exc.strerror}", None, False
    if own and not stat.S_ISREG(st.st_mode):
        return "not a regular file", st, False
    if expected_size is not None and st.st_size != expected_size:
        return f"size is {st.st_size} bytes, the manifest says {expected_size}", st, False
    if own and stamp_matches(read_stamp(stamps, file_hash), st):
        return None, st, False
    return None, st, True


def _fast_pass(store: Store, report: "VerifyReport", targets: dict[str, tuple[int | None, list[str]]],
               bad: set[str], jobs: list[tuple[float, str, str | Path, bool, os.stat_result | None]],
               workers: int) -> list[tuple[float, str, str | Path, bool, os.stat_result | None]]:
    """Check sizes and stamps of ``jobs`` (in chunks, on ``workers`` threads); return those to hash."""
    stamps = str(store.stamps_dir)

    def look(chunk: list[tuple[float, str, str | Path, bool, os.stat_result | None]]) -> list[
            tuple[str | None, os.stat_result | None, bool]]:
        return [_fast_look(stamps, h, path, targets[h][0], own, st) for _when, h, path, own, st in chunk]

    to_hash = []
    chunks = [jobs[i:i + _FAST_CHUNK] for i in range(0, len(jobs), _FAST_CHUNK)]
    with ThreadPoolExecutor(workers) as pool:
        for chunk, outcomes in zip(chunks, pool.map(look, chunks)):
            for job, (problem, st, must_hash) in zip(chunk, outcomes):
                if must_hash:
                    to_hash.append(job)
                else:
                    _record(store, report, targets, bad, job[1], job[2], job[3], problem, st, None)
    return to_hash


def _record(store: Store, report: VerifyReport, targets: dict[str, tuple[int | None, list[str]]], bad: set[str],
            h: str, path: str | Path, own: bool, problem: str | None, st: os.stat_result | None,
            nbytes: int | None) -> None:
    """Account for one checked blob; quarantine it if it is corrupt."""
    report.checked += 1
    if nbytes is not None:
        report.hashed += 1
        report.bytes_hashed += nbytes
    if problem is None:
        report.intact += 1
        if own and nbytes is not None and not store.read_only:
            store.stamp(h)  # just hashed: stamp it (and when), so fast mode trusts it and a pass skips it
        return
    record: dict[str, Any] = {"file_hash": h, "paths": sorted(targets[h][1]), "reason": problem,
                              "location": "cache" if own else "layer", "quarantined_to": None}
    if own and not store.read_only:
        moved = quarantine_blob(store, h, st)
        if moved is None:
            report.intact += 1  # replaced by a fresh, verified copy while we looked
            return
        record["quarantined_to"] = str(moved)
        bad.add(h)
    elif not own:
        record["reason"] += f" (in read-only layer {path}; tell its maintainer)"
    report.corrupt.append(record)


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




#: What a cache checks when it hands out a file it already has (``integrity=``).
INTEGRITY_POLICIES = ("never", "fast", "full")
_checked_on_open: set[tuple[str, int, int, int]] = set()  # (hash, inode, mtime_ns, size) hashed by this process


def resolve_integrity(policy: str | None) -> str:
    """The integrity-on-open policy: the argument, else ``$RELEASECACHE_INTEGRITY``, else ``never``."""
    value = policy or env(ENV_INTEGRITY) or DEFAULT_INTEGRITY
    if value not in INTEGRITY_POLICIES:
        raise ValueError(f"integrity must be one of {INTEGRITY_POLICIES}, not {value!r}")
    return value


def check_on_open(store: Store, file_hash: str, expected_size: int | None, policy: str) -> bool:
    """Check a blob of this cache before it is handed out; quarantine it if it is bad.

    ``"fast"``: its size and stamp must match (else it is hashed, as a fast verify
    would); ``"full"``: it is hashed (once per process while its inode, mtime and
    size stay the same). Returns False if the blob was found corrupt and moved
    aside (the caller then downloads it again); True otherwise. Blobs in read-only
    layers, and read-only caches, are not checked (nothing could be repaired).
    """
    if policy == "never" or store.read_only or not store.has_own_blob(file_hash):
        return True
    path = store.blob_path(file_hash)
    try:
        st = os.lstat(path)
    except OSError:
        return True
    key = (file_hash, st.st_ino, st.st_mtime_ns, st.st_size)
    if policy == "full" and key in _checked_on_open:
        return True
    problem, seen, nbytes = _check_one(store, file_hash, path, expected_size, "fast" if policy == "fast" else "full",
                                       True)
    if problem is None:
        if nbytes is not None:
            store.stamp(file_hash)
            _checked_on_open.add(key)
        elif policy == "full":
            _checked_on_open.add(key)
        return True
    log.warning("blob %s… failed its integrity check on open (%s); downloading it again", file_hash[:16], problem)
    return quarantine_blob(store, file_hash, seen) is None and store.has_own_blob(file_hash)


__all__ = ["INTEGRITY_POLICIES", "MODES", "VerifyReport", "check_on_open", "quarantine_blob", "resolve_integrity",
           "verify"]
