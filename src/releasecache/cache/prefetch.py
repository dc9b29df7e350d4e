"""Bulk prefetch: plan first, then fetch many files at once with one progress display.

The plan says what will be fetched, what is already present for this version,
and what can be reused from other versions (same content, just linked). The
fetch runs on any :class:`concurrent.futures.Executor` (threads by default; a
Dask ``Client.get_executor()`` for a cluster), and one failing file never stops
the others: every failure is reported with its reason.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import ReleaseCacheError
from ..manifest import FileEntry
from ..utils import human_bytes as _human

if TYPE_CHECKING:
    from .cloud import CloudCache

log = logging.getLogger("releasecache")


@dataclass
class PrefetchPlan:
    """What a prefetch will do, before it does it."""

    to_fetch: list[FileEntry] = field(default_factory=list)
    present: list[FileEntry] = field(default_factory=list)
    reusable: list[FileEntry] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    def _bytes(self, entries: list[FileEntry]) -> int | None:
        if any(e.file_hash not in self.sizes for e in entries):
            return None
        return sum(self.sizes[e.file_hash] for e in {e.file_hash: e for e in entries}.values())

    @property
    def bytes_to_fetch(self) -> int | None:
        """Bytes to download (None if some sizes are unknown)."""
        return self._bytes(self.to_fetch)

    @property
    def bytes_present(self) -> int | None:
        """Bytes already in this version's view."""
        return self._bytes(self.present)

    @property
    def bytes_reusable(self) -> int | None:
        """Bytes already in the cache from other versions; linked, not downloaded."""
        return self._bytes(self.reusable)

    def summary(self) -> str:
        """One line for people."""
        def fmt(n: int | None) -> str:
            return "? B" if n is None else _human(n)
        return (f"{len(self.to_fetch)} files to fetch ({fmt(self.bytes_to_fetch)}), "
                f"{len(self.present)} present ({fmt(self.bytes_present)}), "
                f"{len(self.reusable)} reusable from other versions ({fmt(self.bytes_reusable)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_fetch": [e.relative_path for e in self.to_fetch],
            "present": [e.relative_path for e in self.present],
            "reusable": [e.relative_path for e in self.reusable],
            "bytes_to_fetch": self.bytes_to_fetch,
            "bytes_present": self.bytes_present,
            "bytes_reusable": self.bytes_reusable,
        }


