"""How downloads behave: part size, concurrency, memory bounds, retry limits."""

from __future__ import annotations

from dataclasses import dataclass

from .retry import RetryPolicy

MiB = 1024 * 1024


@dataclass
class TransferConfig:
    """How downloads behave. The defaults suit both 4 KB and 4 GB files.

    Attributes
    ----------
    part_size
        Bytes per ranged GET. The first GET of every file asks for one part,
        so a small file costs exactly one request.
    max_parts_in_flight
        Ranged GETs running at once across all files of one cache. ``None`` (the
        default): found while downloading, starting at 12, growing while the measured
        throughput grows, halving when the server pushes back (``SlowDown``, 5xx,
        resets), never above ``max_parts``
        (:class:`~releasecache.transfer.concurrency.AdaptiveConcurrency`). A number
        fixes it.
    window
        Parts one file may fetch ahead of its hashing position. ``None`` (the
        default): twice the current parts-in-flight limit plus two, so one large
        file can use every connection the link needs even when one part is slow.
        Parts ahead wait in the page cache, not in the process's memory.
    max_attempts
        Tries per request before giving up on a transient failure.
    backoff_base, backoff_max
        Exponential backoff with jitter: ``min(max, base * 2**n)`` seconds,
        scaled by a random factor in [0.5, 1]; a server's ``Retry-After`` wins.
    integrity_attempts
        Whole-file downloads tried when the hash does not match.
    direct_io
        Write whole-part buffers with ``O_DIRECT`` where the filesystem allows it
        (no page-cache copy, little left for the final fsync). Streamed parts go
        through the page cache, which the in-order hash reads back, and the kernel
        is told to start writing them out at once.
    max_buffered_parts
        The memory budget: whole-part buffers in memory at once across all files
        of one cache (in flight or waiting to be hashed), so they never exceed
        ``max_buffered_parts * part_size`` (96 MiB by default). A part with a
        buffer is read into it, written once (``O_DIRECT`` where aligned) and hashed
        from memory; when the adaptive limit is above the budget (a link that needs
        more parts than there are buffers), parts in flight beyond it stream to disk
        through a 512 KiB read buffer each and are hashed from the page cache, so
        more parts in flight cost little memory.
    max_parts
        The most parts in flight at once across all files of one cache: the ceiling
        of the adaptive limit, the part pool's threads and the connection pool's size
        (64 by default, so at most 32 MiB of read buffers beyond the part buffers).
    """

    part_size: int = 8 * MiB
    max_parts_in_flight: int | None = None
    window: int | None = None
    max_attempts: int = 8
    backoff_base: float = 0.2
    backoff_max: float = 30.0
    integrity_attempts: int = 3
    direct_io: bool = True
    max_buffered_parts: int = 12
    max_parts: int = 64

    def __post_init__(self) -> None:
        if self.part_size < 64 * 1024:
            raise ValueError("part_size must be at least 64 KiB")
        numbers = [self.max_attempts, self.max_buffered_parts, self.max_parts,
                   *(v for v in (self.max_parts_in_flight, self.window) if v is not None)]
        if min(numbers) < 1:
            raise ValueError("max_parts_in_flight, window, max_attempts, max_buffered_parts and max_parts must be >= 1")

    @property
    def max_connections(self) -> int:
        """The most ranged GETs that can run at once (the connection pool a remote needs)."""
        return self.max_parts_in_flight or self.max_parts

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        return RetryPolicy(self.max_attempts, self.backoff_base, self.backoff_max)
