"""Which bytes of a partial download may be hashed: pieces written out of order, resumed ranges."""

from __future__ import annotations

import threading

from releasecache.transfer.layout import Layout


def test_pieces_follow_the_part_grid_and_skip_resumed_bytes():
    layout = Layout(100, 30, [[10, 40], [90, 100]])
    spans = [(p.start, p.end, p.fetch) for p in layout.pieces]
    assert spans == [(0, 10, True), (10, 30, False), (30, 40, False), (40, 60, True), (60, 90, True),
                     (90, 100, False)]
    assert [(p.start, p.end) for p in layout.to_fetch] == [(0, 10), (40, 60), (60, 90)]


def test_the_hash_reads_up_to_the_first_gap_whatever_order_bytes_arrive_in():
    layout = Layout(90, 30, [])
    first, second, third = layout.pieces
    layout.wrote(third, 30)  # the last part finishes first
    layout.wrote(second, 12)
    assert layout.readable_end(0) == 0  # nothing before the front part's bytes
    layout.wrote(first, 7)
    assert layout.readable_end(0) == 7  # the front part's prefix, as it grows
    layout.wrote(first, 23)
    assert layout.readable_end(7) == 42  # the front part, then the written prefix of the next
    layout.wrote(second, 18)
    assert layout.readable_end(42) == 90


def test_a_sidecar_promises_written_prefixes_only():
    layout = Layout(90, 30, [[30, 60]])
    first, _, third = layout.pieces
    layout.wrote(first, 5)
    layout.wrote(third, 30)
    assert layout.done_ranges() == [[0, 5], [30, 90]]
    assert layout.written == 35  # bytes fetched in this run; resumed bytes are not counted
    assert first.next_offset == 5  # a broken connection continues from here


def test_a_waiting_hash_wakes_when_its_bytes_arrive():
    layout = Layout(10, 10, [])
    woke = threading.Event()

    def hasher() -> None:
        layout.wait(0, layout.finished, timeout=30)
        woke.set()

    t = threading.Thread(target=hasher)
    t.start()
    layout.wrote(layout.pieces[0], 4)
    t.join(10)
    assert woke.is_set() and layout.readable_end(0) == 4
