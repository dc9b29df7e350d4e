"""Streaming reads: open a remote file at its pinned version without downloading it.

:class:`RemoteFile` is a read-only, seekable binary file object over any
:class:`~releasecache.remote.base.Remote` (S3, HTTP, a mirror). Every read is a
ranged GET pinned to the manifest's ``version_id``, so a later release that
overwrote the key cannot leak into an analysis of an earlier one. Bytes are
fetched in blocks kept in a bounded in-memory cache, with read-ahead that grows
while reads are sequential and shrinks back for random access (the access
pattern of HDF5 metadata). It counts what it fetched (:attr:`RemoteFile.bytes_read`,
:attr:`RemoteFile.requests`), which is how the documentation's "fraction of the
file read" numbers are measured.

Streamed bytes are **not hash-verified** unless the whole file is read in
order: only the full content can be checked against the manifest's blake2b.
Given the expected hash, a :class:`RemoteFile` hashes what it fetches while the
fetches run contiguously from byte 0; once the last byte arrives the hash is
compared (a mismatch raises :class:`~releasecache.errors.IntegrityError`) and
``verified`` becomes True. Otherwise ``verified`` stays False, and a streamed
file is listed with ``"streamed": true`` in the reproducibility record
(:mod:`releasecache.cache.record`).

What arrives unverified is still checked as far as it can be: every answer
must be the version asked for (a server that does not say which version it
sent is refused), come from the host asked (not a redirect elsewhere), and be
exactly the bytes asked for; a body is never read past what was asked, so an
endless one cannot fill memory.

Example
-------
>>> from releasecache.vbn.streaming import open_data, open_nwb      # doctest: +SKIP
>>> with open_data(cache, 870) as fobj:                      # doctest: +SKIP
...     nwbfile = open_nwb(fobj)
...     units = nwbfile.units.to_dataframe()
...     print(f"read {fobj.bytes_read / fobj.size:.1%} of the file")
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from typing import Any

from ..errors import (
    DownloadError,
    IntegrityError,
    ReleaseCacheError,
    RemoteError,
    TransientRemoteError,
    VersionMismatchError,
)
from ..manifest import S3Location
from ..remote.base import RangeNotSatisfiable, Remote
from ..utils import new_hasher
from .retry import RetryPolicy

log = logging.getLogger("releasecache")

KiB = 1024
MiB = 1024 * KiB


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file over a remote object, pinned to one version.

    Parameters
    ----------
    remote
        Where the bytes come from.
    location
        Bucket, key and the pinned version id (e.g. ``FileEntry.location``).
    size
        The object's size in bytes, if known (saves one HEAD request).
    block_size
        Smallest unit fetched and cached. On a real network a request costs a
        round trip, as much time as delay x bandwidth bytes of transfer (1.75 MB
        across regions, 0.3 MB on a laptop), so blocks are 256 KiB: HDF5's scattered
        metadata reads then need few requests, and each costs little more than its
        round trip.
    head_bytes, tail_bytes
        Read when the file is opened, in one request each: HDF5 keeps most of
        its metadata (superblock, object headers, B-trees, heaps) near the start,
        and what was written last near the end. If ``size`` is not given, the head
        comes with the first request, which also tells the size; otherwise at most
        1/32 of the file (head) is read, in the background. The tail is at most
        1/64 of the file, in the background. Reads wait only for the blocks they need.
    max_readahead
        Largest single request while reads are sequential.
    cache_bytes
        Bytes of blocks kept in memory (least recently used are dropped).
    max_attempts
        Tries per request on transient failures (connection resets, 5xx, SlowDown).
    name
        A name for messages (defaults to the key).
    expected_hash
        The manifest's blake2b of the file: when the file is fetched in order to
        its end, the bytes are checked against it.

    Attributes
    ----------
    verified : bool
        True once every byte was fetched in order and matched ``expected_hash``;
        False otherwise (the bytes read are not proven to be the manifest's).
    bytes_read : int
        Bytes fetched from the remote so far (not bytes returned to the reader).
    requests : int
        Ranged GETs made so far. If the size was not given, the first GET (of
        the head, which HDF5 reads first anyway) also tells the size.
    """

    verified = False

    def __init__(
        self,
        remote: Remote,
        location: S3Location,
        *,
        size: int | None = None,
        block_size: int = 256 * KiB,
        max_readahead: int = 8 * MiB,
        head_bytes: int = 1 * MiB,
        tail_bytes: int = 256 * KiB,
        cache_bytes: int = 256 * MiB,
        max_attempts: int = 6,
        name: str | None = None,
        expected_hash: str | None = None,
    ) -> None:
        super().__init__()
        if block_size < 1 or max_readahead < block_size:
            raise ValueError("block_size must be >= 1 and max_readahead >= block_size")
        self.remote = remote
        self.location = location
        self.block_size = block_size
        self.max_blocks = max(1, max_readahead // block_size)
        self.cache_blocks = max(2 * self.max_blocks, cache_bytes // block_size)
        self.max_attempts = max_attempts
        self.name = name or location.key
        self.bytes_read = 0
        self.requests = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0
        self._last_block = -2
        self._run = 1
        self._lock = threading.Lock()
        self.expected_hash = expected_hash
        self._hasher = new_hasher() if expected_hash else None
        self._hashed = 0  # bytes hashed so far, all from byte 0 in order
        self._corrupt: IntegrityError | None = None
        self._count_lock = threading.Lock()  # counters and the in-order hash: background fetches too
        self._pending: list[tuple[int, int, threading.Thread, list]] = []  # background fetches
        if size is None:
            size = self._probe(max(block_size, head_bytes // block_size * block_size))
        self.size = int(size)
        if self._hasher is not None and self._hashed >= self.size:  # all of it came with the probe
            self._hash_complete()
        self._prefetch_ends(head_bytes, tail_bytes)

    # -- io.RawIOBase ----------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(f"negative seek position {pos} in {self.name}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        if self._corrupt is not None:
            raise self._corrupt
        view = memoryview(buffer).cast("B")
        want = min(len(view), max(0, self.size - self._pos))
        if want <= 0:
            return 0
        with self._lock:
            data = self._read_span(self._pos, want)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        self._check_open()
        return self.read(max(0, self.size - self._pos))

    def close(self) -> None:
        for _, _, thread, _ in self._pending:
            thread.join()
        self._pending.clear()
        self._blocks.clear()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"I/O operation on closed file {self.name}")

    @property
    def fraction_read(self) -> float:
        """``bytes_read / size`` (0 for an empty object)."""
        return self.bytes_read / self.size if self.size else 0.0

    def __repr__(self) -> str:
        return (f"<RemoteFile {self.name} version={self.location.version_id} size={self.size} "
                f"read={self.bytes_read} in {self.requests} requests, not hash-verified>")

    # -- blocks ----------------------------------------------------------------

    def _read_span(self, start: int, length: int) -> bytes:
        bs = self.block_size
        if self._pending:
            self._merge_pending(start, start + length)
        if length > self.max_blocks * bs:  # a large read (a whole dataset): one request, not cached
            self._last_block = (start + length - 1) // bs
            return self._fetch(start, start + length - 1)
        first, last = start // bs, (start + length - 1) // bs
        index = first
        while index <= last:
            if index in self._blocks:
                self._blocks.move_to_end(index)
                index += 1
                continue
            # A run of missing blocks that this read needs is fetched at once;
            # sequential access also fetches ahead, growing geometrically.
            needed = 1
            while index + needed <= last and (index + needed) not in self._blocks:
                needed += 1
            sequential = index == self._last_block + 1
            self._run = min(self.max_blocks, self._run * 2) if sequential else 1
            count = max(needed, self._run)
            n_blocks = (self.size + bs - 1) // bs
            count = min(count, n_blocks - index)
            for j in range(needed, count):  # do not re-fetch blocks already cached
                if index + j in self._blocks:
                    count = j
                    break
            self._fetch_blocks(index, count)
            self._last_block = index + count - 1
            index += needed
        parts = [self._blocks[i] for i in range(first, last + 1)]
        data = b"".join(parts) if len(parts) > 1 else parts[0]
        offset = start - first * bs
        return data[offset: offset + length]

    def _fetch_blocks(self, index: int, count: int) -> None:
        bs = self.block_size
        start = index * bs
        end = min(self.size, (index + count) * bs) - 1
        data = self._fetch(start, end)
        for j in range(count):
            self._blocks[index + j] = data[j * bs: (j + 1) * bs]
            self._blocks.move_to_end(index + j)
        while len(self._blocks) > self.cache_blocks:
            self._blocks.popitem(last=False)

    def _store_run(self, index: int, data: bytes) -> None:
        bs = self.block_size
        for j in range(0, len(data), bs):
            self._blocks[index + j // bs] = data[j: j + bs]

    def _prefetch_ends(self, head_bytes: int, tail_bytes: int) -> None:
        """Start background fetches of the head and the tail (one request each)."""
        bs = self.block_size
        n_blocks = (self.size + bs - 1) // bs
        head = max(1, min(head_bytes, self.size // 32) // bs) if self.size else 0
        first_missing = 0
        while first_missing in self._blocks:  # the probe brought the head, or part of it
            first_missing += 1
        if head > first_missing:
            self._background(first_missing, min(head, n_blocks))
        tail_first = max(head, (self.size - min(tail_bytes, self.size // 64)) // bs)
        if tail_bytes and self.size // 64 >= bs and tail_first < n_blocks:
            self._background(tail_first, n_blocks)

    def _background(self, first: int, end: int) -> None:
        bs = self.block_size
        box: list = [None]

        def run() -> None:
            try:
                box[0] = self._fetch(first * bs, min(self.size, end * bs) - 1)
            except Exception as exc:  # a failed prefetch only loses a shortcut: reads fetch on demand
                log.debug("streaming %s: prefetch of blocks %d-%d failed: %s", self.name, first, end - 1, exc)

        thread = threading.Thread(target=run, name="rc-stream-prefetch", daemon=True)
        self._pending.append((first * bs, end * bs, thread, box))
        thread.start()

    def _merge_pending(self, start: int, end: int) -> None:
        """Take in background fetches that finished, and wait for those this read needs."""
        keep = []
        for a, b, thread, box in self._pending:
            if a < end and start < b:
                thread.join()
            if thread.is_alive():
                keep.append((a, b, thread, box))
            elif box[0] is not None:
                self._store_run(a // self.block_size, box[0])
        self._pending = keep
        if self._corrupt is not None:  # a background fetch completed the hash, and it did not match
            raise self._corrupt

    def _context(self, **extra: Any) -> dict[str, Any]:
        return {"path": self.name, "key": self.location.key, "version_id": self.location.version_id, **extra}

    def _probe(self, nbytes: int) -> int:
        """Learn the size from a GET of the first ``nbytes`` (kept: HDF5 reads its head first).

        Asking for the whole head here, not one block, saves the round trip of a
        second request for the rest of it; a file smaller than 32 heads is then read
        up to one head (1 MiB by default), which the data files of a real release
        (hundreds of MB to GB each) never are.
        """
        try:
            self.size = 1 << 62  # unknown until the answer; bounds nothing in _fetch
            data, total = self._fetch(0, nbytes - 1, exact=False)
        except DownloadError as exc:
            if isinstance(exc.__cause__, RangeNotSatisfiable):
                return self._size_after_416(exc)
            raise
        if total is None:
            raise DownloadError(f"streaming {self.name}: the server did not report the object's size").with_context(
                **self._context())
        if data:
            self._store_run(0, data)
            self._note_hashed(0, data)
        self._last_block = max(0, (len(data) - 1) // self.block_size)
        return total

    def _size_after_416(self, exc: DownloadError) -> int:
        """A 416 for byte 0 means an empty object, or a server that refuses a valid range: ask its size."""
        try:
            size = self.remote.stat(self.location)
        except RemoteError as stat_error:
            raise DownloadError(f"streaming {self.name}: the server refused byte 0 (416) and then its size: "
                                f"{stat_error}").with_context(**self._context()) from stat_error
        if size:
            raise DownloadError(f"streaming {self.name}: the server refused a valid range (416) of an object of "
                                f"{size} bytes").with_context(**self._context(expected=size)) from exc
        return 0

    def _check_answer(self, response: Any, start: int) -> None:
        """Refuse an answer that is not provably the pinned version from the host asked."""
        pinned = self.location.version_id
        if self.remote.reports_version and pinned and response.version_id != pinned:
            if response.version_id is not None:
                raise VersionMismatchError(
                    f"{self.name}: asked for version {pinned}, the server sent {response.version_id}; refusing to "
                    "read another version of the file", path=self.name, expected=pinned, actual=response.version_id
                ).with_context(**self._context())
            raise IntegrityError(f"{self.name}: asked for version {pinned}, the server sent no version id; refusing "
                                 "to read bytes that cannot be shown to be that version").with_context(
                **self._context(expected=pinned))
        if response.redirected_to is not None:
            raise RemoteError(
                f"{self.name}: answered by another host ({response.redirected_to}) after a redirect; streamed "
                "bytes are not hash-verified, so they are read only from the remote asked (download the file "
                "instead: it is verified)").with_context(**self._context(url=response.redirected_to))
        if response.partial and response.start != start:
            raise TransientRemoteError(f"{self.name}: asked for byte {start}, the server sent from byte "
                                       f"{response.start}").with_context(**self._context(expected=start,
                                                                                         got=response.start))

    @staticmethod
    def _read_upto(response: Any, limit: int) -> bytes:
        """At most ``limit`` bytes of a body: never more, whatever the server sends."""
        buf = bytearray(limit)
        view = memoryview(buf)
        got = 0
        while got < limit:
            n = response.readinto(view[got:])
            if not n:
                break
            got += n
        view.release()
        del buf[got:]
        return bytes(buf)

    def _fetch(self, start: int, end: int, *, exact: bool = True) -> Any:
        expected = end - start + 1

        def attempt() -> Any:
            with self._count_lock:
                self.requests += 1
            with self.remote.get_range(self.location, start, end) as response:
                self._check_answer(response, start)
                total = response.total_size
                if response.partial:
                    body = self._read_upto(response, expected + 1)  # one more byte tells a body too long
                    with self._count_lock:
                        self.bytes_read += len(body)
                    if len(body) > expected:
                        raise TransientRemoteError(f"{self.name}: the server sent more than the {expected} bytes "
                                                   f"asked for at {start}").with_context(**self._context())
                else:  # the server ignored Range: read up to the last byte wanted, no further
                    if total is None:
                        raise TransientRemoteError(f"{self.name}: the server ignored the Range and did not say the "
                                                   "object's size").with_context(**self._context())
                    body = self._read_upto(response, min(end + 1, total))
                    with self._count_lock:
                        self.bytes_read += len(body)
                    body = body[start:]
            if exact and len(body) != expected:
                raise TransientRemoteError(f"{self.name}: short read at {start}: {len(body)} of {expected} bytes"
                                           ).with_context(**self._context(expected=expected, got=len(body)))
            if not exact:
                want = min(expected, total) if total is not None else len(body)
                if len(body) != want:
                    raise TransientRemoteError(f"{self.name}: short read at {start}: {len(body)} of {want} bytes"
                                               ).with_context(**self._context(expected=want, got=len(body)))
                return body, total
            with self._count_lock:
                self._note_hashed(start, body)
            return body

        return self._retry(attempt, f"GET bytes {start}-{end}")

    def _note_hashed(self, start: int, body: bytes) -> None:
        """Extend the in-order hash with fetched bytes; check it when the last byte is in."""
        if self._hasher is None or not start <= self._hashed <= start + len(body):
            return
        self._hasher.update(memoryview(body)[self._hashed - start:])
        self._hashed = start + len(body)
        if self._hashed >= self.size:
            self._hash_complete()

    def _hash_complete(self) -> None:
        assert self._hasher is not None
        got = self._hasher.hexdigest()
        self._hasher = None
        if got == self.expected_hash:
            self.verified = True
            return
        self._corrupt = IntegrityError(
            f"{self.name}: the streamed bytes do not match the manifest's blake2b ({got[:16]}…, manifest says "
            f"{str(self.expected_hash)[:16]}…); the server sent wrong content").with_context(
                **self._context(expected=self.expected_hash, got=got))
        self._blocks.clear()
        raise self._corrupt

    def _retry(self, fn: Any, what: str) -> Any:
        def give_up(n: int, exc: BaseException) -> str:
            return (f"streaming {self.name} (version {self.location.version_id}): {what} failed after "
                    f"{n} attempts: {exc}")

        policy = RetryPolicy(self.max_attempts, backoff_base=0.1, backoff_max=5.0)  # a reader waits less
        try:
            return policy.call(fn, what=f"streaming {self.name}: {what}", give_up=give_up)
        except RangeNotSatisfiable as exc:
            raise DownloadError(give_up(1, exc)).with_context(**{**exc.context, **self._context()}) from exc
        except DownloadError as exc:  # gave up: say which object, and what the last failure knew
            cause = exc.__cause__
            if isinstance(cause, ReleaseCacheError):
                exc.with_context(**cause.context)
            exc.with_context(**self._context())
            raise


__all__ = ["RemoteFile"]
