"""The one way bytes come into the store, and the only module that names files under ``.partial/``.

Downloads (the transfer engine), read-only layers and ``adopt`` all end here:
bytes land in a file under ``.partial/``, their blake2b is checked, and
:meth:`Store.publish <releasecache.store.store.Store.publish>` renames them
into ``blobs/``. A reader never sees a partial file.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import StorageError
from ..utils import hash_file
from .links import try_links

if TYPE_CHECKING:  # for annotations only: the store calls into this module
    from .store import Store

log = logging.getLogger("releasecache")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def download_partial(partial_dir: Path, file_hash: str) -> Path:
    """The file a download of ``file_hash`` is written into (kept across runs, to resume)."""
    return partial_dir / file_hash


def download_sidecar(partial_dir: Path, file_hash: str) -> Path:
    """The resume record of that download (see :mod:`releasecache.transfer.resume`)."""
    return partial_dir / f"{file_hash}.json"


def partial_owner(name: str) -> str | None:
    """The blob hash a file under ``.partial/`` belongs to, or None if it names none.

    ``<h>`` and ``<h>.json`` (a download and its sidecar), ``<h>.<tag>-<id>``
    (a local file being brought in) and ``.<h>.json.<x>.tmp`` (a sidecar being
    replaced) all belong to ``<h>``.
    """
    first = name.lstrip(".").split(".")[0]
    return first if len(first) == 128 and all(c in "0123456789abcdef" for c in first) else None


def ingest_temp(partial_dir: Path, file_hash: str, tag: str) -> Path:
    """A fresh, unique file name for bringing a local file in (``tag``: ``layer``, ``adopt``)."""
    return partial_dir / f"{file_hash}.{tag}-{uuid.uuid4().hex[:12]}"


def discard_download(store: "Store", file_hash: str) -> None:
    """Remove a download's partial file and its sidecar (best effort)."""
    for path in (download_partial(store.partial_dir, file_hash), download_sidecar(store.partial_dir, file_hash)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)


@dataclass(frozen=True)
class Ingested:
    """What :func:`ingest_file` did.

    Attributes
    ----------
    outcome
        ``"present"`` (the blob was already there), ``"hardlink"``, ``"copy"``
        (published that way), or ``"mismatched"`` (the file's blake2b is not
        ``file_hash``; nothing published).
    actual
        The file's blake2b when it was hashed, else None.
    """

    outcome: str
    actual: str | None = None


def ingest_file(store: "Store", source: Path, file_hash: str, *, hardlink: bool = False, tag: str = "ingest",
                trust_hardlink: bool = False, include_layers: bool = True,
                progress: Callable[[int], None] | None = None) -> Ingested:
    """Bring a local file in as blob ``file_hash``, under the blob's lock.

    Parameters
    ----------
    store
        The store to publish into.
    source
        The local file.
    file_hash
        The blake2b the file must have.
    hardlink
        Hard-link the file in where the filesystem allows it (else copy).
    tag
        Names the temporary file (``layer``, ``adopt``), for people reading ``.partial/``.
    trust_hardlink
        Publish a hard link without hashing it (its source is a verified blob
        of a read-only layer, named by its hash) and without changing its mode
        (the inode belongs to the layer).
    include_layers
        A blob present only in a read-only layer counts as present.
    progress
        Called with the bytes copied.

    Raises
    ------
    StorageError
        If the file cannot be read, linked, copied or published.
    """
    store.make_dir(store.partial_dir)
    with store.lock(file_hash):
        if store.has_own_blob(file_hash) or (include_layers and store.has_blob(file_hash)):
            return Ingested("present")
        tmp = ingest_temp(store.partial_dir, file_hash, tag)
        try:
            kind = try_links(tmp, source) if hardlink else None
            if kind == "hardlink" and trust_hardlink:
                store.publish(tmp, file_hash, keep_mode=True)
                log.info("hard-linked blob %s… from %s", file_hash[:16], source)
                return Ingested("hardlink")
            if kind == "hardlink":
                actual = hash_file(tmp)  # hash what will be published: the linked inode
            else:
                if hardlink:
                    log.info("cannot hard-link %s here; copying it", source)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)  # the umask decides
                try:
                    actual = hash_file(source, copy_to=fd)  # copy and verify in one pass
                finally:
                    os.close(fd)
            if progress:
                progress(os.path.getsize(tmp))
            if actual != file_hash:
                return Ingested("mismatched", actual)
            store.publish(tmp, file_hash)
            return Ingested(kind or "copy", actual)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError.from_os_error(exc, f"cannot bring {source} in as blob {file_hash[:16]}…",
                                             file_hash=file_hash) from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
