"""The one retry policy: exponential backoff with jitter, a server's ``Retry-After`` first.

Downloads (:mod:`releasecache.transfer.engine`) and streaming reads
(:mod:`releasecache.transfer.stream`) both retry transient remote errors
through :meth:`RetryPolicy.call`; they differ only in their numbers.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from ..errors import DownloadError, TransientRemoteError

log = logging.getLogger("releasecache")

T = TypeVar("T")


class Cancelled(Exception):
    """The operation was abandoned while retrying (another part failed, or Ctrl-C)."""


def stop_error(cancel: object) -> BaseException:
    """What a cancelled operation raises: the canceller's reason if it gave one, else :class:`Cancelled`.

    A copy, because one reason is raised in many threads at once.
    """
    reason = getattr(cancel, "reason", None)
    return copy.copy(reason) if isinstance(reason, BaseException) else Cancelled()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is tried again.

    Attributes
    ----------
    max_attempts
        Tries per request before giving up on a transient failure.
    backoff_base, backoff_max
        The wait before try ``n + 1`` is ``min(max, base * 2**(n - 1))`` seconds,
        scaled by a random factor in [0.5, 1]; a server's ``Retry-After`` wins.
    """

    max_attempts: int = 8
    backoff_base: float = 0.2
    backoff_max: float = 30.0

    def delay(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def call(self, fn: Callable[[], T], *, what: str, cancel: threading.Event | None = None,
             give_up: Callable[[int, BaseException], str] | None = None,
             on_attempt: Callable[[], None] | None = None, on_retry: Callable[[], None] | None = None) -> T:
        """Call ``fn`` until it returns, retrying :class:`~releasecache.errors.TransientRemoteError`.

        Parameters
        ----------
        fn
            The request.
        what
            Names the request in log messages and the final error.
        cancel
            If set (before a try, or while waiting), raise :class:`Cancelled`
            (or the reason it was cancelled with; see
            :class:`~releasecache.transfer.cancel.CancelToken`).
        give_up
            Builds the message of the final :class:`~releasecache.errors.DownloadError`
            from the number of tries and the last error.
        on_attempt, on_retry
            Called before every try, and before every wait (for statistics).
        """
        for attempt in range(1, self.max_attempts + 1):
            if cancel is not None and cancel.is_set():
                raise stop_error(cancel)
            try:
                if on_attempt is not None:
                    on_attempt()
                return fn()
            except TransientRemoteError as exc:
                if attempt == self.max_attempts:
                    message = (give_up(attempt, exc) if give_up is not None
                               else f"{what}: gave up after {attempt} attempts; last error: {exc}")
                    raise DownloadError(message, **exc.context) from exc  # the last try's url, key ...
                if on_retry is not None:
                    on_retry()
                wait = self.delay(attempt, exc)
                log.info("%s: %s; retry %d of %d in %.2f s", what, exc, attempt, self.max_attempts - 1, wait)
                if cancel is not None:
                    if cancel.wait(wait):
                        raise stop_error(cancel) from None
                else:
                    time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
