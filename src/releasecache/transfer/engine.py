"""Bytes from a remote into a verified blob.

One file is fetched as concurrent ranged GETs pinned to its version id. Each
part streams to its offset in the partial file one socket read at a time, and
the blake2b is computed in file order by reading the file back from the page
cache up to the first byte not written yet (:mod:`.layout`): memory is one read
buffer per part in flight, whatever the number of parts. Progress is recorded in
a small sidecar next to the partial file, so an interrupted download resumes
with only the missing ranges. Nothing is published until the full hash matches.

Why this module is longer than the others: :class:`Transfer` is one unit. The
parts-in-flight slots, the ordered hash, the resume sidecar, the
cancellation of a run and the final publish are the shared state of one
download, and every method of the class reads or changes it; split across
modules, that state would have to be passed between them. What separates
cleanly lives beside it: :mod:`.config`, :mod:`.concurrency`, :mod:`.layout`,
:mod:`.resume`, :mod:`.retry` and :mod:`.sink`.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import (
    DownloadError,
    EndpointUnreachableError,
    IntegrityError,
    PublisherWarning,
    ReleaseCacheError,
    RemoteError,
    StorageError,
    TransientRemoteError,
    VersionMismatchError,
    interrupted,
)
from ..manifest import FileEntry
from ..remote.base import RangeNotSatisfiable, RangeResponse, Remote
from ..store import Store
from ..store.ingest import discard_download
from ..utils import new_hasher, warn_user
from .cancel import CancelToken
from .concurrency import AdaptiveConcurrency
from .config import MiB, TransferConfig
from .resume import read_sidecar, write_sidecar
from .retry import stop_error
from .layout import Layout, Piece
from .sink import Sink

log = logging.getLogger("releasecache")

READ_SIZE = MiB  # bytes per socket read: small enough for smooth progress and prompt cancels
STREAM_READ = 512 * 1024  # bytes per write of a streamed part: its whole memory
# Parts in flight at first: a long capped link needs them at once, and loopback loses little with them.
START_PARTS = 12  # = the part buffers: where the CPU is the limit, nothing streams
SIDECAR_EVERY = 1.0  # seconds between sidecar updates while parts stream in
Progress = Callable[[int], None]
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass
class FetchOutcome:
    """What one :meth:`Transfer.fetch` did, for honest reports and progress totals.

    Attributes
    ----------
    received
        Bytes that crossed the wire in this call and were kept (a part that broke
        off and was fetched again counts once; bytes resumed from disk not at all).
    resumed
        Bytes an earlier, interrupted run had already written, reused from ``.partial/``.
    size
        The file's size, once known (the manifest, the first response, or the resume state).
    waited
        True if another process fetched the file while this one waited for its lock.
    present
        True if the file was already there (here or in a read-only layer): nothing was fetched.
    on_size
        Called once with ``(size, resumed)`` when the size becomes known, so a
        progress bar can show the bytes still to come as its total.
    """

    received: int = 0
    resumed: int = 0
    size: int | None = None
    waited: bool = False
    present: bool = False
    on_size: Callable[[int, int], None] | None = field(default=None, repr=False, compare=False)

    def sized(self, size: int, resumed: int = 0) -> None:
        """Note the size (and bytes resumed from disk); tell ``on_size`` the first time."""
        first = self.size is None
        self.size, self.resumed = size, resumed
        if first and self.on_size is not None:
            self.on_size(size, resumed)


def _limiter(config: TransferConfig) -> AdaptiveConcurrency:
    """Parts in flight: a fixed number if configured, else adaptive up to ``max_parts``."""
    budget = config.max_parts
    if config.max_parts_in_flight:
        n = min(config.max_parts_in_flight, budget)
        return AdaptiveConcurrency(start=n, minimum=n, maximum=n)
    return AdaptiveConcurrency(start=min(START_PARTS, budget), minimum=min(2, budget), maximum=budget,
                               short_maximum=config.max_buffered_parts)


class Transfer:
    """Fetches manifest entries into a :class:`~releasecache.store.Store`.

    One ``Transfer`` owns a thread pool for ranged parts that every file shares,
    and one limiter of parts in flight across all of them (adaptive by default),
    so total connections and part buffers stay bounded however many files run at once.
    """

    def __init__(self, store: Store, config: TransferConfig | None = None) -> None:
        self.store = store
        self.config = config or TransferConfig()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._free: list[mmap.mmap] = []        # whole-part buffers
        self._free_reads: list[mmap.mmap] = []  # socket-read buffers of streamed parts
        self._part_buffers = 0  # whole-part buffers in use, within max_buffered_parts
        self._active = 0  # downloads running; the buffer pool is emptied when it drops to 0
        self._slots = threading.BoundedSemaphore(self.config.max_parts)
        self._slots_held = 0
        self.limiter = _limiter(self.config)
        self.stats = {"requests": 0, "bytes": 0, "retries": 0, "peak_buffered_parts": 0, "peak_parts": 0,
                      "streamed_parts": 0, "read_buffers": 0}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pool"] = None
        state["_free"] = []
        state["_free_reads"] = []
        state["_part_buffers"] = 0
        state["_active"] = 0
        state["_slots_held"] = 0
        state.pop("_pool_lock", None)
        state.pop("_slots", None)
        state.pop("limiter", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pool_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.config.max_parts)
        self.limiter = _limiter(self.config)

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    # One thread per memory slot: every task holds a slot, so no task ever queues behind
                    # tasks that wait for a parts-in-flight slot a queued first part holds (a deadlock).
                    self._pool = ThreadPoolExecutor(self.config.max_parts, thread_name_prefix="rc-part")
        return self._pool

    @property
    def peak_parts_in_flight(self) -> int:
        """Most ranged GETs that ran at once so far."""
        return self.limiter.peak

    # -- the memory budget and the parts-in-flight limit ------------------------------

    def _take_slot(self, blocking: bool) -> bool:
        """One part of the cache-wide bound on parts submitted (``max_parts``, the pool's threads)."""
        if not self._slots.acquire(blocking=blocking):
            return False
        with self._pool_lock:
            self._slots_held += 1
            self.stats["peak_parts"] = max(self.stats["peak_parts"], self._slots_held)
        return True

    def _part_buffer(self) -> mmap.mmap | None:
        """A whole-part buffer if the memory budget (``max_buffered_parts``) has one free, else None."""
        with self._pool_lock:
            if self._part_buffers >= self.config.max_buffered_parts:
                return None
            self._part_buffers += 1
            self.stats["peak_buffered_parts"] = max(self.stats["peak_buffered_parts"], self._part_buffers)
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.config.part_size)  # page-aligned, so parts can be written with O_DIRECT

    def _give_part_buffer(self, buf: mmap.mmap) -> None:
        with self._pool_lock:
            self._part_buffers -= 1
            if len(self._free) < self.config.max_buffered_parts:
                self._free.append(buf)

    def _give_slot(self) -> None:
        with self._pool_lock:
            self._slots_held -= 1
        self._slots.release()

    def _in_flight(self, cancel: threading.Event | None) -> None:
        """Wait for a parts-in-flight slot (checking ``cancel`` while waiting)."""
        while not self.limiter.acquire(timeout=0.2):
            if cancel is not None and cancel.is_set():
                raise stop_error(cancel)
        if cancel is not None and cancel.is_set():  # a slot freed by a cut part: no new request now
            self.limiter.release()
            raise stop_error(cancel)

    def _get(self, remote: Remote, entry: FileEntry, start: int, end: int | None,
             cancel: threading.Event | None) -> RangeResponse:
        """Open a ranged GET inside a parts-in-flight slot; the caller ends it with ``_done``.

        A transient failure tells the limiter that the server pushed back.
        """
        self._in_flight(cancel)
        try:
            asked = time.monotonic()
            response = remote.get_range(entry.location, start, end)
            self.limiter.waited(time.monotonic() - asked)
            return response
        except TransientRemoteError:
            self.limiter.throttled()
            self.limiter.release()
            raise
        except BaseException:
            self.limiter.release()
            raise

    def _end(self, response: RangeResponse, nbytes: int, started: float,
             failed: BaseException | None = None) -> None:
        """Close a GET opened by ``_get`` and give its slot back, even if closing fails."""
        try:
            response.close()
        finally:
            self._done(nbytes, started, failed)

    def _done(self, nbytes: int, started: float, failed: BaseException | None = None) -> None:
        if isinstance(failed, TransientRemoteError):
            self.limiter.throttled()
        self.limiter.release(nbytes, time.monotonic() - started)

    def close(self) -> None:
        """Stop the part pool (idle threads only; running parts finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # -- public -----------------------------------------------------------------

    def fetch(self, remote: Remote, entry: FileEntry, *, progress: Progress | None = None,
              token: CancelToken | None = None, outcome: FetchOutcome | None = None) -> Path:
        """Make the blob of ``entry`` present and verified; return its path.

        Waits (holding nothing) if another process is downloading the same blob,
        then uses its result. ``token`` stops the download when cancelled (a bulk
        run shares one); without one, Ctrl-C in this thread stops it and raises
        :func:`~releasecache.errors.interrupted`, keeping what arrived for resuming.
        ``outcome``, if given, is filled in with what crossed the wire.
        """
        h = entry.file_hash
        outcome = FetchOutcome() if outcome is None else outcome
        found = self.store.find_blob(h)  # here, or in a read-only layer
        if found is not None:
            outcome.present = True
            return found
        progress = self._counting(progress, outcome)
        own = token is None
        token = CancelToken.for_run() if token is None else token
        with self._pool_lock:
            self._active += 1
        try:
            return self._fetch_locked(remote, entry, progress, token, outcome)
        except KeyboardInterrupt:
            if not own:
                raise
            token.cancel()
            raise interrupted(1 if self.store.sidecar_path(h).exists() else 0) from None
        except ReleaseCacheError as exc:
            _add_context(exc, entry)
            raise
        finally:
            with self._pool_lock:
                self._active -= 1
                if not self._active:
                    self._free.clear()  # an idle process keeps no part buffers
                    self._free_reads.clear()

    @staticmethod
    def _counting(progress: Progress | None, outcome: FetchOutcome) -> Progress:
        """``progress``, also adding every byte to ``outcome.received`` (parts arrive in many threads)."""
        lock = threading.Lock()

        def count(n: int) -> None:
            with lock:
                outcome.received += n
            if progress is not None:
                progress(n)

        return count

    def _fetch_locked(self, remote: Remote, entry: FileEntry, progress: Progress | None,
                      token: CancelToken, outcome: FetchOutcome) -> Path:
        h = entry.file_hash
        lock = self.store.blob_lock(h)
        if not lock.acquire(self.store.lock_timeout, cancel=token):
            raise token.stopped()  # stopped while another process held it
        try:
            found = self.store.find_blob(h)
            if found is not None:  # another process finished it while we waited
                outcome.waited = True
                return found
            last: IntegrityError | None = None
            failures: list[IntegrityError] = []  # of fresh downloads: what the server holds
            attempt = 0
            while attempt < self.config.integrity_attempts:
                resuming = self._read_sidecar(entry) is not None
                try:
                    partial = self._download(remote, entry, progress, token, outcome)
                except IntegrityError as exc:
                    self._discard(h)
                    last = exc
                    if exc.permanent:
                        raise
                    if resuming:  # the partial left by an earlier run was wrong, not this answer: not counted
                        log.warning("%s; the partial download was stale; fetching it again from the start", exc)
                        continue
                    failures.append(exc)
                    attempt += 1
                    log.warning("%s (attempt %d of %d); fetching it again from the start",
                                exc, attempt, self.config.integrity_attempts)
                    continue
                except StorageError:
                    self._discard(h)  # a full disk must not keep a half file around
                    raise
                try:
                    return self.store.publish(partial, h)
                except StorageError:
                    self._discard(h)  # cannot publish (permissions, full disk): leave no orphan behind
                    raise
            warn_if_publisher_mistake(entry, failures)
            raise IntegrityError(
                f"{entry.relative_path}: content did not match the manifest's blake2b after "
                f"{self.config.integrity_attempts} downloads; last problem: {last}"
            ).with_context(**(last.context if last is not None else {}))
        finally:
            lock.release()

    # -- internals --------------------------------------------------------------

    def _discard(self, file_hash: str) -> None:
        discard_download(self.store, file_hash)

    def _retrying(self, what: str, fn: Callable[[], object], cancel: CancelToken | None = None) -> object:
        """``fn`` under the retry policy; the run's circuit breaker hears whether the remote answered."""
        def count(key: str) -> Callable[[], None]:
            return lambda: self.stats.__setitem__(key, self.stats[key] + 1)

        breaker = cancel.breaker if cancel is not None else None
        if breaker is None:
            return self.config.retry.call(fn, what=what, cancel=cancel, on_attempt=count("requests"),
                                          on_retry=count("retries"))

        def attempt() -> object:
            started = time.monotonic()
            try:
                result = fn()
            except EndpointUnreachableError as exc:
                breaker.failed(exc, started)  # may stop the whole run
                raise
            except Exception:
                breaker.answered()  # an error status or a broken body is still an answer
                raise
            breaker.answered()
            return result

        try:
            return self.config.retry.call(attempt, what=what, cancel=cancel, on_attempt=count("requests"),
                                          on_retry=count("retries"))
        except DownloadError as exc:
            if isinstance(exc.__cause__, EndpointUnreachableError):
                breaker.trip(exc.__cause__)  # out of tries without one answer: nobody else should try
                raise cancel.stopped() from None
            raise

    @staticmethod
    def _check_version(entry: FileEntry, response: RangeResponse, remote: Remote) -> None:
        if not remote.reports_version or not entry.version_id or response.version_id is None:
            return
        if response.version_id != entry.version_id:
            raise VersionMismatchError(
                f"{entry.relative_path}: asked for version {entry.version_id} but the server sent "
                f"version {response.version_id}; refusing it",
                path=entry.relative_path, expected=entry.version_id, actual=response.version_id)

    def _read_sidecar(self, entry: FileEntry) -> dict | None:
        return read_sidecar(self.store, entry)

    def _write_sidecar(self, entry: FileEntry, size: int, done: list[list[int]]) -> None:
        write_sidecar(self.store, entry, size, done)

    def _first_part(self, remote: Remote, entry: FileEntry, token: CancelToken,
                    outcome: FetchOutcome) -> tuple[RangeResponse, float]:
        """Open the first GET (one part), which also tells the object's size, and check its headers.

        Returns the open response (watched by ``token``: a cancel cuts it) and when
        its GET started. The body is read by the caller, in the part pool, so the
        other parts start as soon as the headers (``Content-Range``) have told the
        size. A response that is not partial (the server sent the whole object, or
        the object is empty) is returned as it is.
        """

        def attempt() -> tuple[RangeResponse, float]:
            started = time.monotonic()
            try:
                response = self._get(remote, entry, 0, self.config.part_size - 1, token)
            except RangeNotSatisfiable:
                response = self._get(remote, entry, 0, None, token)  # an empty object has no byte 0
            token.watch(response)
            try:
                self._check_version(entry, response, remote)
                whole = response.length if response.length is not None else response.total_size
                if not (response.partial and response.total_size is not None) and whole is not None:
                    outcome.sized(whole)
                if response.partial and response.total_size is not None:
                    outcome.sized(response.total_size)
                    if response.start != 0:
                        raise TransientRemoteError(f"{entry.relative_path}: asked for byte 0, the server sent from "
                                                   f"byte {response.start}").with_context(expected=0, got=response.start)
                    size = response.total_size
                    if entry.size is not None and size != entry.size:
                        err = IntegrityError(
                            f"{entry.relative_path}: server reports {size} bytes, manifest says {entry.size}"
                        ).with_context(expected=entry.size, got=size)
                        err.server_size = size  # type: ignore[attr-defined]
                        raise err
            except BaseException as exc:
                token.unwatch(response)  # before it is closed: a cancel must never cut a pooled connection
                self._end(response, 0, started, exc)
                raise
            return response, started

        return self._retrying(entry.relative_path, attempt, token)  # type: ignore[return-value]

    def _first_body(self, remote: Remote, entry: FileEntry, sink: Sink, layout: Layout, piece: Piece,
                    response: RangeResponse, started: float, progress: Progress | None,
                    cancel: CancelToken) -> None:
        """Stream the first part's body to disk (a pool task); if it breaks, fetch the rest like any part."""
        try:
            try:
                moved = self._stream(response, sink, layout, piece, entry, progress, cancel)
            except TransientRemoteError as exc:
                cancel.unwatch(response)
                self._end(response, 0, started, exc)
                self.stats["retries"] += 1
                log.info("%s: first part: %s; fetching the rest again", entry.relative_path, exc)
                self._fetch_part(remote, entry, sink, layout, piece, progress, cancel, ended=False)
                return
            except BaseException as exc:
                cancel.unwatch(response)
                self._end(response, 0, started, exc)
                raise
            cancel.unwatch(response)
            self._end(response, moved, started)
        finally:
            layout.ended()

    def _download(self, remote: Remote, entry: FileEntry, progress: Progress | None, token: CancelToken,
                  outcome: FetchOutcome) -> Path:
        """Fetch into ``.partial/<hash>`` and verify; return the partial path."""
        h = entry.file_hash
        self.store.make_dir(self.store.partial_dir)
        partial = self.store.partial_path(h)
        state = self._read_sidecar(entry)
        first: tuple[RangeResponse, float] | None = None
        if state is None:
            self._discard(h)
            self._take_slot(blocking=True)  # the first part's slot; this file holds no other
            try:
                response, started = self._first_part(remote, entry, token, outcome)
            except BaseException:
                self._give_slot()
                raise
            if not response.partial or response.total_size is None:
                # The server sent the whole object (an empty object, or Range not honoured).
                try:
                    return self._stream_whole(remote, entry, response, progress)
                finally:
                    token.unwatch(response)
                    self._end(response, 0, started)
                    self._give_slot()
            first = (response, started)
            size = response.total_size or 0
            done: list[list[int]] = []
        else:
            size = state["size"]
            done = state["done"]
            outcome.sized(size, sum(b - a for a, b in done))
            log.info("%s: resuming; %d of %d bytes already here", entry.relative_path,
                     sum(b - a for a, b in done), size)
        sink: Sink | None = None
        try:
            try:
                fd = os.open(partial, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)  # the umask decides
            except OSError as exc:
                raise StorageError.from_os_error(exc, f"cannot create {partial}") from None
            sink = Sink(partial, fd, direct=self.config.direct_io)
            if state is None:
                try:
                    os.ftruncate(fd, size)
                except OSError as exc:
                    raise StorageError.from_os_error(exc, f"cannot write {partial}") from None
                if size > self.config.part_size:  # a file done in one GET has nothing to resume
                    self._write_sidecar(entry, size, done)
        except BaseException:
            if first is not None:  # nothing will read the first part's body now: end it, free its slots
                token.unwatch(first[0])
                self._end(first[0], 0, first[1])
                self._give_slot()
            if sink is not None:
                sink.close()
            raise
        try:
            digest = self._fetch_parts(remote, entry, sink, size, done, first, progress, token)
        finally:
            sink.close()
        if digest != h:
            err = IntegrityError(f"{entry.relative_path}: blake2b of the downloaded bytes is {digest[:16]}…, "
                                 f"manifest says {h[:16]}…").with_context(expected=h, got=digest)
            err.digest = digest  # type: ignore[attr-defined]
            raise err
        try:
            os.unlink(self.store.sidecar_path(h))
        except OSError:
            pass
        return partial

    def _buffer(self) -> mmap.mmap:
        """A socket-read buffer from the pool (reused, so memory stays flat over long jobs)."""
        with self._pool_lock:
            if self._free_reads:
                return self._free_reads.pop()
            self.stats["read_buffers"] += 1
        return mmap.mmap(-1, STREAM_READ)

    def _recycle(self, buf: mmap.mmap) -> None:
        with self._pool_lock:
            if len(self._free_reads) < self.config.max_parts:
                self._free_reads.append(buf)

    def _stream(self, response: RangeResponse, sink: Sink, layout: Layout, piece: Piece, entry: FileEntry,
                progress: Progress | None, cancel: CancelToken | None) -> int:
        """Read the body of ``response`` (the rest of ``piece``) and write it at its offsets; return its bytes.

        A piece with a whole-part buffer (``piece.buffer``) is read into it and written once
        (``O_DIRECT`` where aligned); the hash reads it from there. Any other piece streams:
        every 512 KiB read is written (page cache) before ``layout`` hears of it, and the hash
        reads it back from the page cache. Either way a sidecar only ever sees written
        bytes, and what arrived is written and kept if the connection breaks.
        """
        expected = piece.end - piece.next_offset
        if response.length is not None and response.length != expected:
            raise TransientRemoteError(
                f"{entry.relative_path}: server announced {response.length} bytes for a range of {expected} "
                f"(offset {response.start})")
        whole = piece.buffer is not None
        if whole:
            buf, base = piece.buffer, piece.written  # the part's bytes so far are in the buffer
        else:
            buf, base = self._buffer(), 0
            self.stats["streamed_parts"] += 1
        view = memoryview(buf)
        got = 0       # bytes read in this call
        pending = 0   # of those, not written yet (whole-part buffer: all until the end)
        try:
            ended = False
            while got < expected and not ended:
                if cancel is not None and cancel.is_set():
                    raise stop_error(cancel)
                # Fill a whole read before writing: a socket read may return a few kB, and each
                # write wakes the hashing thread.
                at = base + got if whole else 0
                want = min(READ_SIZE if whole else STREAM_READ, expected - got)
                filled = 0
                while filled < want:
                    n = response.readinto(view[at + filled:at + want])
                    if not n:
                        ended = True
                        break
                    filled += n
                    if whole:
                        got += n
                        pending += n
                if not filled:
                    break
                if not whole:
                    sink.write(view[:filled], piece.next_offset)
                    got += filled
                    layout.wrote(piece, filled)
                if progress:
                    progress(filled)
            if got != expected:
                raise TransientRemoteError(
                    f"{entry.relative_path}: connection ended after {got} of {expected} bytes "
                    f"(offset {response.start})")
            if response.length is None and response.readinto(memoryview(bytearray(1))):
                raise TransientRemoteError(
                    f"{entry.relative_path}: server sent more than the {expected} bytes asked for "
                    f"(from offset {response.start})")
        finally:
            if pending:  # what reached the buffer is written, even when the connection broke
                sink.write(view[base:base + pending], piece.next_offset)
                layout.wrote(piece, pending)
            view.release()
            if not whole:
                self._recycle(buf)
            self.stats["bytes"] += got
        return got

    def _whole_limit(self, remote: Remote, entry: FileEntry, response: RangeResponse) -> int:
        """The most bytes a full answer may hold: the manifest's size, the announced one, else a HEAD's."""
        for known in (entry.size, response.length, response.total_size):
            if known is not None:
                return known
        try:  # a body without a length (chunked, or ended by closing) could go on forever
            return remote.stat(entry.location)
        except RemoteError as exc:
            raise DownloadError(f"{entry.relative_path}: the server sent the whole object without saying its "
                                f"size, and would not tell it: {exc}").with_context(**exc.context) from exc

    def _stream_whole(self, remote: Remote, entry: FileEntry, response: RangeResponse,
                      progress: Progress | None) -> Path:
        """Write a full (non-ranged) answer to the partial file, hashing as it streams.

        Never more than the object's size is read: a body that never ends is cut
        off one chunk past it.
        """
        h = entry.file_hash
        partial = self.store.partial_path(h)
        hasher = new_hasher()
        limit = self._whole_limit(remote, entry, response)
        got = 0
        try:
            with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o666), "wb") as fh:
                for chunk in response.chunks:
                    got += len(chunk)
                    if got > limit:
                        break
                    hasher.update(chunk)
                    fh.write(chunk)
                    if progress:
                        progress(len(chunk))
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"cannot write {partial}") from None
        except TransientRemoteError as exc:
            if progress and got:
                progress(-got)
            raise IntegrityError(f"{entry.relative_path}: the connection broke after {got} bytes ({exc})"
                                 ).with_context(expected=limit, got=got) from None
        if got > limit:
            if progress:
                progress(-(got - len(chunk)))
            raise IntegrityError(f"{entry.relative_path}: the server sent more than the {limit} bytes the object "
                                 "has; stopped reading").with_context(expected=limit, got=got)
        expected = response.length if response.length is not None else response.total_size
        if expected is not None and got != expected:
            raise IntegrityError(f"{entry.relative_path}: got {got} bytes, server announced {expected}"
                                 ).with_context(expected=expected, got=got)
        if entry.size is not None and got != entry.size:
            raise IntegrityError(f"{entry.relative_path}: got {got} bytes, manifest says {entry.size}"
                                 ).with_context(expected=entry.size, got=got)
        self.stats["bytes"] += got
        digest = hasher.hexdigest()
        if digest != h:
            raise IntegrityError(f"{entry.relative_path}: blake2b of the downloaded bytes does not match the manifest"
                                 ).with_context(expected=h, got=digest)
        return partial

    def _fetch_part(self, remote: Remote, entry: FileEntry, sink: Sink, layout: Layout, piece: Piece,
                    progress: Progress | None, cancel: CancelToken, ended: bool = True) -> None:
        """Fetch the rest of ``piece`` with retries, streaming it to its offsets.

        A connection that breaks keeps what it wrote; the next attempt asks for the rest.
        """
        def attempt() -> None:
            start = piece.next_offset
            if start >= piece.end:
                return
            started = time.monotonic()
            response = self._get(remote, entry, start, piece.end - 1, cancel)
            cancel.watch(response)
            moved, failed = 0, None
            try:
                self._check_version(entry, response, remote)
                if not response.partial or response.start != start:
                    raise RemoteError(f"{entry.relative_path}: server ignored the Range header "
                                      f"(asked for offset {start})").with_context(expected=start, got=response.start)
                if response.total_size is not None and response.total_size != layout.size:
                    raise IntegrityError(f"{entry.relative_path}: object size changed from {layout.size} to "
                                         f"{response.total_size} during the download"
                                         ).with_context(expected=layout.size, got=response.total_size)
                before = piece.written
                try:
                    self._stream(response, sink, layout, piece, entry, progress, cancel)
                finally:
                    moved = piece.written - before
            except BaseException as exc:
                failed = exc
                raise
            finally:
                cancel.unwatch(response)  # before it is closed: a cancel must never cut a pooled connection
                self._end(response, moved, started, failed)

        try:
            self._retrying(f"{entry.relative_path} bytes {piece.start}-{piece.end - 1}", attempt, cancel)
        finally:
            if ended:
                layout.ended()

    @staticmethod
    def _open_for_hashing(sink: Sink) -> int:
        """A read-only descriptor of the partial file (some FUSE filesystems cannot read through the
        one parts are written with, whatever its flags)."""
        try:
            return os.open(sink.path, os.O_RDONLY | _NOFOLLOW)
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"cannot read {sink.path}", path=str(sink.path)) from None

    def _window(self) -> int:
        """Parts one file may fetch ahead of its hashing position."""
        return self.config.window or 2 * self.limiter.limit + 2

    def _fetch_parts(self, remote: Remote, entry: FileEntry, sink: Sink, size: int, done: list[list[int]],
                     first: tuple[RangeResponse, float] | None, progress: Progress | None,
                     token: CancelToken) -> str:
        """Fetch every missing byte and return the blake2b of the whole file, hashed in order.

        Parts are written at their offsets in the partial file; this thread hashes the
        file up to the first byte not written yet, from a part's buffer where it has one
        (within the memory budget) and from the page cache where it streamed, while
        parts run ahead (at most :meth:`_window` parts). ``first`` is the open first GET
        (its body not read yet, its part slot taken), or None when resuming. A part that fails for
        good stops this file's other parts; cancelling ``token`` (Ctrl-C, a dead server)
        stops them all and cuts their sockets.
        """
        cfg = self.config
        layout = Layout(size, cfg.part_size, done)
        to_fetch = layout.to_fetch
        hasher = new_hasher()
        cancel = token.child()
        futures: dict[Future, Piece] = {}
        first_future: Future | None = None
        next_submit = 0
        if first is not None:
            piece = to_fetch[0]
            piece.buffer = self._part_buffer()
            first_future = self.pool.submit(self._first_body, remote, entry, sink, layout, piece, first[0],
                                            first[1], progress, cancel)
            futures[first_future] = piece
            next_submit = 1
        pos = 0
        buf = self._buffer()
        view = memoryview(buf)
        recorded, recorded_bytes = time.monotonic(), 0  # when the sidecar was last written, and what it held
        read_fd: int | None = None
        try:
            while pos < size:
                seen = layout.finished  # read first: a fetch that ends after this wakes the wait below
                # Keep the link busy: fetch ahead of the hashing position, but not too far.
                horizon = pos + self._window() * cfg.part_size
                while (next_submit < len(to_fetch) and len(futures) < self.limiter.limit
                       and to_fetch[next_submit].start < horizon):
                    # Wait for a memory slot only while no part of this file runs: a running
                    # part gives its slot back without waiting for anything this thread does.
                    piece = to_fetch[next_submit]
                    buffer = self._part_buffer()
                    if (buffer is None and self.limiter.limit <= cfg.max_buffered_parts
                            and (futures or any(p.buffer is not None for p in to_fetch[:next_submit]))):
                        # Out of part buffers while the limit is within the budget: the hash, not the
                        # link, is behind (loopback, in-region). Streaming would only add copying;
                        # wait for this file's parts instead (a file holding none streams, never waits).
                        break
                    if not self._take_slot(blocking=not futures):
                        if buffer is not None:
                            self._give_part_buffer(buffer)
                        break
                    piece.buffer = buffer  # None beyond the memory budget: it streams
                    fut = self.pool.submit(self._fetch_part, remote, entry, sink, layout, piece, progress, cancel)
                    futures[fut] = piece
                    next_submit += 1
                # Hash everything written from the current position.
                end = layout.readable_end(pos)
                while pos < end:
                    piece = layout.piece_at(pos)
                    stop = min(end, piece.end)
                    if piece.buffer is not None:
                        with memoryview(piece.buffer) as part:
                            hasher.update(part[pos - piece.start:stop - piece.start])
                        pos = stop
                        if pos == piece.end:
                            self._give_part_buffer(piece.buffer)
                            piece.buffer = None
                        continue
                    if read_fd is None:
                        read_fd = self._open_for_hashing(sink)
                    try:
                        n = os.preadv(read_fd, [view[:min(STREAM_READ, stop - pos)]], pos)
                    except OSError as exc:
                        raise StorageError.from_os_error(exc, f"cannot read {sink.path}",
                                                         path=str(sink.path)) from None
                    if not n:
                        raise IntegrityError("partial file is shorter than its parts say")
                    hasher.update(view[:n])
                    pos += n
                if pos >= size:
                    break
                finished = [f for f in futures if f.done()]
                for fut in finished:
                    futures.pop(fut)
                    self._give_slot()
                    fut.result()  # raises the part's error
                if size > cfg.part_size:  # a one-part file has nothing to resume
                    # After every part, and every second while parts stream in: a process killed
                    # mid-part resumes after the bytes it wrote.
                    now = time.monotonic()
                    if finished or (now - recorded >= SIDECAR_EVERY and layout.written != recorded_bytes):
                        recorded, recorded_bytes = now, layout.written
                        self._write_sidecar(entry, size, layout.done_ranges())
                if finished:
                    continue
                if not futures and next_submit >= len(to_fetch):
                    raise AssertionError("download stalled with nothing in flight")
                layout.wait(pos, seen, 0.25)
            # Every byte is hashed; the last parts may still be closing their responses.
            for fut in list(futures):
                futures.pop(fut)
                self._give_slot()
                fut.result()
        except BaseException:
            cancel.cancel()  # wakes retry and slot waits, cuts the sockets of the parts being read
            for fut in futures:
                fut.cancel()
            wait(list(futures))  # let running parts stop before the fd closes
            if first_future is not None and first_future.cancelled() and first is not None:
                cancel.unwatch(first[0])
                self._end(first[0], 0, first[1])  # its body was never read: end the GET
            for _ in futures:
                self._give_slot()
            futures.clear()
            try:
                self._write_sidecar(entry, size, layout.done_ranges())  # what got written is kept
            except StorageError:
                pass
            raise
        finally:
            cancel.release()
            view.release()
            self._recycle(buf)
            if read_fd is not None:
                os.close(read_fd)
            for piece in to_fetch:  # parts not hashed (a failure): their buffers go back
                if piece.buffer is not None:
                    self._give_part_buffer(piece.buffer)
                    piece.buffer = None
        return hasher.hexdigest()


