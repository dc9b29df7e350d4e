"""What every remote offers: list manifests, fetch one, read a pinned byte range."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import RangeNotSatisfiable, RemoteError  # noqa: F401 - RangeNotSatisfiable: re-exported
from ..manifest import S3Location
from ._direct import abort_connection


@dataclass
class RangeResponse:
    """An open answer to a (ranged) GET.

    Attributes
    ----------
    start
        Offset of the first byte in ``chunks`` within the object.
    length
        Number of bytes the server says it will send (``Content-Length``), or None.
    total_size
        Size of the whole object (from ``Content-Range`` or, for a full GET,
        ``Content-Length``), or None if the server did not say.
    version_id
        The version the server says it is sending, or None if it did not say.
    chunks
        The body, as an iterator of byte strings. Transport errors while
        iterating are raised as :class:`~releasecache.errors.TransientRemoteError`.
    partial
        True if the server honoured the Range (206); False for a full answer (200).
    redirected_to
        The URL that finally answered, if a redirect led to another host (None
        when the host asked answered itself).
    """

    start: int
    length: int | None
    total_size: int | None
    version_id: str | None
    chunks: Iterator[bytes]
    partial: bool
    redirected_to: str | None = None
    _closer: object = None
    _readinto: Callable[[memoryview], int] | None = None
    _pending: bytes = field(default=b"", repr=False)

    def readinto(self, view: memoryview) -> int:
        """Read up to ``len(view)`` bytes of the body into ``view``; 0 at the end.

        Remotes that can read from the socket straight into the buffer do so;
        others fall back to copying from :attr:`chunks`.
        """
        if self._readinto is not None:
            return self._readinto(view)
        if not self._pending:
            self._pending = next(self.chunks, b"")
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def abort(self) -> None:
        """Cut the connection now, from any thread: a read blocked on it returns at once."""
        abort_connection(self._closer)

    def close(self) -> None:
        """Release the connection back to the pool."""
        close = getattr(self._closer, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing a broken stream must not mask the real error
                pass

    def __enter__(self) -> "RangeResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Remote(ABC):
    """A place bytes come from. Subclasses must be safe to use from many threads
    and must pickle (they reconnect lazily after unpickling)."""

    #: True if the remote can prove which version it served (S3, HTTP to S3).
    reports_version = True

    @abstractmethod
    def list_manifests(self, project: str) -> list[str]:
        """Names of the manifest files under ``<project>/manifests/`` (unsorted)."""

    @abstractmethod
    def get_manifest(self, project: str, name: str) -> bytes:
        """The bytes of one manifest file."""

    @abstractmethod
    def get_range(self, location: S3Location, start: int = 0, end: int | None = None) -> RangeResponse:
        """Open a GET of bytes ``start..end`` (inclusive; None means to the end),
        pinned to ``location.version_id``."""

    def stat(self, location: S3Location) -> int:
        """Size in bytes of the pinned object (a HEAD request, or equivalent)."""
        try:
            response = self.get_range(location, 0, 0)
        except RangeNotSatisfiable:
            return 0  # no byte 0 to send: the object is empty
        with response:
            if response.total_size is None:
                raise RemoteError(f"{self.describe()} did not report the size of {location.key}")
            return response.total_size

    def list_sizes(self, locations: "list[S3Location]") -> "dict[S3Location, int] | None":
        """Sizes of many pinned objects from a listing, without a request per object.

        Returns None if this remote cannot list (then ask :meth:`stat` for each);
        objects the listing does not show are left out.
        """
        return None

    def ranged_reader(self) -> "Remote":
        """The remote to make many small ranged reads of single objects through (a stream).

        Usually this one; a remote whose requests are expensive to set up may
        name a lighter one that sends the same requests.
        """
        return self

    def describe(self) -> str:
        """A short human description, for messages."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self.describe()}>"
