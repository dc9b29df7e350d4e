"""Which bytes of a partial download are on disk, while parts stream in at their offsets.

A download's file is cut into pieces, in file order: bytes an earlier run already
wrote (resumed from the sidecar), and pieces still to fetch, each at most one part
long. A piece being fetched grows from its start, one socket read at a time, as its
bytes are written to the partial file; the hash, computed in file order, can read
every byte up to the first gap. So memory is one socket-read buffer per part in
flight, not one part buffer, and a slow part never holds finished ones in memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .resume import merge


@dataclass(eq=False)
class Piece:
    """Bytes ``[start, end)`` of the file; ``written`` of them, from ``start``, are on disk."""

    start: int
    end: int
    written: int = 0
    fetch: bool = True  # False: resumed from an earlier run, all on disk already
    buffer: Any = field(default=None, repr=False)  # a whole-part buffer holding the piece, if it has one

    @property
    def next_offset(self) -> int:
        """The first byte not on disk yet (where a fetch continues after a broken connection)."""
        return self.start + self.written

    @property
    def complete(self) -> bool:
        return self.written >= self.end - self.start


def _gaps(done: list[list[int]], start: int, end: int) -> list[tuple[int, int, bool]]:
    """``[start, end)`` cut into ``(a, b, on_disk)`` runs by the merged ranges ``done``."""
    out: list[tuple[int, int, bool]] = []
    pos = start
    for a, b in done:
        if b <= pos or a >= end:
            continue
        if a > pos:
            out.append((pos, a, False))
        out.append((max(a, pos), min(b, end), True))
        pos = min(b, end)
    if pos < end:
        out.append((pos, end, False))
    return out


class Layout:
    """The pieces of one download and how far each has been written; thread-safe.

    Parameters
    ----------
    size
        The file's size.
    part_size
        The most bytes one ranged GET asks for.
    done
        Merged ``[start, end)`` ranges already on disk (from the resume sidecar).
    """

    def __init__(self, size: int, part_size: int, done: list[list[int]]) -> None:
        self.size = size
        self.cond = threading.Condition()
        self.pieces: list[Piece] = []
        for s in range(0, size, part_size):
            for a, b, on_disk in _gaps(done, s, min(s + part_size, size)):
                self.pieces.append(Piece(a, b, b - a, fetch=False) if on_disk else Piece(a, b))
        self.to_fetch = [p for p in self.pieces if p.fetch]
        self.finished = 0  # pieces whose fetch ended (done or failed): wakes the hashing thread
        self.written = 0   # bytes written by fetches so far
        self._cursor = 0   # index of the piece holding the hash position
        self._readable = 0  # the end of the readable run, when last asked

    def wrote(self, piece: Piece, nbytes: int) -> None:
        """``nbytes`` more of ``piece`` are on disk (called after they were written)."""
        with self.cond:
            piece.written += nbytes
            self.written += nbytes
            if piece.start <= self._readable:  # only bytes that extend the readable run wake the hash
                self.cond.notify_all()

    def ended(self) -> None:
        """One fetch ended, well or not."""
        with self.cond:
            self.finished += 1
            self.cond.notify_all()

    def readable_end(self, pos: int) -> int:
        """The end of the bytes on disk that run without a gap from ``pos`` (``pos`` moves forward only)."""
        with self.cond:
            pieces = self.pieces
            i = self._cursor
            while i < len(pieces) and pieces[i].end <= pos:
                i += 1
            self._cursor = i
            end = pos
            while i < len(pieces):
                p = pieces[i]
                end = p.start + p.written
                if not p.complete:
                    break
                i += 1
            self._readable = max(end, pos)
            return self._readable

    def piece_at(self, pos: int) -> Piece:
        """The piece holding byte ``pos`` (at or after the hash position last asked about)."""
        with self.cond:
            i = self._cursor
            while self.pieces[i].end <= pos:
                i += 1
            return self.pieces[i]

    def wait(self, pos: int, finished: int, timeout: float) -> None:
        """Wait until bytes past ``pos`` are readable or a fetch ended since ``finished`` was read."""
        with self.cond:
            self.cond.wait_for(lambda: self.finished != finished or self.readable_end(pos) > pos, timeout)

    def done_ranges(self) -> list[list[int]]:
        """Merged ranges on disk now: what a sidecar may promise a later run."""
        with self.cond:
            return merge((p.start, p.start + p.written) for p in self.pieces if p.written)


__all__ = ["Layout", "Piece"]
