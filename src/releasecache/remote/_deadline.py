"""A deadline for each response body: a slow drip or an endless body cannot hold a request forever.

Socket timeouts (``read_timeout``) only fire when *no* byte arrives for that long;
a server that sends one byte per second never trips them. So every open body is
registered here with a deadline, and one watchdog thread shuts down the socket
of any body still open when its deadline passes. The blocked read then returns
at once, and the remote turns that into a
:class:`~releasecache.errors.TransientRemoteError` that says why.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

#: A body may take this long plus one second per :data:`MIN_RATE` bytes it announces.
DEFAULT_REQUEST_TIMEOUT = 300.0
#: Bytes per second that any announced body is allowed at least (1 MiB/s).
MIN_RATE = 1024 * 1024
#: Seconds the watchdog thread lingers without work before it exits.
_IDLE = 10.0


def body_deadline(request_timeout: float | None, announced: int | None) -> float | None:
    """Seconds an answer announcing ``announced`` bytes may take (None: no limit)."""
    if request_timeout is None:
        return None
    return request_timeout + (announced or 0) / MIN_RATE


class Ticket:
    """One watched body; :attr:`expired` tells a reader why its socket went dead."""

    __slots__ = ("sock", "deadline", "seconds", "expired", "done")

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock: socket.socket | None = sock
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.done = False


class Watchdog:
    """Shuts down sockets whose body outlived its deadline (one lazily started daemon thread)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Ticket]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, seconds: float) -> Ticket:
        """Start watching ``sock``; call :meth:`cancel` when the body is finished."""
        ticket = Ticket(sock, seconds)
        with self._cond:
            heapq.heappush(self._heap, (ticket.deadline, next(self._seq), ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="rc-deadline")
                self._thread.start()
            self._cond.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Stop watching (before the connection goes back to a pool, so a reused socket is never hit)."""
        with self._cond:
            ticket.done = True
            ticket.sock = None

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(_IDLE)
                    if not self._heap:
                        self._thread = None  # idle: a later watch() starts a new thread
                        return
                    continue
                deadline, _, ticket = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                ticket.expired = True
                ticket.done = True
                sock, ticket.sock = ticket.sock, None
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:  # already closed
                        pass

    def _after_fork(self) -> None:
        self._cond = threading.Condition()
        self._heap = []
        self._thread = None


WATCHDOG = Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WATCHDOG._after_fork)  # the thread does not survive a fork


def socket_of(raw: Any) -> socket.socket | None:
    """The socket under a urllib3 response (None if it cannot be found)."""
    fp = getattr(raw, "_fp", None)
    sock = getattr(getattr(getattr(fp, "fp", None), "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):
        return sock
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None
