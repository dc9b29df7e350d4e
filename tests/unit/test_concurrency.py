"""The adaptive concurrency limiter, driven by a simulated link (a fake clock, no server)."""

from __future__ import annotations

import pytest

from releasecache.transfer.concurrency import AdaptiveConcurrency


def IDLE() -> tuple[float, float]:  # noqa: N802 - a constant-like fake: the machine never looks busy
    return 0.0, 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(ctl: AdaptiveConcurrency, clock: Clock, rate_for, seconds: float, part: int = 1 << 20) -> None:
    """Keep every allowed slot busy on a simulated link (discrete events): a part started while
    ``n`` parts are in flight moves at ``rate_for(n) / n``."""
    import heapq

    end = clock.now + seconds
    running: list[tuple[float, float]] = []  # (finish time, start time)
    while clock.now < end:
        while ctl.try_acquire():
            n = ctl.in_flight
            heapq.heappush(running, (clock.now + part / (rate_for(n) / n), clock.now))
        finish, started = heapq.heappop(running)
        clock.now = finish
        ctl.release(part, finish - started)


def test_grows_while_throughput_grows_then_settles():
    clock = Clock()
    ctl = AdaptiveConcurrency(start=2, minimum=2, maximum=64, epoch=0.2, clock=clock, cpu_load=IDLE)
    # 25 MB/s per connection up to 24 connections, then a 600 MB/s ceiling.
    drive(ctl, clock, lambda n: min(n, 24) * 25e6, seconds=30)
    assert ctl.limit >= 24
    assert ctl.peak <= 64
    settled = ctl.limit
    drive(ctl, clock, lambda n: min(n, 24) * 25e6, seconds=10)
    assert ctl.limit == settled  # a flat rate stops the growth


def test_never_exceeds_its_maximum():
    clock = Clock()
    ctl = AdaptiveConcurrency(start=4, maximum=12, epoch=0.1, clock=clock, cpu_load=IDLE)
    drive(ctl, clock, lambda n: n * 10e6, seconds=30)  # more connections always help
    assert ctl.limit == 12 and ctl.peak == 12


def test_flat_link_keeps_the_start():
    clock = Clock()
    ctl = AdaptiveConcurrency(start=4, maximum=64, epoch=0.1, clock=clock, cpu_load=IDLE)
    drive(ctl, clock, lambda n: 40e6, seconds=20)  # a shared 40 MB/s link: more parts gain nothing
    # The first measurement doubles (nothing is known yet); a flat rate then stops the growth.
    assert ctl.limit == 8


def test_throttling_halves_the_limit():
    clock = Clock()
    ctl = AdaptiveConcurrency(start=16, minimum=2, maximum=64, clock=clock, cpu_load=IDLE)
    ctl.throttled()
    assert ctl.limit == 8
    for _ in range(5):
        ctl.throttled()
    assert ctl.limit == 2


def test_no_growth_without_demand():
    clock = Clock()
    ctl = AdaptiveConcurrency(start=4, maximum=64, epoch=0.1, clock=clock, cpu_load=IDLE)
    for _ in range(200):  # one part at a time: the limit is not what holds anything back
        assert ctl.try_acquire()
        clock.now += 0.05
        ctl.release(1 << 20, 0.05)
    assert ctl.limit == 4


def test_bounds_are_checked():
    with pytest.raises(ValueError):
        AdaptiveConcurrency(minimum=0)
    with pytest.raises(ValueError):
        AdaptiveConcurrency(minimum=8, maximum=4)


def test_a_cpu_bound_link_does_not_grow():
    # More parts always move more bytes on this link, but the machine's cores are 95% busy:
    # the limit stays where it started (more parts would only add copying).
    clock = Clock()
    ctl = AdaptiveConcurrency(start=16, maximum=64, epoch=0.1, clock=clock,
                              cpu_load=lambda: (0.95 * clock.now, clock.now))
    drive(ctl, clock, lambda n: n * 10e6, seconds=20)
    assert ctl.limit == 16 and ctl.cpu_bound_epochs > 0


def test_idle_cores_let_it_grow():
    clock = Clock()
    ctl = AdaptiveConcurrency(start=16, maximum=64, epoch=0.1, clock=clock,
                              cpu_load=lambda: (0.6 * clock.now, clock.now))
    drive(ctl, clock, lambda n: n * 10e6, seconds=20)
    assert ctl.limit == 64 and ctl.cpu_bound_epochs == 0
