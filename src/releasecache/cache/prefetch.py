"""Bulk prefetch: plan first, then fetch many files at once with one progress display.

The plan says what will be fetched, what is already present for this version,
and what can be reused from other versions (same content, just linked). The
fetch runs on any :class:`concurrent.futures.Executor` (threads by default; a
Dask ``Client.get_executor()`` for a cluster), and one failing file never stops
the others: every failure is reported with its reason.

Ctrl-C stops every transfer in flight (their sockets are cut, nothing is
retried) within about a second, keeps the parts that arrived in ``.partial/``
for the next run, and raises a :class:`KeyboardInterrupt` (see
:func:`~releasecache.errors.interrupted`) with
what was done.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import EndpointUnreachableError, ReleaseCacheError, interrupted
from ..manifest import FileEntry
from ..transfer import CancelToken, FetchOutcome
from ..transfer.resume import read_sidecar
from ..utils import human_bytes as _human
from .record import note_used
from .sizes import load_sizes, remember_sizes

if TYPE_CHECKING:
    from .cloud import CloudCache

log = logging.getLogger("releasecache")

#: Seconds a stopped prefetch waits for its transfers to wind down before it returns.
STOP_GRACE = 1.5


@dataclass
class PrefetchPlan:
    """What a prefetch will do, before it does it.

    ``sizes`` maps content hashes to sizes; ``resumable`` maps the hashes of
    files an interrupted run left in ``.partial/`` to the bytes already there,
    which are not fetched again.
    """

    to_fetch: list[FileEntry] = field(default_factory=list)
    present: list[FileEntry] = field(default_factory=list)
    reusable: list[FileEntry] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    resumable: dict[str, int] = field(default_factory=dict)

    def _bytes(self, entries: list[FileEntry]) -> int | None:
        if any(e.file_hash not in self.sizes for e in entries):
            return None
        return sum(self.sizes[e.file_hash] for e in {e.file_hash: e for e in entries}.values())

    def wire_bytes(self, entry: FileEntry) -> int | None:
        """Bytes of ``entry`` still to cross the wire (its size less what is resumable), if known."""
        size = self.sizes.get(entry.file_hash)
        return None if size is None else size - self.resumable.get(entry.file_hash, 0)

    @property
    def bytes_to_fetch(self) -> int | None:
        """Bytes to download: what will cross the wire, resumed bytes excluded (None if some sizes are unknown)."""
        total = self._bytes(self.to_fetch)
        return None if total is None else total - self.bytes_resumable

    @property
    def bytes_resumable(self) -> int:
        """Bytes of the files to fetch that an interrupted run already downloaded."""
        return sum(self.resumable.get(h, 0) for h in {e.file_hash for e in self.to_fetch})

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
        resumed = f"; {_human(self.bytes_resumable)} more resume from an interrupted run" if self.resumable else ""
        return (f"{len(self.to_fetch)} files to fetch ({fmt(self.bytes_to_fetch)}{resumed}), "
                f"{len(self.present)} present ({fmt(self.bytes_present)}), "
                f"{len(self.reusable)} reusable from other versions ({fmt(self.bytes_reusable)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_fetch": [e.relative_path for e in self.to_fetch],
            "present": [e.relative_path for e in self.present],
            "reusable": [e.relative_path for e in self.reusable],
            "bytes_to_fetch": self.bytes_to_fetch,
            "bytes_resumable": self.bytes_resumable,
            "bytes_present": self.bytes_present,
            "bytes_reusable": self.bytes_reusable,
        }


@dataclass
class PrefetchReport:
    """What a prefetch did.

    ``fetched`` lists the files this run downloaded, ``waited_for`` those another
    process downloaded while this one waited for them; ``bytes_fetched`` counts
    only the bytes that crossed the wire in this run, ``bytes_resumed`` the bytes
    an interrupted run had already downloaded.
    """

    fetched: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    waited_for: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    bytes_resumed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True if no file failed."""
        return not self.failed

    def summary(self) -> str:
        rate = self.bytes_fetched / self.seconds if self.seconds > 0 else 0.0
        text = f"fetched {len(self.fetched)} files ({_human(self.bytes_fetched)} at {_human(rate)}/s"
        if self.bytes_resumed:
            text += f"; {_human(self.bytes_resumed)} more resumed from an interrupted run"
        text += ")"
        if self.waited_for:
            text += f", waited for {len(self.waited_for)} another process fetched"
        text += (f", linked {len(self.reused)} from other versions, {len(self.present)} already present, "
                 f"{len(self.failed)} failed")
        for path, reason in sorted(self.failed.items()):
            text += f"\n  FAILED {path}: {reason}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"fetched": self.fetched, "waited_for": self.waited_for, "reused": self.reused,
                "present": self.present, "failed": self.failed, "bytes_fetched": self.bytes_fetched,
                "bytes_resumed": self.bytes_resumed, "seconds": round(self.seconds, 3)}


