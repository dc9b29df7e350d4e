"""Stopping downloads promptly: Ctrl-C, and a remote that no longer answers.

A :class:`CancelToken` is shared by everything one download run does (one
file, or every file of a prefetch). Cancelling it wakes every retry wait and
lock wait at once and cuts the sockets of the responses being read, so a
thread blocked in ``recv`` returns immediately instead of after the read
timeout. Each file gets a child token, so a file whose part failed for good
can stop its other parts without stopping the run.

A :class:`CircuitBreaker` watches the requests of a run: when the remote has
given no answer at all (refused, DNS failure, connect or first-byte timeout)
for :attr:`~CircuitBreaker.window` seconds, or a request ran out of tries that
way, it cancels the run with one
:class:`~releasecache.errors.EndpointUnreachableError` instead of letting every
file retry on its own.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from ..config import DEFAULT_UNREACHABLE_AFTER
from ..errors import OFFLINE_HINT, EndpointUnreachableError
from .retry import stop_error


class _Abortable(Protocol):
    def abort(self) -> None: ...


class CircuitBreaker:
    """Trips when the remote has not answered for ``window`` seconds (see the module doc).

    Any answer at all (data, an error status, a short body) means the remote is
    alive and resets the clock; only :class:`~releasecache.errors.EndpointUnreachableError`
    failures count against it.
    """

    def __init__(self, window: float = DEFAULT_UNREACHABLE_AFTER) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._since: float | None = None  # start of the oldest unanswered attempt since the last answer
        self._answered_at = float("-inf")
        self._failures = 0
        self.token: CancelToken | None = None  # the run it stops

    def answered(self) -> None:
        """The remote answered something: it is alive."""
        with self._lock:
            self._answered_at = time.monotonic()
            self._since = None
            self._failures = 0

    def failed(self, exc: BaseException, started: float) -> None:
        """An attempt that began at ``started`` (monotonic) got no answer; trip if that lasted too long."""
        if not isinstance(exc, EndpointUnreachableError):
            self.answered()  # a transient error with an answer (500, reset mid-body) is not silence
            return
        with self._lock:
            since = max(started, self._answered_at)
            self._since = since if self._since is None else min(self._since, since)
            self._failures += 1
            silent = time.monotonic() - self._since
        if silent >= self.window:
            self.trip(exc, silent)

    def trip(self, exc: BaseException, silent: float | None = None) -> None:
        """Stop the run now with one error that says what to do."""
        if silent is None:
            with self._lock:
                silent = time.monotonic() - self._since if self._since is not None else 0.0
        cause = str(exc).split("; " + OFFLINE_HINT)[0]
        error = EndpointUnreachableError(
            f"no answer from the server for {silent:.0f} s ({self._failures} requests failed; last: {cause}); "
            f"stopped all downloads; {OFFLINE_HINT}")
        if self.token is not None:
            self.token.cancel(error)


class CancelToken:
    """A one-way stop signal for a download run (see the module documentation).

    It has the ``is_set()`` / ``wait()`` interface of :class:`threading.Event`, so it
    can be passed wherever an event is waited on.
    """

    def __init__(self, parent: "CancelToken | None" = None, *, breaker: CircuitBreaker | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._open: dict[int, Any] = {}  # id -> response (responses are not hashable)
        self._children: set[CancelToken] = set()
        self.parent = parent
        self.reason: BaseException | None = None
        self.breaker = breaker if breaker is not None else (parent.breaker if parent is not None else None)
        if breaker is not None:
            breaker.token = self
        if parent is not None:
            parent._adopt(self)

    @classmethod
    def for_run(cls, unreachable_after: float | None = DEFAULT_UNREACHABLE_AFTER) -> "CancelToken":
        """A root token with a circuit breaker (None: no breaker)."""
        return cls(breaker=CircuitBreaker(unreachable_after) if unreachable_after else None)

    # -- the Event interface ----------------------------------------------------

    def is_set(self) -> bool:
        token: CancelToken | None = self
        while token is not None:  # a parent's cancel counts at once, before it reaches this child
            if token._event.is_set():
                return True
            token = token.parent
        return False

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    # -- stopping ---------------------------------------------------------------

    def cancel(self, reason: BaseException | None = None) -> None:
        """Stop: wake every waiter, cut every watched response, cancel every child.

        ``reason`` is what the stopped operations raise (None: :class:`Cancelled`).
        The first cancel wins. Every token of the tree is marked before any socket
        is cut, so a slot freed by a cut part is never taken for a new request.
        """
        tree, responses = [self], []
        for token in tree:  # grows while it is walked: breadth first over the children
            with token._lock:
                if token._event.is_set():
                    continue
                token.reason = reason
                token._event.set()
                responses.extend(token._open.values())
                tree.extend(token._children)
        for response in responses:
            response.abort()

    def stopped(self) -> BaseException:
        """The exception a stopped operation raises (a fresh copy of the reason, or Cancelled)."""
        token: CancelToken | None = self
        while token is not None and not token._event.is_set():
            token = token.parent  # cancelled through a parent that has not reached this child yet
        return stop_error(token if token is not None else self)

    def check(self) -> None:
        """Raise :meth:`stopped` if cancelled."""
        if self.is_set():
            raise self.stopped()

    # -- children and responses -------------------------------------------------

    def child(self) -> "CancelToken":
        """A token cancelled with this one, that can also be cancelled alone."""
        return CancelToken(self)

    def _adopt(self, child: "CancelToken") -> None:
        with self._lock:
            if not self._event.is_set():
                self._children.add(child)
                return
        child.cancel(self.reason)

    def release(self) -> None:
        """Forget this child in its parent (its file is done)."""
        if self.parent is not None:
            with self.parent._lock:
                self.parent._children.discard(self)

    def watch(self, response: _Abortable) -> None:
        """Cut ``response`` when this token is cancelled (at once if it already is)."""
        with self._lock:
            if not self.is_set():
                self._open[id(response)] = response
                return
        response.abort()

    def unwatch(self, response: _Abortable) -> None:
        """Stop watching ``response`` (here or in a parent: a file's parts and its first GET differ)."""
        token: CancelToken | None = self
        while token is not None:
            with token._lock:
                token._open.pop(id(response), None)
            token = token.parent


__all__ = ["CancelToken", "CircuitBreaker", "DEFAULT_UNREACHABLE_AFTER"]