def warn_if_publisher_mistake(entry: FileEntry, failures: list[IntegrityError]) -> str | None:
    """Warn (:class:`~releasecache.errors.PublisherWarning`) if failed downloads agree on what the server holds.

    A transfer error differs from one download to the next; a server object that
    every download finds with the same size or the same (wrong) blake2b is
    simply not what the manifest describes: a publisher's mistake. Returns the
    message, or None if the failures do not show one.
    """
    where = f"s3://{entry.bucket}/{entry.key} version {entry.version_id or '(unpinned)'}"
    sizes = {getattr(f, "server_size", None) for f in failures}
    digests = {getattr(f, "digest", None) for f in failures}
    message = None
    if len(failures) >= 2 and len(sizes) == 1 and None not in sizes:
        message = (f"{entry.relative_path}: the server's object {where} has {sizes.pop()} bytes in every one of "
                   f"{len(failures)} downloads, the manifest says {entry.size}: the manifest does not describe "
                   "the object it pins")
    elif len(failures) >= 2 and len(digests) == 1 and None not in digests:
        message = (f"{entry.relative_path}: the server's object {where} has blake2b {digests.pop()[:16]}… in every "
                   f"one of {len(failures)} downloads, the manifest says {entry.file_hash[:16]}…: the manifest "
                   "does not describe the object it pins (unless something between here and the server rewrites "
                   "the bytes the same way every time)")
    if message:
        warn_user(message, PublisherWarning)
    return message


def _add_context(exc: ReleaseCacheError, entry: FileEntry) -> None:
    """Name the file on an error (and what the error it wraps knew), keeping what is already set."""
    cause = exc.__cause__
    context = dict(cause.context) if isinstance(cause, ReleaseCacheError) else {}
    context.update(path=entry.relative_path, url=entry.url, key=entry.key, version_id=entry.version_id or None,
                   file_hash=entry.file_hash)
    exc.fill_context(**context)