def plan(cache: "CloudCache", entries: Iterable[FileEntry], *, stat_remote: bool | None = None,
         max_workers: int = 16, token: CancelToken | None = None) -> PrefetchPlan:
    """Sort entries into fetch / present / reusable, with sizes and resumable bytes.

    Sizes come from the store, the manifest, the sizes remembered in the cache
    (:mod:`releasecache.cache.sizes`), or HEAD requests made concurrently for the
    rest (``stat_remote``: None or True asks, False does not). ``token``'s
    circuit breaker hears whether the remote answers.
    """
    result = PrefetchPlan()
    store = cache.store
    view = cache.manifest.view_dir_name
    remembered = load_sizes(store)
    seen: set[str] = set()
    for entry in entries:
        own = store.own_blob_stat(entry.file_hash)
        found = store.layer_blob(entry.file_hash) if own is None else None  # else in a read-only layer
        if own is not None or found is not None:
            result.sizes[entry.file_hash] = own.st_size if own is not None else found.stat().st_size
            if store.view_is_current(view, entry.relative_path, entry.file_hash):
                result.present.append(entry)
            else:
                result.reusable.append(entry)
            continue
        size = entry.size if entry.size is not None else remembered.get(entry.file_hash)
        if size is not None:
            result.sizes[entry.file_hash] = size
        if entry.file_hash in seen:
            result.reusable.append(entry)  # same content listed twice: fetched once, linked twice
            continue
        seen.add(entry.file_hash)
        result.to_fetch.append(entry)
        state = read_sidecar(store, entry)
        if state is not None:
            result.sizes[entry.file_hash] = state["size"]
            result.resumable[entry.file_hash] = sum(b - a for a, b in state["done"])
    unknown = [e for e in result.to_fetch if e.file_hash not in result.sizes]
    if stat_remote is not False and unknown and cache.remote is not None:
        learned = _stat_all(cache.remote, unknown, max_workers, token)
        result.sizes.update(learned)
        remember_sizes(store, learned)
    return result


