"""The exception hierarchy of releasecache.

Every failure a user can cause or meet is one of these classes, all under
:class:`ReleaseCacheError`, so ``except ReleaseCacheError`` catches anything
the library raises on purpose. Messages say what happened, to which file, and
what to do about it.
"""

from __future__ import annotations

import errno
import os


#: Names of the context attributes every error has (None when they do not apply).
CONTEXT_FIELDS = ("path", "url", "key", "version_id", "file_hash", "manifest", "status", "code",
                  "expected", "got")


class ReleaseCacheError(Exception):
    """Base class of every error raised by releasecache.

    Besides its message, an error carries what it is about as attributes, so
    scripts need not parse messages; each is None when it does not apply. They
    are set by keyword (``IntegrityError(msg, path=..., file_hash=...)``) or
    later with :meth:`with_context`, and survive pickling (worker processes
    send errors back to their parent).

    Attributes
    ----------
    path : str or None
        The file's path in the release (``project_metadata/units.csv``); for
        storage and lock errors, the local path that failed.
    url, key, version_id : str or None
        The object asked for: its URL, its S3 key, the pinned version.
    file_hash : str or None
        The blake2b hash the manifest gives the file (the blob's name).
    manifest : str or None
        The manifest's file name (``..._v0.4.0.json``) or saved path.
    status : int or None
        The HTTP status the server answered.
    code : str or None
        The S3 error code (``AccessDenied``, ``NoSuchVersion`` ...).
    expected, got : object or None
        What the manifest or the request said, and what arrived (a hash, a size,
        a version id, a byte offset).
    """

    # Class-level defaults: an error built without context (or unpickled from an
    # older process) still answers every name.
    path: str | None = None
    url: str | None = None
    key: str | None = None
    version_id: str | None = None
    file_hash: str | None = None
    manifest: str | None = None
    status: int | None = None
    code: str | None = None
    expected: object = None
    got: object = None

    def __init__(self, *args: object, **context: object) -> None:
        super().__init__(*args)
        self.with_context(**context)

    def with_context(self, **context: object) -> "ReleaseCacheError":
        """Set context attributes (only the names in :data:`CONTEXT_FIELDS`) and return the error.

        Values already set are kept unless the new one is not None, so an outer
        layer can add the file's path without losing the remote's details.
        """
        for name, value in context.items():
            if name not in CONTEXT_FIELDS:
                raise TypeError(f"unknown error context {name!r}")
            if value is not None:
                setattr(self, name, value)
        return self

    def fill_context(self, **context: object) -> "ReleaseCacheError":
        """Like :meth:`with_context`, but only for attributes still None (inner layers know best)."""
        return self.with_context(**{name: value for name, value in context.items()
                                    if name not in CONTEXT_FIELDS or getattr(self, name) is None})

    @property
    def context(self) -> dict[str, object]:
        """The context attributes that are set, as a dict."""
        return {name: getattr(self, name) for name in CONTEXT_FIELDS if getattr(self, name) is not None}


# --- manifests -------------------------------------------------------------


class ManifestError(ReleaseCacheError, ValueError):
    """A manifest could not be read or is not valid."""


class ManifestParseError(ManifestError):
    """A manifest is not well-formed JSON (or is too large to be one)."""


class ManifestValidationError(ManifestError):
    """A manifest is JSON but breaks the manifest schema."""


class UnsafePathError(ManifestError):
    """A key, URL or link would place a file outside the cache directory."""


class ManifestVersionError(ManifestError):
    """A manifest version or manifest file name holds no parsable semver."""


class ManifestNotFoundError(ReleaseCacheError, LookupError, ValueError):
    """No manifest of that name exists remotely or in the cache.

    Also a :class:`ValueError`, which is what AllenSDK raises here, so code
    written for AllenSDK (``except ValueError``) keeps working.
    """


