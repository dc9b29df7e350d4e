"""The exception hierarchy of releasecache.

Every failure a user can cause or meet is one of these classes, all under
:class:`ReleaseCacheError`, so ``except ReleaseCacheError`` catches anything
the library raises on purpose. Messages say what happened, to which file, and
what to do about it.
"""

from __future__ import annotations

import errno


class ReleaseCacheError(Exception):
    """Base class of every error raised by releasecache."""


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


class ManifestNotFoundError(ReleaseCacheError, LookupError):
    """No manifest of that name exists remotely or in the cache."""


class UnknownFileError(ReleaseCacheError, KeyError):
    """A file id or metadata name is not listed in the loaded manifest."""

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

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OfflineError(ReleaseCacheError):
    """The cache has no remote (``from_local_cache``) and the file is not cached."""


class IntegrityError(ReleaseCacheError):
    """Downloaded bytes do not match the manifest (hash, size or version id)."""


class DownloadError(ReleaseCacheError):
    """A download failed after all retries; names the file, attempts and last cause."""


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
    def from_os_error(cls, exc: OSError, what: str) -> "StorageError":
        """A StorageError for ``exc`` met while doing ``what``, with a hint of what to do."""
        hint = cls._HINTS.get(exc.errno or 0, exc.strerror or str(exc))
        err = cls(exc.errno or 0, f"{what}: {hint}")
        err.__cause__ = exc
        return err


class SourceLayoutError(ReleaseCacheError, ValueError):
    """A directory to adopt or publish from is not laid out as expected
    (an AllenSDK cache, a copy of the bucket, or a release tree)."""


# --- project facade --------------------------------------------------------


class VersionExistsError(ReleaseCacheError, ValueError):
    """A version to publish is already published (versions are immutable)."""


class VersioningDisabledError(ReleaseCacheError, ValueError):
    """A bucket to publish into has no object versioning, so files could not be pinned."""


class UnknownSessionError(ReleaseCacheError, KeyError):
    """A session or probe id is not in the metadata tables (or has no file)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- warnings --------------------------------------------------------------


class OutdatedManifestWarning(UserWarning):
    """The loaded manifest is not the latest one published."""


class MissingLocalManifestWarning(UserWarning):
    """A file expected in the cache was not found where the manifest says."""


class LockFallbackWarning(UserWarning):
    """The cache's filesystem has no OS locks that exclude other processes (or other hosts),
    so lease-based soft locks are used instead; the message names the filesystem."""


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


__all__ = [name for name in dir() if name[0].isupper()]
