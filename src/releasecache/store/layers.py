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

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..errors import IntegrityError
from .ingest import ingest_file

if TYPE_CHECKING:  # for annotations only: the store calls into this module
    from .store import Store

log = logging.getLogger("releasecache")


def find_in_layers(layers: Iterable[Path], blob_relpath: str) -> Path | None:
    """The path of ``blobs/<blob_relpath>`` in the first layer that has it, or None."""
    for layer in layers:
        path = layer / "blobs" / blob_relpath
        if os.path.isfile(path):
            return path
    return None


def import_blob(store: "Store", source: Path, file_hash: str) -> Path:
    """Bring a layer's blob into ``store``'s own blobs/ (hard link, else verified copy)."""
    result = ingest_file(store, source, file_hash, hardlink=store.layer_link == "hardlink", tag="layer",
                         trust_hardlink=True, include_layers=False)
    if result.outcome == "mismatched":
        raise IntegrityError(f"blob {source} in a read-only layer does not match its name (blake2b "
                             f"{(result.actual or '')[:16]}…); tell the layer's maintainer to run verify()",
                             path=str(source), file_hash=file_hash, expected=file_hash, got=result.actual)
    return store.blob_path(file_hash)