@dataclass
class PrefetchReport:
    """What a prefetch did."""

    fetched: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_fetched: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True if no file failed."""
        return not self.failed

    def summary(self) -> str:
        rate = self.bytes_fetched / self.seconds if self.seconds > 0 else 0.0
        text = (f"fetched {len(self.fetched)} files ({_human(self.bytes_fetched)} at {_human(rate)}/s), "
                f"linked {len(self.reused)} from other versions, {len(self.present)} already present, "
                f"{len(self.failed)} failed")
        for path, reason in sorted(self.failed.items()):
            text += f"\n  FAILED {path}: {reason}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"fetched": self.fetched, "reused": self.reused, "present": self.present, "failed": self.failed,
                "bytes_fetched": self.bytes_fetched, "seconds": round(self.seconds, 3)}


def plan(cache: "CloudCache", entries: Iterable[FileEntry], *, stat_remote: bool = False,
         max_workers: int = 16) -> PrefetchPlan:
    """Sort entries into fetch / present / reusable; sizes from the store, the manifest,
    or (``stat_remote=True``) HEAD requests made concurrently."""
    result = PrefetchPlan()
    view = cache.manifest.view_dir_name
    seen: set[str] = set()
    for entry in entries:
        found = cache.store.find_blob(entry.file_hash)  # here or in a read-only layer
        if found is not None:
            result.sizes[entry.file_hash] = found.stat().st_size
            if cache.store.view_is_current(view, entry.relative_path, entry.file_hash):
                result.present.append(entry)
            else:
                result.reusable.append(entry)
        else:
            if entry.size is not None:
                result.sizes[entry.file_hash] = entry.size
            if entry.file_hash in seen:
                result.reusable.append(entry)  # same content listed twice: fetched once, linked twice
            else:
                result.to_fetch.append(entry)
            seen.add(entry.file_hash)
    unknown = [e for e in result.to_fetch if e.file_hash not in result.sizes]
    if stat_remote and unknown and cache.remote is not None:
        remote = cache.remote
        with ThreadPoolExecutor(max_workers) as pool:
            futures = {pool.submit(remote.stat, e.location): e for e in unknown}
            for fut in as_completed(futures):
                try:
                    result.sizes[futures[fut].file_hash] = fut.result()
                except ReleaseCacheError as exc:
                    log.warning("cannot size %s: %s", futures[fut].relative_path, exc)
    return result


def fetch_one(cache: "CloudCache", entry: FileEntry, progress: Any = None) -> int:
    """Fetch one entry (runs in a worker thread or process); return bytes downloaded."""
    had = cache.store.has_blob(entry.file_hash)
    cache.ensure(entry, progress=progress or (lambda n: None))
    found = cache.store.find_blob(entry.file_hash)
    return 0 if had or found is None else found.stat().st_size


def prefetch(
    cache: "CloudCache",
    entries: Iterable[FileEntry],
    *,
    executor: Executor | None = None,
    max_files: int = 16,
    progress: bool = True,
    stat_remote: bool = False,
) -> PrefetchReport:
    """Fetch many files; see :meth:`releasecache.cache.CloudCache.prefetch`."""
    start = time.monotonic()
    the_plan = plan(cache, entries, stat_remote=stat_remote)
    log.info("prefetch plan: %s", the_plan.summary())
    report = PrefetchReport(present=[e.relative_path for e in the_plan.present])
    # Content already here (from another version, or listed twice) only needs a link.
    pending_links = list(the_plan.reusable)
    bar = None
    if progress and the_plan.to_fetch:
        from tqdm.auto import tqdm

        bar = tqdm(total=the_plan.bytes_to_fetch, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"{len(the_plan.to_fetch)} files", dynamic_ncols=True, smoothing=0.1)
    lock = threading.Lock()

    def tick(n: int) -> None:
        if bar is not None:
            with lock:
                bar.update(n)

    own_pool = executor is None
    pool = executor or ThreadPoolExecutor(max_files, thread_name_prefix="rc-file")
    in_process = own_pool or isinstance(pool, ThreadPoolExecutor)
    try:
        futures = {}
        for entry in the_plan.to_fetch:
            if in_process:
                fut = pool.submit(fetch_one, cache, entry, tick)
            else:
                fut = pool.submit(fetch_one, cache, entry)
            futures[fut] = entry
        for fut in as_completed(futures):
            entry = futures[fut]
            try:
                nbytes = fut.result()
            except ReleaseCacheError as exc:
                report.failed[entry.relative_path] = str(exc)
                log.error("prefetch: %s failed: %s", entry.relative_path, exc)
                continue
            except OSError as exc:
                report.failed[entry.relative_path] = f"{type(exc).__name__}: {exc}"
                continue
            if not in_process and bar is not None:
                bar.update(nbytes)
            report.bytes_fetched += nbytes
            # nbytes == 0: another process fetched it meanwhile; it is linked all the same
            report.fetched.append(entry.relative_path)
            if bar is not None:
                bar.set_postfix(done=len(report.fetched), failed=len(report.failed), refresh=False)
    finally:
        if own_pool:
            pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    for entry in pending_links:
        try:
            if not cache.store.has_blob(entry.file_hash):
                raise ReleaseCacheError("its content failed to download")
            cache.ensure(entry)  # links it and records the use, like every file handed out
            report.reused.append(entry.relative_path)
        except (ReleaseCacheError, OSError) as exc:
            report.failed[entry.relative_path] = str(exc)
    report.seconds = time.monotonic() - start
    log.info("prefetch: %s", report.summary())
    return report


def shard(entries: list[FileEntry], index: int, count: int) -> list[FileEntry]:
    """The part ``index`` (0-based) of ``count`` of ``entries``: deterministic, no coordination.

    Files are assigned by a hash of their content hash, so every job of an array
    computes the same split, and two paths with the same content land in one shard.
    """
    if not (0 <= index < count):
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    return [e for e in entries if int(e.file_hash[:16], 16) % count == index]


__all__ = ["PrefetchPlan", "PrefetchReport", "plan", "prefetch", "shard"]