class UnknownFileError(ReleaseCacheError, KeyError, ValueError):
    """A file id or metadata name is not listed in the loaded manifest.

    Also a :class:`ValueError` (AllenSDK's exception for this) and a
    :class:`KeyError` (a lookup that failed).
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NoManifestLoadedError(ReleaseCacheError):
    """An operation needs a loaded manifest and none is loaded yet."""


# --- remotes and transfers -------------------------------------------------


class RemoteError(ReleaseCacheError):
    """A remote (S3, HTTP, mirror) failed to answer as expected."""


class RemoteNotFoundError(RemoteError):
    """The remote says the object (or that version of it) does not exist."""


class RemoteAccessError(RemoteError):
    """The remote refused access (HTTP 401/403, bad credentials)."""


class TransientRemoteError(RemoteError):
    """A failure worth retrying: connection reset, timeout, stall, 429, 5xx, SlowDown.

    Parameters
    ----------
    message
        What went wrong.
    retry_after
        Seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None, **context: object) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class RangeNotSatisfiable(RemoteError):
    """The server answered 416 (e.g. a range request on an empty object)."""


#: What to do when the remote cannot be reached; every "unreachable" message ends with it.
OFFLINE_HINT = ("to work with what is already cached, open it offline: CloudCache.from_local_cache(cache_dir, "
                "project) or ProjectCache.from_local_cache(cache_dir) (command line: --offline)")


class EndpointUnreachableError(TransientRemoteError):
    """The remote cannot be reached at all: connection refused, DNS failure, a connect
    timeout, or a server that accepts connections and never answers.

    A bulk download stops at the first of these that lasts (see
    :class:`~releasecache.transfer.engine.CircuitBreaker`), with one error instead of
    one per file.
    """


class OfflineError(ReleaseCacheError):
    """The cache has no remote (``from_local_cache``) and the file is not cached."""


class IntegrityError(ReleaseCacheError, RuntimeError):
    """Downloaded bytes do not match the manifest (hash, size or version id).

    A :class:`RuntimeError`, as AllenSDK raises when a download never matches its hash.
    """

    #: True if downloading again cannot help (the server holds other content).
    permanent = False


class VersionMismatchError(IntegrityError):
    """The server sent another version of the object than the manifest pins; never retried.

    Attributes
    ----------
    path
        The file's path in the release.
    expected, actual
        The version id the manifest pins, and the one the server sent (``got``
        is the same as ``actual``, like every error's context).
    """

    permanent = True
    actual: str | None = None

    def __init__(self, message: str, *, expected: str | None = None, actual: str | None = None,
                 **context: object) -> None:
        super().__init__(message, expected=expected, got=actual, **context)
        self.actual = actual


class DownloadError(ReleaseCacheError, RuntimeError):
    """A download failed after all retries; names the file, attempts and last cause.

    A :class:`RuntimeError`, as AllenSDK raises when it gives up on a download.
    """


def interrupted(partial_kept: int, report: object = None) -> KeyboardInterrupt:
    """The exception raised when Ctrl-C (SIGINT) stops a download.

    What arrived is kept and resumes on the next run. It is a plain
    :class:`KeyboardInterrupt` (not a subclass, and not a
    :class:`ReleaseCacheError`: nothing went wrong), so a script still stops the
    way Ctrl-C should, and Python still exits by SIGINT (status 130 in a shell,
    which stops loops and job runners). Its message is the one line a user
    reads; these attributes say the same to code:

    ``partial_kept`` (int)
        Files whose downloaded parts were kept in ``.partial/`` for resuming.
    ``report`` (object or None)
        The :class:`~releasecache.cache.prefetch.PrefetchReport` of what a bulk
        download finished before it stopped (None for a single file).
    """
    noun = "download" if partial_kept == 1 else "downloads"
    exc = KeyboardInterrupt(f"stopped; {partial_kept} partial {noun} kept — run again to resume")
    exc.partial_kept = partial_kept  # type: ignore[attr-defined]
    exc.report = report  # type: ignore[attr-defined]
    return exc


