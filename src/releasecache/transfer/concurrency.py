"""How many ranged GETs to keep in flight, found while downloading (no tuning needed).

A link's best concurrency depends on things a library cannot know in advance: the
per-connection cap of the server, the round-trip time, a shared last mile. On loopback
eight parts saturate the CPU; against S3 across regions each connection moves a few tens
of MB/s and thirty parts are not too many. :class:`AdaptiveConcurrency` starts small and
grows the number of parts in flight while the measured throughput keeps growing, holds it
when it stops growing, and halves it when the server pushes back (``SlowDown``, 503,
resets), always within a hard maximum set by the memory budget.

Throughput is measured over *epochs*: an epoch starts with the first part after an idle
spell, and ends when at least ``epoch`` seconds and one part's duration have passed and
half the slots have completed a part; its rate is compared with the previous level's. Growth needs demand: if fewer parts were wanted than
allowed, the limit is not what holds the download back, and it is left alone. Growth also needs
idle CPU: an epoch in which the machine's cores were (nearly) all busy was bound by hashing and
copying (ours, the server's, anyone's), not by the link, and more parts would only add work (on
loopback and in-region links, the first epoch's gain over a cold start would otherwise look like
a reason to grow).
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class AdaptiveConcurrency:
    """A counting limiter whose limit adapts to measured throughput.

    Parameters
    ----------
    start
        Parts in flight allowed at first.
    minimum, maximum
        Bounds of the limit; ``maximum`` is the memory budget in parts.
    epoch
        Shortest measuring interval in seconds.
    growth
        A level counts as faster when its rate is at least ``growth`` times the previous level's.
    clock
        Time source (monotonic seconds).
    cpu_load
        ``(busy, total)`` CPU time of the machine so far (any unit); None: never judge an
        epoch CPU-bound. The default reads ``/proc/stat`` where there is one.
    busy
        Fraction of the machine's CPU time busy in an epoch that counts as CPU-bound.
    short_maximum, long_link
        The limit stays within ``short_maximum`` (default ``maximum``) unless the shortest wait
        for a response's headers (:meth:`waited`) is at least ``long_link`` seconds: only a long
        link (across regions, a laptop's) needs more parts than that; on loopback and in-region
        the CPU is the limit well before, and the first epochs' warm-up can look like a gain.

    Attributes
    ----------
    peak : int
        Most parts ever in flight at once.
    history : list of tuple
        ``(time, limit, bytes per second)`` at the end of each epoch, for diagnostics.
    """

    def __init__(self, start: int = 4, minimum: int = 2, maximum: int = 32, *, epoch: float = 0.25,
                 growth: float = 1.25, clock: Callable[[], float] = time.monotonic,
                 cpu_load: Callable[[], tuple[float, float]] | None = None,
                 busy: float = 0.9, short_maximum: int | None = None, long_link: float = 0.015) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum, self.maximum = minimum, maximum
        self._limit = max(minimum, min(start, maximum))
        self.epoch, self.growth, self.clock = epoch, growth, clock
        self.cpu_load = cpu_load if cpu_load is not None else machine_cpu_load()
        self.busy = busy
        self.short_maximum = min(maximum, short_maximum or maximum)
        self.long_link = long_link
        self.shortest_wait: float | None = None  # seconds from a request to its headers, the least seen
        self.in_flight = 0
        self.peak = 0
        self.history: list[tuple[float, int, float]] = []
        self.cpu_bound_epochs = 0  # epochs that did not grow because every core was busy
        self._cond = threading.Condition()
        self._settled = 0        # epochs in a row without a gain: two settle the limit
        self._best: float | None = None  # rate at the previous level
        self._reset_epoch(clock())
        self._part_seconds = 0.0  # running mean of one part's duration

    @property
    def limit(self) -> int:
        """Parts allowed in flight now."""
        return self._limit

    def _reset_epoch(self, now: float) -> None:
        self._t0 = now
        self._cpu0 = self.cpu_load() if self.cpu_load is not None else (0.0, 0.0)
        self._bytes = 0
        self._done = 0
        self._demand = False

    # -- slots ----------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot if one is free now."""
        with self._cond:
            if self.in_flight >= self._limit:
                self._demand = True
                return False
            self._take()
            return True

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a slot (at most ``timeout`` seconds); True if taken."""
        with self._cond:
            if self.in_flight >= self._limit:
                self._demand = True
                if not self._cond.wait_for(lambda: self.in_flight < self._limit, timeout):
                    return False
            self._take()
            return True

    def _take(self) -> None:
        if self.in_flight == 0 and self._done == 0:
            self._reset_epoch(self.clock())  # idle until now: the epoch starts with the first part
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self._limit:
            self._demand = True

    def release(self, nbytes: int = 0, seconds: float | None = None) -> None:
        """Give a slot back after a part moved ``nbytes`` in ``seconds``."""
        with self._cond:
            self.in_flight -= 1
            self._bytes += nbytes
            self._done += 1
            if seconds is not None:
                self._part_seconds = seconds if not self._part_seconds else 0.8 * self._part_seconds + 0.2 * seconds
            self._maybe_adapt()
            self._cond.notify_all()

    def waited(self, seconds: float) -> None:
        """A request waited ``seconds`` for its response's headers (a round trip and the server's time)."""
        with self._cond:
            if self.shortest_wait is None or seconds < self.shortest_wait:
                self.shortest_wait = seconds

    def _ceiling(self) -> int:
        long = self.shortest_wait is not None and self.shortest_wait >= self.long_link
        return self.maximum if long else self.short_maximum

    def throttled(self) -> None:
        """The server pushed back (SlowDown, 503, a reset): halve the limit and measure again."""
        with self._cond:
            self._limit = max(self.minimum, self._limit // 2)
            self._best = None
            self._settled = 0
            self._reset_epoch(self.clock())

    # -- adapting ---------------------------------------------------------------------

    def _maybe_adapt(self) -> None:
        now = self.clock()
        elapsed = now - self._t0
        if elapsed < max(self.epoch, self._part_seconds) or 2 * self._done < self._limit:
            return
        rate = self._bytes / elapsed if elapsed > 0 else 0.0
        cpu_bound = False
        if self.cpu_load is not None:
            busy, total = self.cpu_load()
            spent = total - self._cpu0[1]
            cpu_bound = spent > 0 and (busy - self._cpu0[0]) / spent >= self.busy
        self.history.append((now, self._limit, rate))
        demand = self._demand
        self._reset_epoch(now)
        ceiling = self._ceiling()
        if not demand or self._settled >= 2 or self._limit >= ceiling:
            return
        if cpu_bound:
            self.cpu_bound_epochs += 1
            self._best = rate if self._best is None else max(self._best, rate)
            return
        if self._best is None or rate >= self._best * self.growth:
            # The first measurement and nearly linear gains (more parts, proportionally more
            # bytes) double the limit, like TCP's slow start; smaller gains add half.
            doubling = self._best is None or rate >= self._best * 1.5
            self._best = rate
            self._settled = 0
            step = self._limit if doubling else max(1, self._limit // 2)
            self._limit = min(ceiling, self._limit + step)
        else:
            self._settled += 1
            self._best = max(self._best, rate)


def _proc_stat() -> tuple[float, float]:
    with open("/proc/stat", "rb") as fh:
        fields = [int(v) for v in fh.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields)
    return float(total - idle), float(total)


def machine_cpu_load() -> Callable[[], tuple[float, float]] | None:
    """``(busy, total)`` CPU ticks of the whole machine (Linux), or None where that cannot be read."""
    try:
        _proc_stat()
    except (OSError, ValueError, IndexError):
        return None
    return _proc_stat


__all__ = ["AdaptiveConcurrency"]
