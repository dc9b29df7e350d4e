"""Read an HTTP body straight into a caller's buffer, and keep the connection reusable.

Both requests and botocore stream through urllib3, whose ``readinto`` reads into
a new bytes object and then copies it. For multi-gigabyte files that extra
allocation and copy per chunk costs CPU and fragments memory, so when the body
is a plain (not content-encoded) ``http.client`` response we read from it
directly. After the whole body is read, the connection goes back to urllib3's
pool; a body abandoned half-way is closed instead.

Every body also gets a deadline (see :mod:`._deadline`): a server that drips
bytes or never ends its body is cut off, whichever way the body is read.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any, Callable, Iterator

from ..errors import TransientRemoteError
from ._deadline import WATCHDOG, Ticket, socket_of


class DirectBody:
    """``readinto`` and ``close`` over a urllib3 response (``raw``).

    Parameters
    ----------
    raw
        The urllib3 response.
    what
        The request, for messages.
    translate
        Turns a transport exception into one of the package's errors.
    closer
        What to close when the body is not read directly (the requests or
        botocore response object); default ``raw``.
    deadline
        Seconds the body may stay open (None: no limit).
    """

    def __init__(self, raw: Any, what: str, translate: Callable[[BaseException, str], Exception] | None = None,
                 *, closer: Any = None, deadline: float | None = None) -> None:
        self.raw = raw
        self.what = what
        self.translate = translate
        self.closer = closer
        fp = getattr(raw, "_fp", None)
        encoded = (getattr(raw, "headers", {}) or {}).get("Content-Encoding", "identity") not in ("", "identity")
        self.fp = fp if isinstance(fp, http.client.HTTPResponse) and not encoded else None
        self.ticket: Ticket | None = None
        if deadline is not None:
            sock = socket_of(raw)
            if sock is not None:
                self.ticket = WATCHDOG.watch(sock, deadline)

    @property
    def direct(self) -> bool:
        """True if reads bypass urllib3's copy."""
        return self.fp is not None

    @property
    def expired(self) -> bool:
        """True if the deadline passed and the connection was cut."""
        return self.ticket is not None and self.ticket.expired

    def deadline_error(self) -> TransientRemoteError:
        seconds = self.ticket.seconds if self.ticket is not None else 0.0
        return TransientRemoteError(f"reading {self.what}: the body was still arriving after {seconds:.1f} s "
                                    "(request_timeout); the server is too slow or its body never ends")

    def readinto(self, view: memoryview) -> int:
        try:
            n = self.fp.readinto(view) if self.fp is not None else self.raw.readinto(view)
        except Exception as exc:  # socket timeouts, resets, IncompleteRead, urllib3 protocol errors
            if self.expired:
                raise self.deadline_error() from None
            if self.translate is not None:
                raise self.translate(exc, f"reading {self.what}") from None
            raise TransientRemoteError(f"reading {self.what}: {type(exc).__name__}: {exc}") from None
        if not n and self.expired:  # a body without a length ends when its socket is shut down
            raise self.deadline_error()
        return n

    def guard(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks``, but a cut-off body raises the deadline error instead of ending quietly."""
        try:
            yield from chunks
        except TransientRemoteError:
            if self.expired:
                raise self.deadline_error() from None
            raise
        if self.expired:
            raise self.deadline_error()

    def close(self) -> None:
        if self.ticket is not None:
            WATCHDOG.cancel(self.ticket)  # before the connection can be reused
        try:
            if self.fp is not None and self.fp.isclosed():
                self.raw.release_conn()  # fully read: reuse the connection
            elif self.closer is not None and self.fp is None:
                self.closer.close()
            else:
                self.raw.close()
                self.raw.release_conn()
        except Exception:  # a broken connection must not mask the real error
            pass


def abort_connection(body: Any) -> None:
    """Shut down the socket under a streaming body, from any thread (Ctrl-C, a dead server).

    ``body`` is a :class:`DirectBody`, a requests response, a botocore
    ``StreamingBody`` or a urllib3 response. A read blocked on the socket
    returns at once; the connection is not reused. Bodies without a socket
    (local files) are left alone.
    """
    for holder in (body, getattr(body, "raw", None), getattr(body, "_raw_stream", None)):
        connection = getattr(holder, "connection", None) if holder is not None else None
        sock = getattr(connection, "sock", None)
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass
            return