def _stat_all(remote: Any, entries: list[FileEntry], max_workers: int, token: CancelToken | None) -> dict[str, int]:
    """Sizes from one listing where the remote can list, else one HEAD per file, concurrently.

    A file that cannot be sized is only left unsized (one log line for all of them).
    """
    breaker = token.breaker if token is not None else None

    def asking(fn: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            result = fn()
        except ReleaseCacheError as exc:
            if breaker is not None:
                breaker.failed(exc, started)
            raise
        if breaker is not None:
            breaker.answered()
        return result

    sizes: dict[str, int] = {}
    problems: list[str] = []
    silent = False
    try:
        listed = asking(lambda: remote.list_sizes([e.location for e in entries]))
    except EndpointUnreachableError as exc:
        listed, silent, problems = None, True, [f"listing: {exc}"]
    except ReleaseCacheError as exc:  # e.g. listing versions is not allowed: ask each file instead
        log.info("cannot list sizes (%s); asking each file", exc)
        listed = None
    if listed is not None:
        sizes.update({e.file_hash: listed[e.location] for e in entries if e.location in listed})
    rest = [e for e in entries if e.file_hash not in sizes]
    if rest and not silent:
        with ThreadPoolExecutor(max_workers) as pool:
            futures = {pool.submit(asking, lambda e=e: remote.stat(e.location)): e for e in rest}
            for fut in as_completed(futures):
                try:
                    sizes[futures[fut].file_hash] = fut.result()
                except ReleaseCacheError as exc:
                    problems.append(f"{futures[fut].relative_path}: {exc}")
    if token is not None:
        token.check()  # the remote stayed silent for the breaker's whole window: stop here
    if problems or len(sizes) < len(entries):
        log.warning("could not learn the size of %d of %d files (the progress total grows as they start)%s",
                    len(entries) - len(sizes), len(entries), f"; first: {problems[0]}" if problems else "")
    return sizes


def fetch_one(cache: "CloudCache", entry: FileEntry, progress: Any = None, token: CancelToken | None = None,
              on_size: Callable[[int, int], None] | None = None) -> FetchOutcome:
    """Fetch one entry (runs in a worker thread or process); say what crossed the wire.

    ``token`` and ``on_size`` (threads only) stop it with the rest of the run,
    and tell the run's progress bar the file's size once known.
    """
    if token is not None:
        token.check()  # queued behind files that were running when the run stopped
    outcome = FetchOutcome(on_size=on_size)
    cache.ensure(entry, progress=progress or (lambda n: None), token=token, outcome=outcome)
    outcome.on_size = None  # travels back from other processes
    return outcome


def prefetch(
    cache: "CloudCache",
    entries: Iterable[FileEntry],
    *,
    executor: Executor | None = None,
    max_files: int = 16,
    progress: bool = True,
    stat_remote: bool | None = None,
) -> PrefetchReport:
    """Fetch many files; see :meth:`releasecache.cache.CloudCache.prefetch`."""
    start = time.monotonic()
    token = CancelToken.for_run()
    if stat_remote is None and not progress:
        stat_remote = False  # sizes only feed the bar's total: without a bar, asking only delays the run
    try:
        the_plan = plan(cache, entries, stat_remote=stat_remote, token=token)
    except EndpointUnreachableError as exc:
        log.error("prefetch: %s", exc)
        raise
    log.info("prefetch plan: %s", the_plan.summary())
    report = PrefetchReport(present=[e.relative_path for e in the_plan.present])
    for entry in the_plan.present:
        note_used(cache, entry)  # handed out like every other file of the run
    # Content already here (from another version, or listed twice) only needs a link.
    pending_links = list(the_plan.reusable)
    bar = None
    if progress and the_plan.to_fetch:
        from tqdm.auto import tqdm  # imported here: only interactive prefetches show a bar

        bar = tqdm(total=the_plan.bytes_to_fetch, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"{len(the_plan.to_fetch)} files", dynamic_ncols=True, smoothing=0.1)
    lock = threading.Lock()

    def tick(n: int) -> None:
        if bar is not None:
            with lock:
                bar.update(n)

    def retotal(delta: int) -> None:
        """Correct the bar's total as files reveal what they really cost (unknown size, waited for)."""
        if bar is not None and delta:
            with lock:
                bar.total = (bar.total or 0) + delta
                bar.refresh()

    def sizer(entry: FileEntry) -> Callable[[int, int], None] | None:
        if the_plan.wire_bytes(entry) is not None:
            return None
        return lambda size, resumed: retotal(size - resumed)

    own_pool = executor is None
    pool = executor or ThreadPoolExecutor(max_files, thread_name_prefix="rc-file")
    in_process = own_pool or isinstance(pool, ThreadPoolExecutor)
    stopped = False
    futures: dict[Any, FileEntry] = {}
    try:
        for entry in the_plan.to_fetch:
            if in_process:
                fut = pool.submit(fetch_one, cache, entry, tick, token, sizer(entry))
            else:
                fut = pool.submit(fetch_one, cache, entry)
            futures[fut] = entry
        for fut in as_completed(futures):
            entry = futures[fut]
            try:
                outcome: FetchOutcome = fut.result()
            except ReleaseCacheError as exc:
                if token.is_set():
                    continue  # the run was stopped for all files: one error, below
                report.failed[entry.relative_path] = str(exc)
                log.error("prefetch: %s failed: %s", entry.relative_path, exc)
                continue
            except OSError as exc:
                report.failed[entry.relative_path] = f"{type(exc).__name__}: {exc}"
                continue
            if not in_process and bar is not None:
                bar.update(outcome.received)
            report.bytes_fetched += outcome.received
            report.bytes_resumed += outcome.resumed
            if outcome.waited or outcome.present:
                report.waited_for.append(entry.relative_path)  # another process brought it in
            else:
                report.fetched.append(entry.relative_path)
            expected = the_plan.wire_bytes(entry)
            if expected is None and outcome.size is not None:
                expected = outcome.size - outcome.resumed
            retotal(outcome.received - (expected or 0))
            if bar is not None:
                bar.set_postfix(done=len(report.fetched), failed=len(report.failed), refresh=False)
    except KeyboardInterrupt:
        stopped = True
        token.cancel()  # every transfer of the run: retry waits wake, sockets are cut
        for fut in futures:
            fut.cancel()
        wait([f for f in futures if not f.done()], timeout=STOP_GRACE)
    finally:
        if own_pool:
            pool.shutdown(wait=not stopped, cancel_futures=True)
        if bar is not None:
            bar.close()
    report.seconds = time.monotonic() - start
    if stopped:
        store = cache.store
        kept = sum(1 for e in the_plan.to_fetch
                   if not store.has_blob(e.file_hash) and store.sidecar_path(e.file_hash).exists())
        raise interrupted(kept, report) from None
    if token.is_set():
        error = token.stopped()
        log.error("prefetch: %s", error)
        error.report = report  # type: ignore[attr-defined]
        raise error
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
