"""Read an HTTP body straight into a caller's buffer, and keep the connection reusable.

Both requests and botocore stream through urllib3, whose ``readinto`` reads into
a new bytes object and then copies it. For multi-gigabyte files that extra
allocation and copy per chunk costs CPU and fragments memory, so when the body
is a plain (not content-encoded) ``http.client`` response we read from it
directly. After the whole body is read, the connection goes back to urllib3's
pool; a body abandoned half-way is closed instead.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any, Callable

from ..errors import TransientRemoteError


class DirectBody:
    """``readinto`` and ``close`` over a urllib3 response (``raw``)."""

    def __init__(self, raw: Any, what: str, translate: Callable[[BaseException, str], Exception] | None = None):
        self.raw = raw
        self.what = what
        self.translate = translate
        fp = getattr(raw, "_fp", None)
        encoded = (getattr(raw, "headers", {}) or {}).get("Content-Encoding", "identity") not in ("", "identity")
        self.fp = fp if isinstance(fp, http.client.HTTPResponse) and not encoded else None

    @property
    def direct(self) -> bool:
        """True if reads bypass urllib3's copy."""
        return self.fp is not None

    def readinto(self, view: memoryview) -> int:
        try:
            if self.fp is not None:
                return self.fp.readinto(view)
            return self.raw.readinto(view)
        except Exception as exc:  # socket timeouts, resets, IncompleteRead, urllib3 protocol errors
            if self.translate is not None:
                raise self.translate(exc, f"reading {self.what}") from None
            raise TransientRemoteError(f"reading {self.what}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        try:
            if self.fp is not None and self.fp.isclosed():
                self.raw.release_conn()  # fully read: reuse the connection
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
