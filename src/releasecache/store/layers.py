"""Read-only layers: other cache directories consulted before downloading.

A layer is any cache directory laid out by releasecache (``blobs/blake2b/...``),
typically a site-wide copy that one person maintains and everyone else reads::

    cache = CloudCache.from_s3("~/my_cache", bucket, project,
                               layers=["/shared/vbn_cache"], layer_link="symlink")

Before a blob is downloaded, the store looks for it in its own ``blobs/``, then
in each layer in order. A blob found in a layer is never downloaded. How the
user's view reaches it is ``layer_link``:

``"symlink"`` (default)
    The view path is an absolute symlink into the layer. Nothing is copied; the
    view breaks if the layer goes away (the next access then downloads).
``"hardlink"``
    The layer's blob is hard-linked into this cache's ``blobs/`` (same
    filesystem only), then linked relatively like any other blob. Falls back
    to ``"copy"`` across filesystems.
``"copy"``
    The blob is copied into this cache and its blake2b checked while copying,
    so the cache no longer depends on the layer.

Layers are only read, never written; their own ``manifests/`` are also
consulted when a manifest is not in this cache. A cache whose own directory
is read-only (``read_only=True``, or not writable by this user) works the same
way: it serves whatever it or its layers hold and never writes.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from .errors import IntegrityError, StorageError
from .store import Store, _storage_error, hash_file

log = logging.getLogger("releasecache")


def import_blob(store: Store, source: Path, file_hash: str) -> Path:
    """Bring a layer's blob into ``store``'s own blobs/ (hard link, else verified copy)."""
    with store.lock(file_hash):
        if store.has_own_blob(file_hash):
            return store.blob_path(file_hash)
        store._mkdir(store.partial_dir)
        partial = store.partial_dir / f"{file_hash}.layer"
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _storage_error(exc, f"cannot clear {partial}") from None
        if store.layer_link == "hardlink":
            try:
                os.link(source, partial)
                dest = store.blob_path(file_hash)
                store._mkdir(dest.parent)
                os.replace(partial, dest)
                store.stamp(file_hash)
                log.info("hard-linked blob %s… from layer %s", file_hash[:16], source)
                return dest
            except OSError as exc:
                try:
                    os.unlink(partial)
                except OSError:
                    pass
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.EACCES):
                    raise _storage_error(exc, f"cannot link blob {file_hash[:16]}… from {source}") from None
                log.info("cannot hard-link %s across filesystems; copying it", source)
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                digest = hash_file(source, copy_to=fd)  # copy and verify in one pass
            finally:
                os.close(fd)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise _storage_error(exc, f"cannot copy blob {file_hash[:16]}… from layer {source}") from None
        if digest != file_hash:
            os.unlink(partial)
            raise IntegrityError(f"blob {source} in a read-only layer does not match its name (blake2b "
                                 f"{digest[:16]}…); tell the layer's maintainer to run verify()")
        try:
            return store.publish(partial, file_hash)
        except StorageError:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise
