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
        Ranged GETs running at once for one file (also the size of the shared
        connection pool used by all files).
    window
        Parts that may be fetched ahead of the hashing position; bounds memory
        to about ``window * part_size`` per file.
    max_attempts
        Tries per request before giving up on a transient failure.
    backoff_base, backoff_max
        Exponential backoff with jitter: ``min(max, base * 2**n)`` seconds,
        scaled by a random factor in [0.5, 1]; a server's ``Retry-After`` wins.
    integrity_attempts
        Whole-file downloads tried when the hash does not match.
    direct_io
        Write aligned parts with ``O_DIRECT`` where the filesystem allows it
        (no page-cache copy, little left for the final fsync).
    max_buffered_parts
        Parts in memory at once across all files of one cache (besides each
        file's first part): with many files at once, memory stays near
        ``(max_buffered_parts + files) * part_size``.
    """

    part_size: int = 8 * MiB
    max_parts_in_flight: int = 8
    window: int = 10
    max_attempts: int = 8
    backoff_base: float = 0.2
    backoff_max: float = 30.0
    integrity_attempts: int = 3
    direct_io: bool = True
    max_buffered_parts: int = 12

    def __post_init__(self) -> None:
        if self.part_size < 64 * 1024:
            raise ValueError("part_size must be at least 64 KiB")
        if min(self.max_parts_in_flight, self.window, self.max_attempts, self.max_buffered_parts) < 1:
            raise ValueError("max_parts_in_flight, window, max_attempts and max_buffered_parts must be >= 1")

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        return RetryPolicy(self.max_attempts, self.backoff_base, self.backoff_max)
