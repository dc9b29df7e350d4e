"""The on-disk layout: content-addressed blobs, version views, locks, atomic publish.

::

    <root>/
      manifests/<name>.json                    manifests fetched so far (never edited)
      <project>-<version>/<path in release>    version view: relative symlinks into blobs/
      blobs/blake2b/<h[:2]>/<h>                read-only; exists only if its blake2b is <h>
      .partial/<h>  .partial/<h>.json          resumable downloads and their sidecars
      .locks/<h>.lock  .locks/<h>.owner        per-blob inter-process locks and who holds them
      .stamps/<h[:2]>/<h>                      (size, mtime_ns, inode) recorded when the blob was verified
      .stamps/manifests-parsed.json            (size, mtime_ns, inode) of each saved manifest when it last parsed
      .quarantine/                             blobs that failed verify(), moved aside for inspection
      .usage/<manifest name>                   when each manifest was last used (mtime; gc's window, the budget)
      state                                    last used manifest per project

Read-only *layers* (other cache directories, e.g. a site-wide copy) are
consulted before downloading: a blob found in a layer is linked from the view
(absolute symlink), or hard-linked / copied into this cache (``layer_link``).

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
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..config import DEFAULT_LOCK_LEASE, DEFAULT_LOCK_TIMEOUT
from ..errors import StorageError, UnsafePathError
from ..manifest import check_relative_path
from ..utils import atomic_write, blob_mode, fsync_dir
from .ingest import download_partial, download_sidecar
from .layers import find_in_layers, import_blob
from .links import try_links
from .locks import BlobLock, choose_lock_kind, resolve_lock_kind
from .stamps import remove_stamp, stamp_path, write_stamp

log = logging.getLogger("releasecache")

HASH_ALGO = "blake2b"


_HEX = frozenset("0123456789abcdef")
_MEMO_LIMIT = 1_000_000  # view paths remembered per store (a release has a few thousand)


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
    layers
        Read-only cache directories consulted (in order) for a blob before it is downloaded.
    layer_link
        How a view reaches a blob found in a layer: ``"symlink"`` (an absolute
        link into the layer; nothing copied), ``"hardlink"`` (into this cache's
        blobs/, same filesystem only; falls back to a copy), or ``"copy"``
        (copied and re-hashed, so this cache no longer depends on the layer).
    lock_kind
        ``"auto"`` (the default: probe whether this filesystem's locks exclude, once per
        directory and host), ``"posix"`` or ``"soft"``; see :mod:`releasecache.store.locks`.
    lock_lease
        Seconds a soft lock survives without its holder's heartbeat.
    """

    def __init__(self, root: str | Path, *, read_only: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 layers: "list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...]" = (),
                 layer_link: str = "symlink", lock_kind: str | None = None,
                 lock_lease: float = DEFAULT_LOCK_LEASE) -> None:
        self.root = Path(root).absolute()
        self._blobs_dir = self.root / "blobs" / HASH_ALGO
        self._blobs_prefix = str(self._blobs_dir)  # blob_path() runs several times per file of a release
        self._view_paths: dict[tuple[str, str], Path] = {}
        self._targets: dict[tuple[Path, str], str] = {}
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        if layer_link not in ("symlink", "hardlink", "copy"):
            raise ValueError(f"layer_link must be 'symlink', 'hardlink' or 'copy', not {layer_link!r}")
        self.layer_link = layer_link
        self.layers = [Path(p).absolute() for p in layers]
        for layer in self.layers:
            if not layer.is_dir():
                log.warning("read-only layer %s does not exist or is not a directory; ignoring it for now", layer)
        self.lock_kind = resolve_lock_kind(lock_kind)
        self.lock_lease = lock_lease
        if not read_only:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if not (exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and self.root.is_dir()):
                    raise StorageError.from_os_error(exc, f"cannot create cache directory {self.root}") from None
            if not os.access(self.root, os.W_OK):
                log.info("cache directory %s is not writable; using it read-only", self.root)
                self.read_only = True
        if not self.read_only and self.lock_kind == "auto":
            # Find out now, once, whether this filesystem's locks exclude (a read-only cache takes none).
            self._check_no_symlinked_dirs(self.locks_dir / "_")
            self.lock_kind = choose_lock_kind(self.locks_dir, "auto", probe_dir=self.root)

    # -- paths ----------------------------------------------------------------

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def blobs_dir(self) -> Path:
        return self._blobs_dir

    @property
    def partial_dir(self) -> Path:
        return self.root / ".partial"

    @property
    def locks_dir(self) -> Path:
        return self.root / ".locks"

    @property
    def stamps_dir(self) -> Path:
        return self.root / ".stamps"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / ".quarantine"

    def blob_path(self, file_hash: str) -> Path:
        """Where the blob with this blake2b lives in this cache (whether or not it exists)."""
        return Path(f"{self._blobs_prefix}/{file_hash[:2]}/{file_hash}")  # one parse, not three joins

    def own_blob_stat(self, file_hash: str) -> os.stat_result | None:
        """The ``lstat`` of the blob in this cache's own ``blobs/``, or None if it is not a regular file there."""
        try:
            st = os.lstat(f"{self._blobs_prefix}/{file_hash[:2]}/{file_hash}")
        except OSError:
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    def has_own_blob(self, file_hash: str) -> bool:
        """True if the verified blob is in this cache's own ``blobs/`` (a regular file, not a link)."""
        return self.own_blob_stat(file_hash) is not None

    def layer_blob(self, file_hash: str) -> Path | None:
        """The blob's path in the first read-only layer that has it, or None."""
        return find_in_layers(self.layers, f"{HASH_ALGO}/{file_hash[:2]}/{file_hash}")

    def find_blob(self, file_hash: str) -> Path | None:
        """Where the verified blob is: this cache first, then the layers; None if nowhere."""
        if self.has_own_blob(file_hash):
            return self.blob_path(file_hash)
        return self.layer_blob(file_hash)

    def has_blob(self, file_hash: str) -> bool:
        """True if the verified blob is present (here or in a read-only layer)."""
        return self.find_blob(file_hash) is not None

    def partial_path(self, file_hash: str) -> Path:
        """Where a download of this blob is written (named by :mod:`releasecache.store.ingest`)."""
        return download_partial(self.partial_dir, file_hash)

    def sidecar_path(self, file_hash: str) -> Path:
        """The resume record of that download (named by :mod:`releasecache.store.ingest`)."""
        return download_sidecar(self.partial_dir, file_hash)

    def view_root(self, view_dir_name: str) -> Path:
        check_relative_path(view_dir_name, what="view directory")
        return self.root / view_dir_name

    def view_path(self, view_dir_name: str, relative_path: str) -> Path:
        """The familiar path ``<root>/<project>-<version>/<relative_path>``."""
        key = (view_dir_name, relative_path)
        path = self._view_paths.get(key)
        if path is None:  # validate and build once: a cache hit should cost a few syscalls, not parsing
            check_relative_path(relative_path, what="path in release")
            path = self.view_root(view_dir_name).joinpath(*relative_path.split("/"))
            if len(self._view_paths) < _MEMO_LIMIT:
                self._view_paths[key] = path
        return path

    def _link_target(self, dest: Path, file_hash: str) -> str:
        """The relative link from a view path to its blob (memoised: ``relpath`` is slow)."""
        key = (dest, file_hash)
        target = self._targets.get(key)
        if target is None:
            target = os.path.relpath(self.blob_path(file_hash), dest.parent)
            if len(self._targets) < _MEMO_LIMIT:
                self._targets[key] = target
        return target

    # -- locks ----------------------------------------------------------------

    def blob_lock(self, file_hash: str) -> BlobLock:
        """The (not yet acquired) inter-process lock of one blob."""
        self.make_dir(self.locks_dir)
        return BlobLock(self.locks_dir / f"{file_hash}.lock", self.locks_dir / f"{file_hash}.owner",
                        kind=self.lock_kind, lease=self.lock_lease, what=f"blob {file_hash[:16]}…")

    @contextmanager
    def lock(self, file_hash: str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the inter-process lock of one blob (blocks while another holds it).

        Raises :class:`~releasecache.errors.LockTimeoutError` naming the holder
        after ``timeout`` (default: the store's ``lock_timeout``) seconds.
        """
        lock = self.blob_lock(file_hash)
        lock.acquire(self.lock_timeout if timeout is None else timeout)
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def try_lock(self, file_hash: str) -> Iterator[bool]:
        """Take the blob's lock only if nobody holds it; yields whether it was taken."""
        lock = self.blob_lock(file_hash)
        taken = lock.acquire(blocking=False)
        try:
            yield taken
        finally:
            if taken:
                lock.release()

    # -- writing --------------------------------------------------------------

    def make_dir(self, path: Path) -> None:
        """Create a directory inside the cache, refusing to go through planted symlinks."""
        self._check_no_symlinked_dirs(path / "_")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"cannot create {path}") from None
        self._check_no_symlinked_dirs(path / "_")

    def publish(self, partial: Path, file_hash: str, *, keep_mode: bool = False) -> Path:
        """Move a verified partial file to its blob path, read-only, atomically.

        The caller has checked the hash. After this the blob is visible to all.
        ``keep_mode=True`` (a hard link to a read-only layer's blob, whose inode
        is not ours) neither fsyncs nor changes the mode.
        """
        dest = self.blob_path(file_hash)
        self.make_dir(dest.parent)
        try:
            if not keep_mode:
                fd = os.open(partial, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                try:
                    os.fsync(fd)
                    os.fchmod(fd, blob_mode())  # read-only for everyone the umask lets read
                finally:
                    os.close(fd)
            os.replace(partial, dest)
        except OSError as exc:
            if exc.errno == errno.ENOENT and self.has_own_blob(file_hash):
                return dest  # a process that lost its lock published the same verified bytes first
            raise StorageError.from_os_error(exc, f"cannot publish blob {file_hash[:16]}…", file_hash=file_hash) from None
        fsync_dir(dest.parent)
        self.stamp(file_hash)
        return dest

    def stamp(self, file_hash: str) -> None:
        """Record the just-verified blob's (size, mtime_ns, inode) for fast verification (best effort)."""
        try:
            self.make_dir(stamp_path(self.stamps_dir, file_hash).parent)
        except (StorageError, UnsafePathError) as exc:
            log.debug("no stamp for %s: %s", file_hash[:16], exc)
            return
        write_stamp(self.stamps_dir, file_hash, self.blob_path(file_hash))

    def remove_blob(self, file_hash: str) -> None:
        """Delete a blob and its stamp (the caller holds the blob's lock)."""
        try:
            os.unlink(self.blob_path(file_hash))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"cannot delete blob {file_hash[:16]}…", file_hash=file_hash) from None
        remove_stamp(self.stamps_dir, file_hash)

    def _check_no_symlinked_dirs(self, path: Path) -> None:
        """Refuse if any directory between the root and ``path`` is a symlink (planted
        links could otherwise redirect writes outside the cache)."""
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return
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
        self._check_no_symlinked_dirs(dest)
        if self.view_is_current(view_dir_name, relative_path, file_hash):
            return dest
        if self.read_only:
            return dest
        blob = self.blob_path(file_hash)
        if not self.has_own_blob(file_hash):
            in_layer = self.layer_blob(file_hash)
            if in_layer is not None:
                if self.layer_link == "symlink":
                    blob = in_layer
                else:
                    import_blob(self, in_layer, file_hash)
        # Blobs of this cache are linked relatively (the cache stays movable); a layer's absolutely.
        target = self._link_target(dest, file_hash) if blob == self.blob_path(file_hash) else str(blob)
        self.make_dir(dest.parent)
        self._check_no_symlinked_dirs(dest)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            if try_links(tmp, blob, symlink_target=target) is None:
                shutil.copyfile(blob, tmp)
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise UnsafePathError(f"{dest} is a directory; cannot place a file there")
            os.replace(tmp, dest)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StorageError.from_os_error(exc, f"cannot link {dest}") from None
        return dest

    def view_is_current(self, view_dir_name: str, relative_path: str, file_hash: str) -> bool:
        """True if the view path already points at that blob and the blob is there (a readlink and a stat)."""
        dest = self.view_path(view_dir_name, relative_path)
        try:
            link = os.readlink(dest)
        except OSError:
            return False
        if link == self._link_target(dest, file_hash):
            return self.has_own_blob(file_hash)
        in_layer = self.layer_blob(file_hash) if os.path.isabs(link) else None
        return in_layer is not None and link == str(in_layer)

    # -- small state ----------------------------------------------------------

    def write_manifest(self, name: str, data: bytes) -> Path:
        """Save a fetched manifest under ``manifests/`` (atomically; never edited after)."""
        check_relative_path(name, what="manifest name")
        path = self.manifests_dir / name
        if self.read_only:
            return path
        self.make_dir(self.manifests_dir)
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"cannot save manifest {name}") from None
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
        """Every published blob as ``(hash, path)``: regular files named by a hash, never through links."""
        for name, path, _st in self.iter_blob_stats():
            yield name, Path(path)

    def iter_blob_stats(self) -> Iterator[tuple[str, str, os.stat_result]]:
        """Every published blob as ``(hash, path, lstat)``, in hash order: one ``lstat`` per blob.

        The blobs :meth:`iter_blobs` lists, with the ``lstat`` that showed each to be a regular
        file (callers need its size, inode and mode anyway), and the path as a string: a cache
        of 100,000 blobs is listed with one directory scan per fan-out directory.
        """
        self._check_no_symlinked_dirs(self.blobs_dir / "xx" / "_")
        top = str(self.blobs_dir)
        try:
            with os.scandir(top) as it:
                subs = sorted(e.name for e in it if len(e.name) == 2)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            return
        except PermissionError as exc:  # another user's directory with a narrow umask: verify reports it
            log.warning("cannot list %s: %s", self.blobs_dir, exc.strerror)
            return
        hexdigits = _HEX
        for sub in subs:
            folder = f"{top}/{sub}"
            try:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    continue
                with os.scandir(folder) as it:
                    names = sorted(e.name for e in it)
            except PermissionError as exc:
                log.warning("cannot list %s: %s", folder, exc.strerror)
                continue
            except OSError:
                continue
            for name in names:
                if len(name) == 128 and name.startswith(sub) and hexdigits.issuperset(name):
                    path = f"{folder}/{name}"
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        yield name, path, st