class LockTimeoutError(ReleaseCacheError, TimeoutError):
    """Waited too long for another process that holds a blob's lock."""


class StorageError(ReleaseCacheError, OSError):
    """The cache directory cannot be written: full disk, permissions, bad layout."""

    _HINTS = {
        errno.ENOSPC: "the disk is full; free space or choose another cache directory",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied; check the cache directory's permissions",
        errno.EPERM: "operation not permitted on this filesystem",
        errno.EROFS: "the filesystem is read-only",
        errno.EFBIG: "the file is larger than this filesystem or the process's file-size limit (ulimit -f) allows",
        errno.ELOOP: "a symbolic link was found where a file was expected; remove it",
    }

    @classmethod
    def from_os_error(cls, exc: OSError, what: str, **context: object) -> "StorageError":
        """A StorageError for ``exc`` met while doing ``what``, with a hint of what to do.

        ``context`` sets the error's context attributes; ``path`` defaults to the
        file the operating system names in ``exc``.
        """
        hint = cls._HINTS.get(exc.errno or 0, exc.strerror or str(exc))
        if context.get("path") is None and isinstance(exc.filename, (str, bytes, os.PathLike)):
            context["path"] = os.fsdecode(exc.filename)
        err = cls(exc.errno or 0, f"{what}: {hint}", **context)
        err.__cause__ = exc
        return err


class ReadOnlyCacheError(StorageError):
    """A file is needed that a read-only cache (e.g. one owned by another user) does not hold."""


class SourceLayoutError(ReleaseCacheError, ValueError):
    """A directory to adopt or publish from is not laid out as expected
    (an AllenSDK cache, a copy of the bucket, or a release tree)."""


# --- project facade --------------------------------------------------------


class VersionExistsError(ReleaseCacheError, ValueError):
    """A version to publish is already published (versions are immutable)."""


class VersioningDisabledError(ReleaseCacheError, ValueError):
    """A bucket to publish into has no object versioning, so files could not be pinned."""


class UnknownSessionError(ReleaseCacheError, KeyError, ValueError):
    """A session or probe id is not in the metadata tables (or has no file).

    A :class:`KeyError` (AllenSDK's table lookup raises one) and a :class:`ValueError`.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- arguments -------------------------------------------------------------


class InvalidArgumentError(ReleaseCacheError, TypeError, ValueError):
    """An argument has the wrong type or an unusable value; the message names the argument."""


# --- warnings --------------------------------------------------------------


class OutdatedManifestWarning(UserWarning):
    """The loaded manifest is not the latest one published."""


class MissingLocalManifestWarning(UserWarning):
    """A file expected in the cache was not found where the manifest says."""


class LockFallbackWarning(UserWarning):
    """The cache's filesystem has no OS locks that exclude other processes (or other hosts),
    so lease-based soft locks are used instead; the message names the filesystem."""


class PublisherWarning(UserWarning):
    """The release contradicts itself: something only a publisher's mistake can cause.

    Raised as a warning (never an error) when loading manifests or fetching
    files shows that the same S3 ``version_id`` is listed with two different
    hashes, that the server's object (size or content) contradicts the
    manifest, or that a manifest version was published again with different
    content. The message names the manifests, paths and version ids involved.
    """


# --- tables and sessions ---------------------------------------------------


class MetadataTableError(ReleaseCacheError, ValueError):
    """A metadata CSV cannot be turned into a table: unknown table name, a
    missing index column, or an unusable sidecar directory or content hash."""


class NwbLayoutError(ReleaseCacheError, ValueError):
    """An NWB file lacks a group, table or column that the session reader needs."""


class UnknownProbeError(ReleaseCacheError, ValueError):
    """A probe id is not one of the session's probes."""


class SessionClosedError(ReleaseCacheError, ValueError):
    """A session was used after ``close()`` (or after its ``with`` block)."""


__all__ = [name for name in dir() if name[0].isupper()] + ["interrupted"]
