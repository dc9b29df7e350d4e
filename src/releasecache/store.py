"""The on-disk layout: content-addressed blobs, version views, locks, atomic publish.

::

    <root>/
      manifests/<name>.json                    manifests fetched so far (never edited)
      <project>-<version>/<path in release>    version view: relative symlinks into blobs/
      blobs/blake2b/<h[:2]>/<h>                read-only; exists only if its blake2b is <h>
      .partial/<h>  .partial/<h>.json          resumable downloads and their sidecars
      .locks/<h>.lock                          per-blob inter-process locks
      state                                    last used manifest per project

The directory is the index: a blob at its final path is proof of its content,
so nothing needs a registry file, and readers need no lock.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import stat
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import filelock

from .errors import LockTimeoutError, StorageError, UnsafePathError
from .manifest import check_relative_path

log = logging.getLogger("releasecache")

HASH_ALGO = "blake2b"


def _storage_error(exc: OSError, what: str) -> StorageError:
    hint = {
        errno.ENOSPC: "the disk is full; free space or choose another cache directory",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied; check the cache directory's permissions",
        errno.EPERM: "operation not permitted on this filesystem",
        errno.EROFS: "the filesystem is read-only",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    err = StorageError(exc.errno or 0, f"{what}: {hint}")
    err.__cause__ = exc
    return err


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every FS supports it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Store:
    """The cache directory's layout and its only writer.

    Parameters
    ----------
    root
        The cache directory. Created if missing (unless ``read_only``).
    read_only
        Never write; serve what is present (a shared, site-wide copy).
    lock_timeout
        Seconds to wait for another process's download of the same blob.
    """

    def __init__(self, root: str | Path, *, read_only: bool = False, lock_timeout: float = 3600.0) -> None:
        self.root = Path(root).absolute()
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        if not read_only:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _storage_error(exc, f"cannot create cache directory {self.root}") from None

    # -- paths ----------------------------------------------------------------

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs" / HASH_ALGO

    @property
    def partial_dir(self) -> Path:
        return self.root / ".partial"

    @property
    def locks_dir(self) -> Path:
        return self.root / ".locks"

    def blob_path(self, file_hash: str) -> Path:
        """Where the blob with this blake2b lives (whether or not it exists)."""
        return self.blobs_dir / file_hash[:2] / file_hash

    def has_blob(self, file_hash: str) -> bool:
        """True if the verified blob is present."""
        return os.path.isfile(self.blob_path(file_hash))

    def partial_path(self, file_hash: str) -> Path:
        return self.partial_dir / file_hash

    def sidecar_path(self, file_hash: str) -> Path:
        return self.partial_dir / f"{file_hash}.json"

    def view_root(self, view_dir_name: str) -> Path:
        check_relative_path(view_dir_name, what="view directory")
        return self.root / view_dir_name

    def view_path(self, view_dir_name: str, relative_path: str) -> Path:
        """The familiar path ``<root>/<project>-<version>/<relative_path>``."""
        check_relative_path(relative_path, what="path in release")
        return self.view_root(view_dir_name).joinpath(*relative_path.split("/"))

    # -- locks ----------------------------------------------------------------

    @contextmanager
    def lock(self, file_hash: str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the inter-process lock of one blob (blocks while another holds it)."""
        self._mkdir(self.locks_dir)
        path = self.locks_dir / f"{file_hash}.lock"
        lock = filelock.FileLock(str(path), timeout=self.lock_timeout if timeout is None else timeout)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise LockTimeoutError(
                f"waited {lock.timeout:.0f} s for another process downloading blob {file_hash[:16]}… "
                f"(lock {path}); if no process is downloading it, the lock is stale only if its holder "
                "is gone, which the OS detects: check for a hung process"
            ) from None
        try:
            yield
        finally:
            lock.release()

    # -- writing --------------------------------------------------------------

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error(exc, f"cannot create {path}") from None

    def publish(self, partial: Path, file_hash: str) -> Path:
        """Move a verified partial file to its blob path, read-only, atomically.

        The caller has checked the hash. After this the blob is visible to all.
        """
        dest = self.blob_path(file_hash)
        self._mkdir(dest.parent)
        try:
            fd = os.open(partial, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(partial, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(partial, dest)
        except OSError as exc:
            raise _storage_error(exc, f"cannot publish blob {file_hash[:16]}…") from None
        fsync_dir(dest.parent)
        return dest

    def _check_no_symlinked_dirs(self, path: Path) -> None:
        """Refuse if any directory between the root and ``path`` is a symlink (planted
        links could otherwise redirect writes outside the cache)."""
        rel = path.relative_to(self.root)
        current = self.root
        for part in rel.parts[:-1]:
            current = current / part
            if os.path.islink(current):
                raise UnsafePathError(
                    f"{current} is a symbolic link; refusing to write through it (it could point outside the cache)"
                )

    def link_view(self, view_dir_name: str, relative_path: str, file_hash: str) -> Path:
        """Make ``<root>/<view>/<relative_path>`` point at the blob, atomically.

        A relative symlink is preferred (the cache stays movable); where symlinks
        are not allowed, a hard link, then a copy, is used.
        """
        dest = self.view_path(view_dir_name, relative_path)
        blob = self.blob_path(file_hash)
        target = os.path.relpath(blob, dest.parent)
        self._check_no_symlinked_dirs(dest)
        try:
            if os.readlink(dest) == target:
                return dest
        except OSError:
            pass
        if self.read_only:
            return dest
        self._mkdir(dest.parent)
        self._check_no_symlinked_dirs(dest)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            try:
                os.symlink(target, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EACCES):
                    raise
                try:
                    os.link(blob, tmp)
                except OSError:
                    shutil.copyfile(blob, tmp)
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise UnsafePathError(f"{dest} is a directory; cannot place a file there")
            os.replace(tmp, dest)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise _storage_error(exc, f"cannot link {dest}") from None
        return dest

    def view_is_current(self, view_dir_name: str, relative_path: str, file_hash: str) -> bool:
        """True if the view path already points at that blob (cheap: one readlink)."""
        dest = self.view_path(view_dir_name, relative_path)
        try:
            return os.readlink(dest) == os.path.relpath(self.blob_path(file_hash), dest.parent)
        except OSError:
            return False

    # -- small state ----------------------------------------------------------

    def write_manifest(self, name: str, data: bytes) -> Path:
        """Save a fetched manifest under ``manifests/`` (atomically; never edited after)."""
        check_relative_path(name, what="manifest name")
        path = self.manifests_dir / name
        if self.read_only:
            return path
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise _storage_error(exc, f"cannot save manifest {name}") from None
        return path

    def read_state(self) -> dict[str, Any]:
        """The ``state`` file: the last used manifest per project."""
        try:
            with open(self.root / "state", "rb") as fh:
                value = json.loads(fh.read(1 << 20))
            return value if isinstance(value, dict) else {}
        except (OSError, ValueError):
            return {}

    def update_state(self, **changes: Any) -> None:
        """Merge ``changes`` into the state file (atomic replace; last writer wins)."""
        if self.read_only:
            return
        state = self.read_state()
        state.update(changes)
        try:
            atomic_write(self.root / "state", json.dumps(state, indent=1, sort_keys=True).encode())
        except OSError as exc:
            log.warning("could not record state in %s: %s", self.root, exc)

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Every published blob as ``(hash, path)``."""
        if not self.blobs_dir.is_dir():
            return
        for sub in sorted(self.blobs_dir.iterdir()):
            if sub.is_dir():
                for blob in sorted(sub.iterdir()):
                    if blob.is_file() and not blob.name.startswith("."):
                        yield blob.name, blob
